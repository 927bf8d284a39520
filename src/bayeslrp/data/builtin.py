"""Datasets that need no files: scikit-learn's 8x8 digits and seeded synthetic data."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from bayeslrp.data.checksums import DIGITS_IMAGES_SHA256, DIGITS_TARGETS_SHA256
from bayeslrp.data.verify import ChecksumMismatch, digest
from bayeslrp.errors import BayesLRPError

#: digits split: image ``i`` (in scikit-learn's order) is a test image iff ``i % 4 == 3``.
DIGITS_TEST_EVERY = 4


def _digits_arrays() -> np.ndarray:
    """scikit-learn's ``digits.csv.gz`` as a float array ``[1797, 65]`` (64 pixels, then the label).

    The file is read directly, found without importing scikit-learn (which takes seconds);
    if it is not where expected, ``sklearn.datasets.load_digits`` is used instead.
    """
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.concatenate([bunch.data, bunch.target[:, None]], axis=1)


def digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits (1797 images, pixel values 0..16).

    The split is fixed and deterministic: image ``i`` is in ``test`` iff ``i % 4 == 3``
    (449 images, 41-50 per class), ``train`` holds the other 1348. The raw arrays are
    checked against SHA-256 constants.

    Returns
    -------
    x : torch.Tensor
        float32 ``[N, 1, 8, 8]`` = pixel value / 16, in [0, 1].
    y : torch.Tensor
        int64 ``[N]``.
    """
    raw = _digits_arrays()
    images, targets = raw[:, :64].reshape(-1, 8, 8), raw[:, 64]
    if images.shape != (1797, 8, 8) or not np.array_equal(raw, np.rint(raw)) or images.min() < 0 \
            or images.max() > 16:
        raise BayesLRPError("scikit-learn's digits have an unexpected format: reinstall scikit-learn")
    images_u8, targets_u8 = images.astype(np.uint8), targets.astype(np.uint8)
    for what, blob, expected in (("digits images", images_u8, DIGITS_IMAGES_SHA256),
                                 ("digits targets", targets_u8, DIGITS_TARGETS_SHA256)):
        got = digest(blob.tobytes())
        if got != expected:
            raise ChecksumMismatch(f"scikit-learn {what}", expected, got, advice="reinstall scikit-learn")
    test = np.arange(len(images_u8)) % DIGITS_TEST_EVERY == DIGITS_TEST_EVERY - 1
    keep = test if split == "test" else ~test
    x = torch.from_numpy(images_u8[keep]).to(torch.float32).div_(16).unsqueeze(1)
    y = torch.from_numpy(targets_u8[keep]).to(torch.int64)
    return x, y


def derive_seed(seed: int, *tags: str) -> int:
    """A 63-bit seed derived from ``seed`` and tags, stable across platforms and versions."""
    text = "/".join([str(int(seed)), *tags]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def synthetic(split: str, *, n: int | None = None, shape: Sequence[int] = (1, 8, 8), n_classes: int = 10,
              seed: int = 0, noise: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random data with learnable labels.

    Each class ``c`` has a prototype image ``m_c ~ U[0, 1]^shape`` (one generator seeded
    from ``seed`` alone, so train and test share prototypes); a point is
    ``clip(m_y + noise * N(0, I), 0, 1)``. Labels are balanced: ``arange(n) % n_classes``
    in a random order. The split's own generator is seeded from ``(seed, split)``.

    Parameters
    ----------
    split
        ``"train"`` or ``"test"``.
    n
        Number of points (default 1000 for train, 200 for test).
    shape
        ``(C, H, W)``.
    n_classes
        Number of classes (>= 2).
    seed
        Same seed -> same numbers.
    noise
        Standard deviation of the Gaussian noise around the prototypes.

    Returns
    -------
    x : torch.Tensor
        float32 ``[n, C, H, W]`` in [0, 1].
    y : torch.Tensor
        int64 ``[n]``.
    """
    n = (1000 if split == "train" else 200) if n is None else int(n)
    shape = tuple(int(s) for s in shape)
    if n < 1 or len(shape) != 3 or min(shape) < 1 or int(n_classes) < 2 or noise < 0:
        raise BayesLRPError("synthetic data needs n >= 1, shape=(C, H, W) with positive sizes, n_classes >= 2 "
                            "and noise >= 0")
    prototypes_gen = torch.Generator().manual_seed(derive_seed(seed, "synthetic", "prototypes"))
    prototypes = torch.rand((int(n_classes), *shape), generator=prototypes_gen)
    split_gen = torch.Generator().manual_seed(derive_seed(seed, "synthetic", split))
    y = (torch.arange(n) % int(n_classes))[torch.randperm(n, generator=split_gen)]
    x = prototypes[y] + noise * torch.randn((n, *shape), generator=split_gen)
    return x.clamp_(0.0, 1.0), y.to(torch.int64)
