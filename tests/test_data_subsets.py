"""balanced_subset: n/C per class, without replacement, seeded, sorted by index."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bayeslrp.data import balanced_subset
from bayeslrp.errors import BayesLRPError


def _labels(n=3000, classes=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, classes, (n,), generator=gen)


def test_counts_no_replacement_sorted():
    y = _labels()
    idx = balanced_subset(y, n=500, seed=0)
    assert idx.dtype == torch.int64 and idx.shape == (500,)
    assert torch.equal(torch.bincount(y[idx], minlength=10), torch.full((10,), 50))
    assert len(set(idx.tolist())) == 500
    assert torch.all(idx[1:] > idx[:-1])
    assert int(idx.min()) >= 0 and int(idx.max()) < len(y)


def test_deterministic_and_seed_dependent():
    y = _labels()
    a, b = balanced_subset(y, n=100, seed=3), balanced_subset(y, n=100, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, balanced_subset(y, n=100, seed=4))


def test_smaller_subset_nested_in_larger():
    y = _labels()
    small, large = balanced_subset(y, n=100, seed=7), balanced_subset(y, n=500, seed=7)
    assert set(small.tolist()) <= set(large.tolist())


def test_matches_reference_per_class_draw():
    # Oracle: the same permutation, then for each class the first k members in permutation order.
    y = _labels(n=777, classes=7, seed=2)
    k = 9
    idx = balanced_subset(y, n=7 * k, seed=11)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(11)).tolist()
    expected = []
    for c in range(7):
        expected += [i for i in order if int(y[i]) == c][:k]
    assert idx.tolist() == sorted(expected)


def test_uniform_over_points_of_a_class():
    # Every point of a class is equally likely: 2 of 4 points drawn, each with p = 1/2.
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    hits = np.zeros(8)
    for seed in range(2000):
        hits[balanced_subset(y, n=4, seed=seed).numpy()] += 1
    np.testing.assert_allclose(hits / 2000, 0.5, atol=0.05)


def test_exact_class_size_takes_all_points():
    y = torch.tensor([2, 0, 1, 1, 0, 2])
    assert balanced_subset(y, n=6, seed=0).tolist() == [0, 1, 2, 3, 4, 5]


def test_accepts_numpy_labels():
    y = _labels().numpy()
    assert torch.equal(balanced_subset(y, n=50, seed=1), balanced_subset(torch.from_numpy(y), n=50, seed=1))


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=55), "multiple of the 10 classes"),
    (dict(n=0), "multiple"),
    (dict(n=20, n_classes=3), "up to 9"),
    (dict(n=20000), "class .* has only"),
    (dict(n=110, n_classes=11), "class 10 has only 0"),
])
def test_errors(kwargs, message):
    with pytest.raises(BayesLRPError, match=message):
        balanced_subset(_labels(), **kwargs)


@pytest.mark.parametrize("y", [torch.zeros(0, dtype=torch.int64), torch.zeros(4), torch.zeros(2, 2, dtype=torch.int64),
                               torch.tensor([-1, 0])])
def test_rejects_bad_labels(y):
    with pytest.raises(BayesLRPError):
        balanced_subset(y, n=2)
