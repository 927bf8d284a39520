"""Statistical tests used in the paper's figures, with explicit handling of NaN and ties.

All functions accept 1-D array-likes (lists, NumPy arrays, torch tensors). NaNs are dropped
(per sample for the unpaired Mann-Whitney test, pairwise for the paired tests) and the
number of values actually used is part of every result. Degenerate inputs give a documented
value instead of an exception or a warning:

* an empty sample (after dropping NaN) → statistic and p-value NaN;
* Mann-Whitney with every pooled value equal → ``U = n_a·n_b/2``, ``p = 1``;
* Wilcoxon with every paired difference zero → statistic ``0``, ``p = 1``;
* Spearman with a constant input → ``ρ`` and ``p`` NaN (the correlation is undefined);
  with fewer than 3 pairs → ``p`` NaN.

``stars(p)`` maps p-values to the paper's asterisk notation (Table V of paper 000, with the
boundaries of SPEC §6).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as _st

from bayeslrp.errors import BayesLRPError

__all__ = [
    "ALTERNATIVES",
    "MannWhitneyResult",
    "SpearmanResult",
    "WilcoxonResult",
    "mann_whitney",
    "spearman",
    "stars",
    "wilcoxon_signed_rank",
]

ALTERNATIVES = ("less", "greater", "two-sided")

# (upper bound inclusive, symbol), most significant first.
_STAR_LEVELS = ((1e-4, "****"), (1e-3, "***"), (1e-2, "**"), (5e-2, "*"))


class MannWhitneyResult(NamedTuple):
    """Result of :func:`mann_whitney`: ``u`` is the U statistic of the first sample."""

    u: float
    pvalue: float
    n_a: int
    n_b: int
    alternative: str

    @property
    def stars(self) -> str:
        return stars(self.pvalue)


class SpearmanResult(NamedTuple):
    """Result of :func:`spearman`."""

    rho: float
    pvalue: float
    n: int


class WilcoxonResult(NamedTuple):
    """Result of :func:`wilcoxon_signed_rank`.

    ``statistic`` is SciPy's: the rank sum of the positive differences for one-sided
    alternatives, ``min(W+, W−)`` for two-sided. ``n`` counts complete pairs, ``n_nonzero``
    the pairs with a non-zero difference (zero differences are discarded, Wilcoxon's method).
    """

    statistic: float
    pvalue: float
    n: int
    n_nonzero: int
    alternative: str

    @property
    def stars(self) -> str:
        return stars(self.pvalue)


def _as_1d(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BayesLRPError(f"{name} must be a 1-D sequence of numbers ({exc})") from None
    if arr.ndim != 1:
        raise BayesLRPError(f"{name} must be 1-D; got shape {arr.shape}")
    if np.isinf(arr).any():
        raise BayesLRPError(f"{name} contains infinite values")
    return arr


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise BayesLRPError(f"alternative must be one of {', '.join(ALTERNATIVES)}; "
                            f"got {alternative!r}")


def _paired(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_1d(a, "a"), _as_1d(b, "b")
    if x.shape != y.shape:
        raise BayesLRPError(f"paired samples must have the same length; got {x.size} and {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def stars(p: float) -> str:
    """Asterisk notation of a p-value.

    ``p > 0.05`` → ``"n.s."``, ``≤ 0.05`` → ``"*"``, ``≤ 0.01`` → ``"**"``,
    ``≤ 0.001`` → ``"***"``, ``≤ 0.0001`` → ``"****"``; NaN → ``"n.a."``.

    Parameters
    ----------
    p : float
        A p-value in [0, 1] or NaN.

    Returns
    -------
    str
    """
    p = float(p)
    if math.isnan(p):
        return "n.a."
    if not 0.0 <= p <= 1.0:
        raise BayesLRPError(f"a p-value must lie in [0, 1]; got {p}")
    for bound, symbol in _STAR_LEVELS:
        if p <= bound:
            return symbol
    return "n.s."


def mann_whitney(a: Any, b: Any, alternative: str = "less",
                 method: str = "auto") -> MannWhitneyResult:
    """Mann-Whitney U rank test of two independent samples.

    With the default ``alternative="less"`` the alternative hypothesis is that the
    distribution of ``a`` is stochastically lower than that of ``b`` (paper 000, appendix H:
    ``a`` = adversarially trained, ``b`` = Bayesian robustness).

    Parameters
    ----------
    a, b : array-like
        1-D samples; NaNs are dropped from each sample separately.
    alternative : {"less", "greater", "two-sided"}
    method : {"auto", "exact", "asymptotic"}
        Passed to :func:`scipy.stats.mannwhitneyu` (``auto``: exact for small samples
        without ties, otherwise the normal approximation with tie and continuity correction).

    Returns
    -------
    MannWhitneyResult
        ``u`` (U of ``a``), ``pvalue``, the sample sizes used and the alternative.
    """
    _check_alternative(alternative)
    x, y = _as_1d(a, "a"), _as_1d(b, "b")
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    n_a, n_b = int(x.size), int(y.size)
    if n_a == 0 or n_b == 0:
        return MannWhitneyResult(math.nan, math.nan, n_a, n_b, alternative)
    pooled = np.concatenate([x, y])
    if np.all(pooled == pooled[0]):
        # Every comparison is a tie: U sits exactly at its null mean and no alternative gains
        # any support (SciPy's normal approximation would divide by a zero variance).
        return MannWhitneyResult(n_a * n_b / 2.0, 1.0, n_a, n_b, alternative)
    res = _st.mannwhitneyu(x, y, alternative=alternative, method=method)
    return MannWhitneyResult(float(res.statistic), float(res.pvalue), n_a, n_b, alternative)


def spearman(a: Any, b: Any) -> SpearmanResult:
    """Spearman rank correlation with its two-sided p-value.

    Parameters
    ----------
    a, b : array-like
        Paired 1-D samples of equal length; pairs with a NaN on either side are dropped.

    Returns
    -------
    SpearmanResult
        ``rho``, ``pvalue`` (NaN with fewer than 3 pairs) and ``n`` (pairs used). ``rho`` is
        NaN when fewer than 2 pairs remain or either input is constant.
    """
    x, y = _paired(a, b)
    n = int(x.size)
    if n < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return SpearmanResult(math.nan, math.nan, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _st.spearmanr(x, y)
    rho = float(np.clip(res.statistic, -1.0, 1.0))
    pvalue = float(res.pvalue) if n >= 3 else math.nan
    return SpearmanResult(rho, pvalue, n)


def wilcoxon_signed_rank(a: Any, b: Any, alternative: str = "less") -> WilcoxonResult:
    """Wilcoxon signed-rank test of paired samples (differences ``a − b``).

    With ``alternative="less"`` the alternative hypothesis is that ``a − b`` is
    stochastically lower than a distribution symmetric about zero (``a`` tends to be
    smaller), matching the direction of :func:`mann_whitney`.

    Parameters
    ----------
    a, b : array-like
        Paired 1-D samples of equal length; pairs with a NaN on either side are dropped.
    alternative : {"less", "greater", "two-sided"}

    Returns
    -------
    WilcoxonResult
        Statistic, p-value (SciPy, ``zero_method="wilcox"``, ``method="auto"``), pair counts.
    """
    _check_alternative(alternative)
    x, y = _paired(a, b)
    d = x - y
    n, n_nonzero = int(d.size), int(np.count_nonzero(d))
    if n == 0:
        return WilcoxonResult(math.nan, math.nan, 0, 0, alternative)
    if n_nonzero == 0:
        return WilcoxonResult(0.0, 1.0, n, 0, alternative)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _st.wilcoxon(d, alternative=alternative, zero_method="wilcox")
    return WilcoxonResult(float(res.statistic), float(res.pvalue), n, n_nonzero, alternative)
