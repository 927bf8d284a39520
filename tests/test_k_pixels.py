"""Top-k as a pixel count (``metrics.k_pixels``) and fractional percentages, end to end."""
from __future__ import annotations

from fractions import Fraction

import pandas as pd
import pytest
import torch

import bayeslrp as bl
from bayeslrp.experiment import runner
from bayeslrp.experiment.config import load_config
from bayeslrp.experiment.grid import expand_grid
from bayeslrp.experiment.store import Store

CONFIG = {
    "name": "kpix", "seed": 3,
    "data": {"dataset": "synthetic", "n_points": 20, "shape": [1, 8, 8]},
    "models": [{"name": "det", "method": "det", "arch": "fc2", "hidden": 8, "epochs": 1,
                "batch_size": 64}],
    "attacks": [{"method": "fgsm"}],
    "explain": {"rules": ["epsilon"], "layers": "last", "n_samples": [1]},
    "metrics": {"k": [12.5], "k_pixels": [10]},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return runner.run_experiment(CONFIG, tmp_path_factory.mktemp("kpix") / "run")


def test_rows_for_fractional_percent_and_pixel_count(run):
    results = pd.read_parquet(run.results)
    assert results["k"].dtype == "float64" and results["k_pixels"].dtype == "int64"
    by_k = results.groupby("k")["k_pixels"].unique().to_dict()
    # floor(12.5 % of 64) = 8; 10 pixels of 64 is 15.625 %
    assert {k: list(v) for k, v in by_k.items()} == {12.5: [8], 15.625: [10]}


def test_pixel_count_rows_equal_the_metric_with_that_count(run):
    grid = expand_grid(load_config(CONFIG))
    store = Store(run.run_dir)
    clean = store.load_tensors(grid.by_label("explain[det,clean,epsilon,L5]").key,
                               "heatmaps.safetensors")["mean"][0]
    adv = store.load_tensors(grid.by_label("explain[det,fgsm,epsilon,L5]").key,
                             "heatmaps.safetensors")["mean"][0]
    expected = bl.metrics.lrp_robustness(clean, adv, k=Fraction(100 * 10, 64))
    results = pd.read_parquet(run.results)
    got = torch.tensor(results.loc[results["k_pixels"] == 10, "lrp_robustness"].to_numpy())
    torch.testing.assert_close(got, expected.double())
    assert bl.metrics.topk_count(64, Fraction(1000, 64)) == 10


def test_impossible_pixel_counts_are_config_errors():
    bad = {**CONFIG, "metrics": {"k_pixels": [65]}}
    with pytest.raises(bl.BayesLRPError, match=r"metrics.k_pixels\[0\]: 65 pixels of 64"):
        load_config(bad)
