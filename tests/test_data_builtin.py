"""digits and synthetic data, and argument checking of load()."""
from __future__ import annotations

import pytest
import torch

import bayeslrp.data as bd
from bayeslrp.errors import BayesLRPError


def test_datasets_names():
    assert set(bd.DATASETS) == {"mnist", "fashion_mnist", "cifar10", "digits", "synthetic",
                                "cifar_synthetic"}


@pytest.mark.parametrize("split, n", [("train", 1348), ("test", 449)])
def test_digits(split, n):
    x, y = bd.load("digits", split)
    assert x.shape == (n, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal(x * 16, torch.round(x * 16))  # values are k/16
    counts = torch.bincount(y, minlength=10)
    assert int(counts.min()) >= (41 if split == "test" else 130)


def test_digits_split_is_every_fourth_image():
    # The raw arrays are those of sklearn.datasets.load_digits: load() checks them against SHA-256
    # constants computed from load_digits (importing scikit-learn itself takes seconds).
    from bayeslrp.data.builtin import _digits_arrays
    raw = torch.as_tensor(_digits_arrays())
    images, target = raw[:, :64].reshape(-1, 8, 8).float(), raw[:, 64].long()
    x_test, y_test = bd.load("digits", "test")
    x_train, y_train = bd.load("digits", "train")
    assert torch.equal(y_test, target[3::4]) and torch.equal(x_test[:, 0] * 16, images[3::4])
    keep = torch.tensor([i % 4 != 3 for i in range(1797)])
    assert torch.equal(y_train, target[keep]) and torch.equal(x_train[:, 0] * 16, images[keep])


def test_digits_checksum_guards_content(monkeypatch):
    from bayeslrp.data import builtin
    real = builtin._digits_arrays()
    tampered = real.copy()
    tampered[0, 10] = 16 - tampered[0, 10]
    monkeypatch.setattr(builtin, "_digits_arrays", lambda: tampered)
    with pytest.raises(bd.ChecksumMismatch, match="digits images"):
        bd.load("digits", "test")


def test_synthetic_shapes_ranges_and_balance():
    x, y = bd.load("synthetic", "train", n=300, shape=(3, 5, 4), n_classes=6, seed=1)
    assert x.shape == (300, 3, 5, 4) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and torch.equal(torch.bincount(y), torch.full((6,), 50))
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert bd.load("synthetic", "test")[0].shape == (200, 1, 8, 8)


def test_synthetic_seeded():
    a = bd.load("synthetic", "test", n=50, seed=5)
    b = bd.load("synthetic", "test", n=50, seed=5)
    c = bd.load("synthetic", "test", n=50, seed=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    train = bd.load("synthetic", "train", n=50, seed=5)
    assert not torch.equal(train[0], a[0])


def test_synthetic_labels_are_learnable():
    # Nearest class mean of the training split classifies the test split well.
    x, y = bd.load("synthetic", "train", n=500, seed=0)
    xt, yt = bd.load("synthetic", "test", n=200, seed=0)
    means = torch.stack([x[y == c].mean(0) for c in range(10)]).flatten(1)
    pred = torch.cdist(xt.flatten(1), means).argmin(1)
    assert (pred == yt).float().mean() > 0.95


@pytest.mark.parametrize("call, message", [
    (lambda: bd.load("imagenet"), "unknown dataset"),
    (lambda: bd.load("digits", "valid"), "unknown split"),
    (lambda: bd.load("digits", "test", n=3), "only apply to the 'synthetic'"),
    (lambda: bd.load("mnist", "test", seed=3), "only apply to the 'synthetic'"),
    (lambda: bd.load("synthetic", "test", colour=True), "allowed options"),
    (lambda: bd.load("synthetic", "test", shape=(8, 8)), "shape=\\(C, H, W\\)"),
    (lambda: bd.load("synthetic", "test", n_classes=1), "n_classes >= 2"),
])
def test_argument_errors(call, message):
    with pytest.raises(BayesLRPError, match=message):
        call()


def test_names_are_normalised():
    assert bd.info("Fashion-MNIST")["name"] == "fashion_mnist"


def test_info_and_fetch_for_builtin():
    assert bd.info("digits")["source"] == "builtin"
    assert bd.info("synthetic")["shape"] is None
    assert "nothing to fetch" in bd.fetch("synthetic")
