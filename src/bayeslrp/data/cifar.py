"""CIFAR-10 from its python batches (``cifar-10-batches-py/``), read without trusting pickle.

Each batch file is a Python 2 pickle of ``{"data": uint8 [10000, 3072], "labels": [int],
...}``. A batch is only unpickled after its MD5 matches the published value (and, when
read from ``cifar-10-python.tar.gz``, after the archive's SHA-256 matches), and then only
with the numpy-only unpickler of :mod:`bayeslrp.data.safe_pickle`.

The decoded arrays are cached as IDX files (``[N, 3, 32, 32]`` uint8 images, ``[N]``
uint8 labels) with a ``manifest.json`` holding their SHA-256, computed when they were
written from verified batches.
"""
from __future__ import annotations

import io
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np

from bayeslrp.data import locations, verify
from bayeslrp.data.download import download_verified
from bayeslrp.data.idx import decode_idx, encode_idx
from bayeslrp.data.registry import CifarDataset
from bayeslrp.data.safe_pickle import UnsafePickleError, loads_numpy_only
from bayeslrp.errors import BayesLRPError
from bayeslrp.fileio import atomic_write_bytes, atomic_write_json

CACHE_FILES = {
    "train": ("train-images-idx4-ubyte", "train-labels-idx1-ubyte"),
    "test": ("test-images-idx4-ubyte", "test-labels-idx1-ubyte"),
}


def decode_batch(raw: bytes | bytearray, *, what: str, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Decode one verified CIFAR python batch.

    Parameters
    ----------
    raw
        The batch file's bytes (checksum already verified).
    what
        Name for error messages.

    Returns
    -------
    images : numpy.ndarray
        uint8 ``[N, 3, 32, 32]`` (the stored rows are R, G, B planes of 32x32, row-major).
    labels : numpy.ndarray
        uint8 ``[N]``.
    """
    try:
        batch = loads_numpy_only(raw, encoding="latin1")
    except UnsafePickleError as exc:
        raise BayesLRPError(f"{what}: {exc}: replace it with the original CIFAR-10 file") from exc
    except Exception as exc:  # any malformed pickle
        raise BayesLRPError(f"{what} is not a readable CIFAR batch ({exc}): replace it with the original file") from exc
    if not isinstance(batch, dict):
        raise BayesLRPError(f"{what} is not a CIFAR batch (no dict inside): replace it with the original file")
    batch = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise BayesLRPError(f"{what} has no uint8 [N, 3072] 'data' array: replace it with the original file")
    if not (isinstance(labels, (list, np.ndarray)) and len(labels) == data.shape[0]
            and all(isinstance(v, (int, np.integer)) for v in labels)):
        raise BayesLRPError(f"{what} has no integer 'labels' list matching its data: replace it with the original file")
    label_array = np.asarray(labels, dtype=np.int64)
    if label_array.size and (label_array.min() < 0 or label_array.max() >= n_classes):
        raise BayesLRPError(f"{what} has labels outside 0..{n_classes - 1}: replace it with the original file")
    return data.reshape(-1, 3, 32, 32), label_array.astype(np.uint8)


def _batch_names(spec: CifarDataset, split: str) -> tuple[str, ...]:
    return spec.train_batches if split == "train" else spec.test_batches


def _decode_split(spec: CifarDataset, blobs: dict[str, bytes], names: tuple[str, ...],
                  origin: str) -> tuple[np.ndarray, np.ndarray]:
    parts = [decode_batch(blobs[name], what=f"{name} from {origin}", n_classes=spec.n_classes) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def batch_dir(spec: CifarDataset, root: Path) -> Path | None:
    """``root/cifar-10-batches-py`` or ``root`` itself, whichever holds every batch file."""
    for directory in (root / spec.archive_dir, root):
        if all((directory / name).is_file() for name in spec.batch_md5):
            return directory
    return None


def read_batches_from_dir(spec: CifarDataset, directory: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """MD5-verified bytes of batch files ``names`` in ``directory``."""
    return {name: verify.read_verified(directory / name, spec.batch_md5[name], algorithm="md5", gz=False)
            for name in names}


def read_batches_from_archive(spec: CifarDataset, archive: Path, names: tuple[str, ...],
                              *, verified: bool = False) -> dict[str, bytes]:
    """Batch bytes from ``cifar-10-python.tar.gz``: archive SHA-256 first, then each member's MD5.

    Members are read in memory by their exact names; nothing is extracted to disk.
    """
    if verified:
        data = verify.read_bytes(archive, gz=False)
    else:
        data = verify.read_verified(archive, spec.archive_sha256, gz=False)
    blobs = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for name in names:
                member = tar.getmember(f"{spec.archive_dir}/{name}")
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is None:
                    raise KeyError(name)
                blobs[name] = handle.read()
    except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
        raise BayesLRPError(f"{archive} lacks {spec.archive_dir}/ batches ({exc}): replace it with the original archive") from exc
    for name, blob in blobs.items():
        got = verify.digest(blob, "md5")
        if got != spec.batch_md5[name]:
            raise verify.ChecksumMismatch(f"{archive}:{name}", spec.batch_md5[name], got, "md5")
    return blobs


# --- cache ---------------------------------------------------------------------------------

def _cache_root(spec: CifarDataset, cache_dir) -> Path:
    return locations.cache_dir(cache_dir) / spec.name


def read_manifest(directory: Path) -> dict:
    """The cache manifest of ``directory`` (``{}`` when missing or malformed)."""
    try:
        content = json.loads((directory / "manifest.json").read_text())
        return content if isinstance(content, dict) and isinstance(content.get("sha256"), dict) else {}
    except (OSError, ValueError):
        return {}


def _read_cache(spec: CifarDataset, directory: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    files = CACHE_FILES[split]
    if not all((directory / name).is_file() for name in files):
        return None
    manifest = read_manifest(directory)
    try:
        arrays = []
        for name in files:
            expected = manifest.get("sha256", {}).get(name)
            if not isinstance(expected, str):
                raise verify.ChecksumMismatch(str(directory / name), "<listed in manifest.json>", "<not listed>")
            arrays.append(decode_idx(verify.read_verified(directory / name, expected, gz=False), what=str(directory / name)))
        images, labels = arrays
        if images.shape != (spec.n(split), *spec.shape) or labels.shape != (spec.n(split),):
            raise BayesLRPError(f"cached {spec.name} {split} arrays have shape {images.shape}, {labels.shape}")
        return images, labels
    except BayesLRPError as exc:
        for name in files:
            verify.forget(directory / name)
            try:
                (directory / name).unlink(missing_ok=True)
            except OSError as unlink_error:
                raise BayesLRPError(f"corrupt cache file {directory / name} cannot be removed ({unlink_error}): "
                                    "delete it") from exc
        warnings.warn(f"removed corrupt cached {spec.name} {split} files in {directory} ({exc}); rebuilding them",
                      verify.DataWarning, stacklevel=4)
        return None


def _write_cache(spec: CifarDataset, directory: Path, split: str, images: np.ndarray, labels: np.ndarray,
                 origin: str) -> None:
    manifest = read_manifest(directory)
    sums = dict(manifest.get("sha256", {}))
    for name, array in zip(CACHE_FILES[split], (images, labels)):
        blob = encode_idx(array)
        sums[name] = verify.digest(blob)
        atomic_write_bytes(directory / name, blob)
        verify.remember(directory / name, sums[name], gz=False)
    atomic_write_json(directory / "manifest.json", {"dataset": spec.name, "source": origin, "sha256": sums})


# --- the source chain ----------------------------------------------------------------------

def _download_archive(spec: CifarDataset, directory: Path, mirror) -> Path:
    part = directory / ".partial" / f"{spec.archive}.part"

    def check(path: Path) -> None:
        got = verify.file_digest(path, gz=False)
        if got != spec.archive_sha256:
            raise verify.ChecksumMismatch(f"downloaded {spec.archive}", spec.archive_sha256, got, advice="refusing it")

    urls = locations.candidate_urls(spec.name, spec.archive, spec.mirrors, locations.mirror(mirror))
    return download_verified(urls, part, check, what=spec.archive)


def load_cifar(spec: CifarDataset, split: str, *, data_dir=None, cache_dir=None, download: bool = True,
               mirror: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """uint8 images ``[N, 3, 32, 32]``, uint8 labels and a one-line description of the source.

    Sources in order: user directory (``cifar-10-batches-py/`` or the ``.tar.gz``), cache,
    download of the archive (converted into the cache). There is no offline package.
    """
    names = _batch_names(spec, split)
    notes: list[str] = []
    root_user = locations.data_dir(data_dir)
    if root_user is not None:
        directory = batch_dir(spec, root_user)
        if directory is not None:
            images, labels = _decode_split(spec, read_batches_from_dir(spec, directory, names), names, str(directory))
            return images, labels, f"user directory {directory}"
        archive = root_user / spec.archive
        if archive.is_file():
            images, labels = _decode_split(spec, read_batches_from_archive(spec, archive, names), names, str(archive))
            return images, labels, f"user archive {archive}"
        notes.append(f"no {spec.archive_dir}/ or {spec.archive} in {root_user}")

    directory = _cache_root(spec, cache_dir)
    cached = _read_cache(spec, directory, split)
    if cached is not None:
        origin = read_manifest(directory).get("source")
        return cached[0], cached[1], f"cache {directory}" + (f" (from {origin})" if origin else "")
    notes.append(f"not in cache {directory}")

    if download:
        try:
            part = _download_archive(spec, directory, mirror)
        except BayesLRPError as exc:
            notes.append(str(exc))
        else:
            try:
                everything = spec.train_batches + spec.test_batches
                blobs = read_batches_from_archive(spec, part, everything, verified=True)
                result = {}
                for each in ("train", "test"):
                    result[each] = _decode_split(spec, blobs, _batch_names(spec, each), "download")
                    _write_cache(spec, directory, each, *result[each], f"download {spec.archive}")
            finally:
                part.unlink(missing_ok=True)
            return result[split][0], result[split][1], f"cache {directory} (downloaded)"
    else:
        notes.append("download disabled")
    raise BayesLRPError(f"{spec.name} is not available ({'; '.join(notes)}): {spec.fix}")


def fetch_cifar(spec: CifarDataset, *, data_dir=None, cache_dir=None, download: bool = True,
                mirror: str | None = None) -> str:
    """Make both splits available in the cache; returns where they came from."""
    directory = _cache_root(spec, cache_dir)
    details = []
    for split in ("train", "test"):
        images, labels, detail = load_cifar(spec, split, data_dir=data_dir, cache_dir=cache_dir,
                                            download=download, mirror=mirror)
        if not detail.startswith("cache"):
            _write_cache(spec, directory, split, images, labels, detail)
        details.append(detail)
    return f"{spec.name}: {details[0]} -> cache {directory}"


def where_cifar(spec: CifarDataset, *, data_dir=None, cache_dir=None) -> tuple[str, Path | None]:
    """Cheap look-up without reading data: ``(source, path)`` or ``("missing", None)``."""
    root_user = locations.data_dir(data_dir)
    if root_user is not None:
        directory = batch_dir(spec, root_user)
        if directory is not None:
            return "user_dir", directory
        if (root_user / spec.archive).is_file():
            return "user_dir", root_user / spec.archive
    directory = _cache_root(spec, cache_dir)
    if all((directory / name).is_file() for names in CACHE_FILES.values() for name in names):
        return "cache", directory
    return "missing", None
