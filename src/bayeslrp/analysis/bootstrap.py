"""Uncertainty of the report's median differences: a percentile bootstrap over images, and
the across-seed range of the medians where several seeds of a model exist."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bayeslrp.errors import BayesLRPError

__all__ = ["N_BOOT", "median_diff_interval", "resample_indices", "seed_spread"]

N_BOOT = 2000


def resample_indices(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``[n_boot, n]`` indices of ``n`` images drawn with replacement (seeded)."""
    return np.random.default_rng(seed).integers(0, n, size=(int(n_boot), int(n)))


def median_diff_interval(diff, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95,
                         indices: np.ndarray | None = None) -> tuple[float, float, float]:
    """Median of per-image differences and its percentile bootstrap interval.

    Parameters
    ----------
    diff : array-like
        One difference per image (model − baseline on the same image); NaN are dropped.
    n_boot, seed
        Resamples and their seed (ignored when ``indices`` is given).
    level
        Coverage of the interval.
    indices : ndarray, optional
        ``[n_boot, n]`` resample indices (:func:`resample_indices`), e.g. to share them.

    Returns
    -------
    (median, low, high)
        NaN for no images.
    """
    v = np.asarray(diff, dtype=np.float64).reshape(-1)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (float("nan"),) * 3
    if not 0 < level < 1:
        raise BayesLRPError(f"level must be in (0, 1); got {level}")
    idx = resample_indices(v.size, n_boot, seed) if indices is None else np.asarray(indices)
    if idx.ndim != 2 or idx.shape[1] != v.size:
        raise BayesLRPError(f"indices must have shape [n_boot, {v.size}]; got {list(idx.shape)}")
    medians = np.median(v[idx], axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(medians, [tail, 1.0 - tail])
    return float(np.median(v)), float(low), float(high)


def seed_spread(results: pd.DataFrame, groups: Sequence[str], seed_col: str = "seed",
                value: str = "diff") -> pd.DataFrame:
    """Across-seed range of the per-seed medians of ``value`` within each group.

    Parameters
    ----------
    results : DataFrame
        Per-image rows with the ``groups`` columns, ``seed_col`` (which seed's model / posterior
        / subset a row comes from) and ``value``.
    groups : sequence of str
        Columns that define one comparison (e.g. model kind, attack, rule, layer, k).

    Returns
    -------
    DataFrame
        Per group: ``seeds`` (how many), ``median_min``, ``median_max``, ``median_range``.
    """
    missing = [c for c in (*groups, seed_col, value) if c not in results.columns]
    if missing:
        raise BayesLRPError(f"seed_spread needs the columns {missing}")
    per_seed = results.groupby([*groups, seed_col], dropna=False)[value].median()
    out = per_seed.groupby(level=list(range(len(groups))), dropna=False).agg(
        seeds="size", median_min="min", median_max="max").reset_index()
    out["median_range"] = out["median_max"] - out["median_min"]
    return out
