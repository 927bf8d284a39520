"""A user's own images as a dataset: arrays, ``.npz`` / ``.pt`` files or a folder of IDX files.

>>> ds = bl.data.from_arrays(x, y, bounds=(-1, 1))                    # doctest: +SKIP
>>> x_adv = bl.attacks.fgsm(ens, ds, eps=0.1)                         # doctest: +SKIP
>>> ds = bl.data.from_file("train.npz", bounds=(-1, 1))               # doctest: +SKIP

Images are ``[N, C, H, W]`` or ``[N, H, W]`` (one channel), uint8 or float. uint8 values are
mapped onto the bounds (``lo + (hi − lo)·v/255``: with the default bounds [0, 1], ``v/255``);
float values must already lie within them. Labels are integers ``0 … K−1``; the number of
classes is counted from them (the largest label + 1). Files are read without unpickling:
``np.load(allow_pickle=False)``, ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bayeslrp.errors import BayesLRPError

__all__ = ["Dataset", "from_arrays", "from_file", "read_arrays", "file_sha256"]

_RANGE_TOL = 1e-6


@dataclass(frozen=True)
class Dataset:
    """Images ``x`` (float32 ``[N, C, H, W]`` within ``bounds``), labels ``y`` (int64 ``[N]``),
    the pixel range ``bounds`` and the number of classes. The attacks take it in place of
    ``x`` (then its labels and bounds apply)."""

    x: torch.Tensor
    y: torch.Tensor
    bounds: tuple[float, float]
    n_classes: int
    name: str = "arrays"

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(int(v) for v in self.x.shape[1:])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index) -> "Dataset":
        """The dataset of the images ``index`` selects (same bounds and classes)."""
        return Dataset(self.x[index], self.y[index], self.bounds, self.n_classes, self.name)


def _bounds(bounds) -> tuple[float, float]:
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise BayesLRPError(f"bounds must be [low, high]; got {bounds!r}") from None
    if not lo < hi:
        raise BayesLRPError(f"bounds must have low < high; got [{lo:g}, {hi:g}]")
    return lo, hi


def _images(x, bounds: tuple[float, float], what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x.detach().cpu()
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4 or t.shape[0] == 0 or min(t.shape) == 0:
        raise BayesLRPError(f"{what}: images must be [N, C, H, W] or [N, H, W] with N > 0; got "
                            f"shape {list(t.shape)}")
    lo, hi = bounds
    if t.dtype == torch.uint8:
        return t.to(torch.float32).mul_((hi - lo) / 255.0).add_(lo)
    if not t.is_floating_point():
        raise BayesLRPError(f"{what}: images must be uint8 or float; got {t.dtype}")
    t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise BayesLRPError(f"{what}: images hold NaN or infinite values")
    t_lo, t_hi = float(t.min()), float(t.max())
    if t_lo < lo - _RANGE_TOL or t_hi > hi + _RANGE_TOL:
        raise BayesLRPError(f"{what}: pixel values [{t_lo:.4g}, {t_hi:.4g}] lie outside the "
                            f"bounds [{lo:g}, {hi:g}]; give the data's bounds")
    return t.contiguous()


def _labels(y, n: int, what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(y)) if not isinstance(y, torch.Tensor) else y.detach().cpu()
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise BayesLRPError(f"{what}: labels must be integers; got {t.dtype}")
    t = t.reshape(-1) if t.dim() == 2 and t.shape[1] == 1 else t
    if t.dim() != 1 or t.shape[0] != n:
        raise BayesLRPError(f"{what}: {n} images but labels of shape {list(t.shape)}")
    if int(t.min()) < 0:
        raise BayesLRPError(f"{what}: labels must be >= 0 (classes 0 … K−1); got {int(t.min())}")
    return t.to(torch.int64)


def from_arrays(x, y, bounds=(0.0, 1.0), *, n_classes: int | None = None,
                name: str = "arrays") -> Dataset:
    """A :class:`Dataset` from image and label arrays (numpy or torch).

    Parameters
    ----------
    x : array
        Images ``[N, C, H, W]`` or ``[N, H, W]``, uint8 (mapped onto ``bounds``) or float
        (within ``bounds``).
    y : array
        Integer labels ``[N]``.
    bounds : (float, float)
        Pixel value range: the attacks clamp to it and their ε is in its units.
    n_classes : int, optional
        Number of classes (default: the largest label + 1).

    Raises
    ------
    BayesLRPError
        One line naming what is wrong (shape, dtype, values outside the bounds, labels).
    """
    bounds = _bounds(bounds)
    images = _images(x, bounds, name)
    labels = _labels(y, images.shape[0], name)
    k = int(labels.max()) + 1
    if n_classes is not None:
        if int(n_classes) < k:
            raise BayesLRPError(f"{name}: labels reach {k - 1}, more than n_classes={n_classes}")
        k = int(n_classes)
    if k < 2:
        raise BayesLRPError(f"{name}: the labels hold a single class; a classifier needs two")
    return Dataset(images, labels, bounds, k, name)


# --------------------------------------------------------------------------- files
def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a data file, or of a folder's files (their names and contents, sorted)."""
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.iterdir() if p.is_file()):
            h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
        return h.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_arrays(path: str | os.PathLike, x_key: str = "x", y_key: str = "y"):
    """``(images, labels)`` arrays of a ``.npz`` file, a ``.pt`` file or a folder of IDX files.

    Raises
    ------
    BayesLRPError
        Missing or unreadable file, unknown format, missing keys: one line naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise BayesLRPError(f"dataset file {path} does not exist")
    if path.is_dir():
        return _read_idx_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path, x_key, y_key)
    if suffix in (".pt", ".pth"):
        return _read_pt(path, x_key, y_key)
    raise BayesLRPError(f"dataset file {path}: unknown format {suffix or '(none)'}; use .npz, "
                        ".pt or a folder of IDX files")


def _read_npz(path: Path, x_key: str, y_key: str):
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            missing = [k for k in (x_key, y_key) if k not in keys]
            if missing:
                raise BayesLRPError(f"{path} has no array {missing[0]!r} (it holds {keys}); name "
                                    "the arrays with x_key / y_key")
            return z[x_key], z[y_key]
    except BayesLRPError:
        raise
    except Exception as exc:  # zipfile / numpy raise several kinds for a damaged file
        raise BayesLRPError(f"{path} cannot be read as .npz ({type(exc).__name__}: {exc}); "
                            "write it with numpy.savez") from None


def _read_pt(path: Path, x_key: str, y_key: str):
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BayesLRPError(f"{path} cannot be read with torch.load(weights_only=True) "
                            f"({first}); save a dict of tensors {{'x': ..., 'y': ...}}") from None
    if isinstance(obj, dict):
        missing = [k for k in (x_key, y_key) if k not in obj]
        if missing:
            raise BayesLRPError(f"{path} has no entry {missing[0]!r} (it holds "
                                f"{sorted(map(str, obj))}); name them with x_key / y_key")
        x, y = obj[x_key], obj[y_key]
    elif isinstance(obj, (tuple, list)) and len(obj) == 2:
        x, y = obj
    else:
        raise BayesLRPError(f"{path} holds a {type(obj).__name__}; save a dict of tensors "
                            "{'x': images, 'y': labels} or a pair (images, labels)")
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise BayesLRPError(f"{path}: images and labels must be tensors")
    return x, y


def _read_idx_folder(path: Path):
    from bayeslrp.data.idx import decode_idx

    images, labels = [], []
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        raw = f.read_bytes()
        if f.suffix == ".gz":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError) as exc:
                raise BayesLRPError(f"{f} is not a valid .gz file ({exc})") from None
        try:
            arr = decode_idx(bytearray(raw), what=str(f))
        except BayesLRPError:
            continue  # not an IDX file (a README, a checksum list)
        (labels if arr.ndim == 1 else images).append((f, arr))
    if len(images) != 1 or len(labels) != 1:
        found = [f.name for f, _ in images + labels]
        raise BayesLRPError(f"folder {path} must hold one IDX file of images and one of labels; "
                            f"found {found or 'no IDX file'}")
    return images[0][1], labels[0][1]


def from_file(path: str | os.PathLike, bounds=(0.0, 1.0), *, x_key: str = "x",
              y_key: str = "y", n_classes: int | None = None) -> Dataset:
    """A :class:`Dataset` read from a ``.npz`` / ``.pt`` file or a folder of IDX files
    (:func:`read_arrays`, then :func:`from_arrays`)."""
    x, y = read_arrays(path, x_key, y_key)
    return from_arrays(x, y, bounds, n_classes=n_classes, name=str(path))
