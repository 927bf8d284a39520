"""Tests of bayeslrp.stats: exact enumeration oracles, SciPy agreement, degenerate inputs."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats
import torch

from bayeslrp import stats as S
from bayeslrp.errors import BayesLRPError


@pytest.mark.parametrize("p, symbol", [
    (1.0, "n.s."), (0.5, "n.s."), (0.0500001, "n.s."),
    (0.05, "*"), (0.0100001, "*"),
    (0.01, "**"), (0.0010001, "**"),
    (0.001, "***"), (0.0001001, "***"),
    (0.0001, "****"), (1e-12, "****"), (0.0, "****"),
    (math.nan, "n.a."),
])
def test_stars_boundaries(p, symbol):
    assert S.stars(p) == symbol


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_stars_rejects_impossible_p(p):
    with pytest.raises(BayesLRPError):
        S.stars(p)


# --------------------------------------------------------------------------- Mann-Whitney


def _u_by_counting(a, b):
    return sum((x > y) + 0.5 * (x == y) for x in a for y in b)


def _exact_p_less(a, b):
    """P(U ≤ u_obs) under H0 by enumerating every split of the pooled sample (no ties)."""
    pooled = list(a) + list(b)
    u_obs = _u_by_counting(a, b)
    splits = list(itertools.combinations(range(len(pooled)), len(a)))
    hits = 0
    for idx in splits:
        first = [pooled[i] for i in idx]
        second = [pooled[i] for i in range(len(pooled)) if i not in idx]
        hits += _u_by_counting(first, second) <= u_obs
    return hits / len(splits)


@pytest.mark.parametrize("seed", range(4))
def test_mann_whitney_exact_matches_enumeration(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, 5)
    b = rng.normal(0.8, 1.0, 4)
    res = S.mann_whitney(a, b)                     # auto -> exact for n <= 8 without ties
    assert res.u == _u_by_counting(a, b)
    assert res.pvalue == pytest.approx(_exact_p_less(a, b), abs=1e-12)
    assert (res.n_a, res.n_b, res.alternative) == (5, 4, "less")
    greater = S.mann_whitney(a, b, alternative="greater")
    assert greater.pvalue == pytest.approx(_exact_p_less(b, a), abs=1e-12)


def test_mann_whitney_direction_and_scipy_agreement():
    rng = np.random.default_rng(1)
    low, high = rng.uniform(0.0, 0.6, 200), rng.uniform(0.3, 1.0, 150)
    res = S.mann_whitney(low, high)
    ref = scipy.stats.mannwhitneyu(low, high, alternative="less")
    assert res.u == pytest.approx(ref.statistic) and res.pvalue == pytest.approx(ref.pvalue)
    assert res.pvalue < 1e-4 and res.stars == "****"
    assert S.mann_whitney(high, low).pvalue > 0.5
    # with ties (values on a coarse grid) the tie-corrected normal approximation is used
    a, b = np.round(low, 1), np.round(high, 1)
    ref = scipy.stats.mannwhitneyu(a, b, alternative="less")
    assert S.mann_whitney(a, b).pvalue == pytest.approx(ref.pvalue)
    assert S.mann_whitney(a, b).u == _u_by_counting(a, b)


def test_mann_whitney_drops_nans_and_handles_degenerate_inputs():
    a = [0.1, math.nan, 0.3, 0.2]
    b = torch.tensor([0.5, 0.7, float("nan"), 0.9])
    res = S.mann_whitney(a, b)
    clean = S.mann_whitney([0.1, 0.3, 0.2], [0.5, 0.7, 0.9])
    assert res == clean and (res.n_a, res.n_b) == (3, 3)
    same = S.mann_whitney([0.4] * 5, [0.4] * 7)
    assert same.u == 17.5 and same.pvalue == 1.0 and same.stars == "n.s."
    empty = S.mann_whitney([math.nan], [1.0, 2.0])
    assert math.isnan(empty.u) and math.isnan(empty.pvalue) and empty.stars == "n.a."
    with pytest.raises(BayesLRPError, match="alternative"):
        S.mann_whitney([1.0], [2.0], alternative="lower")
    with pytest.raises(BayesLRPError, match="1-D"):
        S.mann_whitney([[1.0]], [2.0])


# --------------------------------------------------------------------------- Spearman


def test_spearman_equals_pearson_of_ranks():
    rng = np.random.default_rng(2)
    x = rng.normal(size=30)
    y = x + rng.normal(scale=0.8, size=30)
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))   # no ties
    rho_ref = np.corrcoef(rx, ry)[0, 1]
    res = S.spearman(x, y)
    assert res.rho == pytest.approx(rho_ref, abs=1e-12) and res.n == 30
    # p-value: t approximation with n - 2 degrees of freedom (as SciPy)
    t = rho_ref * math.sqrt(28 / (1 - rho_ref**2))
    assert res.pvalue == pytest.approx(2 * scipy.stats.t.sf(abs(t), 28), rel=1e-9)


def test_spearman_nan_pairs_and_degenerate_inputs():
    x = [1.0, 2.0, math.nan, 4.0, 5.0]
    y = [2.0, 1.0, 3.0, math.nan, 7.0]
    res = S.spearman(x, y)
    assert res.n == 3 and res == S.spearman([1.0, 2.0, 5.0], [2.0, 1.0, 7.0])
    const = S.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    assert math.isnan(const.rho) and math.isnan(const.pvalue) and const.n == 3
    two = S.spearman([1.0, 2.0], [3.0, 5.0])
    assert two.rho == pytest.approx(1.0) and math.isnan(two.pvalue)
    assert math.isnan(S.spearman([], []).rho)
    with pytest.raises(BayesLRPError, match="same length"):
        S.spearman([1.0, 2.0], [1.0])


# --------------------------------------------------------------------------- Wilcoxon


def _exact_wilcoxon_less(d):
    """P(W+ ≤ w_obs) under H0 by enumerating all sign patterns (no ties, no zeros)."""
    ranks = scipy.stats.rankdata(np.abs(d))
    w_obs = ranks[d > 0].sum()
    patterns = list(itertools.product([0, 1], repeat=len(d)))
    hits = sum(sum(r for r, s in zip(ranks, signs) if s) <= w_obs for signs in patterns)
    return hits / len(patterns)


def test_wilcoxon_exact_matches_enumeration():
    a = np.array([0.2, 0.5, 0.31, 0.8, 0.15, 0.6, 0.42])
    b = np.array([0.3, 0.45, 0.6, 0.95, 0.5, 0.61, 0.9])
    res = S.wilcoxon_signed_rank(a, b)
    d = a - b
    assert res.pvalue == pytest.approx(_exact_wilcoxon_less(d), abs=1e-12)
    assert res.statistic == scipy.stats.rankdata(np.abs(d))[d > 0].sum()
    assert (res.n, res.n_nonzero) == (7, 7)


def test_wilcoxon_nans_zeros_and_degenerate():
    a = [0.1, 0.2, math.nan, 0.4]
    b = [0.1, 0.2, 0.3, 0.4]
    res = S.wilcoxon_signed_rank(a, b)
    assert (res.statistic, res.pvalue, res.n, res.n_nonzero) == (0.0, 1.0, 3, 0)
    empty = S.wilcoxon_signed_rank([math.nan], [1.0])
    assert math.isnan(empty.pvalue) and empty.n == 0
    with pytest.raises(BayesLRPError, match="same length"):
        S.wilcoxon_signed_rank([1.0, 2.0], [1.0])
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=60), rng.normal(0.5, size=60)
    ref = scipy.stats.wilcoxon(x, y, alternative="two-sided")
    got = S.wilcoxon_signed_rank(x, y, alternative="two-sided")
    assert got.pvalue == pytest.approx(ref.pvalue) and got.statistic == pytest.approx(ref.statistic)
