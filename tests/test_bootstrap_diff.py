"""The bootstrap interval of the median difference and the across-seed spread."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayeslrp.analysis.bootstrap import median_diff_interval, resample_indices, seed_spread
from bayeslrp.errors import BayesLRPError


def test_interval_by_hand_on_a_fixed_resample_set():
    diff = np.array([0.1, -0.2, 0.4, 0.0])
    idx = np.array([[0, 0, 1, 2],    # 0.1 0.1 -0.2 0.4 -> median 0.1
                    [1, 1, 1, 3],    # -0.2 x3, 0 -> -0.2
                    [2, 2, 3, 0],    # 0.4 0.4 0 0.1 -> 0.25
                    [3, 3, 3, 3],    # 0
                    [0, 1, 2, 3]])   # 0.05
    med, low, high = median_diff_interval(diff, indices=idx, level=0.5)
    # sorted resample medians [-0.2, 0, 0.05, 0.1, 0.25]; 25 % and 75 % quantiles (linear)
    assert med == pytest.approx(0.05)
    assert (low, high) == (pytest.approx(0.0), pytest.approx(0.1))
    with pytest.raises(BayesLRPError, match="shape"):
        median_diff_interval(diff, indices=idx[:, :3])
    assert np.isnan(median_diff_interval([np.nan])[0])


def test_interval_is_seeded_and_resamples_images():
    a = median_diff_interval(np.arange(50.0), seed=3)
    assert a == median_diff_interval(np.arange(50.0), seed=3)
    assert a != median_diff_interval(np.arange(50.0), seed=4)
    assert resample_indices(5, 7, 0).shape == (7, 5)


def test_coverage_is_about_95_percent():
    """Median 0 of a symmetric distribution: the interval covers it in ~95 % of data sets."""
    rng = np.random.default_rng(0)
    trials = 400
    hits = sum(lo <= 0.0 <= hi for _, lo, hi in
               (median_diff_interval(rng.standard_normal(101), n_boot=1000, seed=t)
                for t in range(trials)))
    # binomial MC error at 95 %: sd = sqrt(.95 * .05 / 400) ≈ 0.011; allow 3.5 sd either side
    # plus the percentile bootstrap's small-sample deviation of the median
    assert 0.90 <= hits / trials <= 0.99


def test_seed_spread_on_a_constructed_table():
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.1), (2, -0.05)):
        for point in range(5):
            for layer in (1, 3):
                rows.append({"kind": "hmc", "layer": layer, "seed": seed, "point": point,
                             "diff": shift + layer * 0.01 * point})
    out = seed_spread(pd.DataFrame(rows), ["kind", "layer"])
    by_layer = out.set_index("layer")
    # per-seed medians at layer 1: median over points of 0.01 * point = 0.02, plus the shift
    assert by_layer.loc[1, "seeds"] == 3
    assert by_layer.loc[1, "median_min"] == pytest.approx(-0.03)
    assert by_layer.loc[1, "median_max"] == pytest.approx(0.12)
    assert by_layer.loc[3, "median_range"] == pytest.approx(0.15)
    with pytest.raises(BayesLRPError, match="seed"):
        seed_spread(pd.DataFrame(rows).drop(columns="seed"), ["kind"])
