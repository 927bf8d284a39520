"""95 % bootstrap intervals of the median per-image differences of the run's tests.

Every difference table of the report and of the CLI summary carries the interval of
:func:`bayeslrp.analysis.median_diff_interval` (percentile bootstrap over images, 2000
resamples, seed 0, SPEC §9) of the per-image differences of ``differences.parquet``, in test
index order:

* ``baseline<model`` tests: the differences ``model − baseline``;
* ``adv<bayes`` tests: the paired differences ``Bayesian − adversarial`` on the same images
  (``(Bay − Det) − (Adv − Det)`` per image).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bayeslrp.analysis import median_diff_interval, with_explainer_column
from bayeslrp.analysis.bootstrap import resample_indices

__all__ = ["INTERVAL_KEYS", "format_interval", "test_intervals"]

#: Columns of ``tests.parquet`` / ``differences.parquet`` naming one set of differences.
INTERVAL_KEYS = ["dataset", "baseline", "model", "method", "attack", "rule", "explainer",
                 "layer", "n_samples", "k"]
_OTHER_KEYS = ["dataset", "baseline", "attack", "rule", "explainer", "layer", "k"]


def format_interval(low: float, high: float) -> str:
    """``[+0.050, +0.200]``; ``""`` for NaN bounds."""
    if math.isnan(low) or math.isnan(high):
        return ""
    return f"[{low:+.3f}, {high:+.3f}]"


def _by_key(differences: pd.DataFrame) -> dict[tuple, pd.Series]:
    """Per-image ``diff`` indexed by point, for every key of :data:`INTERVAL_KEYS`."""
    diffs = with_explainer_column(differences)
    out = {}
    for key, g in diffs.groupby(INTERVAL_KEYS, sort=False):
        out[tuple(key)] = g.set_index("point")["diff"].sort_index()
    return out


def test_intervals(tests: pd.DataFrame | None,
                   differences: pd.DataFrame | None) -> pd.DataFrame:
    """``ci low`` and ``ci high`` of every row of ``tests`` (same index).

    Parameters
    ----------
    tests : pandas.DataFrame or None
        ``tests.parquet``.
    differences : pandas.DataFrame or None
        ``differences.parquet`` of the same run.

    Returns
    -------
    pandas.DataFrame
        Columns ``ci low``, ``ci high``; NaN where the run has no differences for a row.
    """
    if tests is None or tests.empty:
        return pd.DataFrame(columns=["ci low", "ci high"], dtype=float)
    nan = np.full(len(tests), np.nan)
    if differences is None or differences.empty:
        return pd.DataFrame({"ci low": nan, "ci high": nan}, index=tests.index)
    series = _by_key(differences)
    tests = with_explainer_column(tests)
    indices: dict[int, np.ndarray] = {}  # the same resamples for every row of n images
    low, high = nan.copy(), nan.copy()
    for i, row in enumerate(tests.itertuples(index=False)):
        rec = row._asdict()
        mine = series.get(tuple(rec[c] for c in INTERVAL_KEYS))
        if mine is None:
            continue
        if rec["test"] == "adv<bayes":
            other = {**{c: rec[c] for c in _OTHER_KEYS}, "model": rec["other"],
                     "n_samples": rec["other_n_samples"],
                     "method": "adv"}  # the adv<bayes tests compare method-adv models
            adv = series.get(tuple(other[c] for c in INTERVAL_KEYS))
            if adv is None:
                continue
            common = mine.index.intersection(adv.index)
            values = (mine.loc[common] - adv.loc[common]).to_numpy()
        else:
            values = mine.to_numpy()
        values = values[~np.isnan(values)]
        if values.size == 0:
            continue
        if values.size not in indices:
            indices[values.size] = resample_indices(values.size)
        _, low[i], high[i] = median_diff_interval(values, indices=indices[values.size])
    return pd.DataFrame({"ci low": low, "ci high": high}, index=tests.index)

