"""Every Bayesian model method (not only VI and HMC) is labelled and grouped as a posterior in
figures and report tables: its rows at different sample counts stay apart."""
from __future__ import annotations

import pandas as pd

from bayeslrp.plots.frames import BAYESIAN, series_label
from bayeslrp.plugins.models import MODEL_METHODS
from bayeslrp.plugins.models.vi import VIMethod
from bayeslrp.report.drivers import condition_label
from bayeslrp.report.tables import layer_pivot, method_kind


def test_every_registered_bayesian_method_counts():
    for method in ("vi", "hmc", "ensemble", "mc_dropout", "laplace", "weight_noise"):
        assert method in BAYESIAN
        assert method_kind(method) == "Bay"
        assert series_label("m", method, 100) == "m (100 samples)"
        assert condition_label(method, "m", "m", 10, -1) == "Bay10"
    for method in ("det", "adv"):
        assert method not in BAYESIAN and series_label("m", method, 1) == "m"
    assert pd.Series(["laplace", "det"]).isin(BAYESIAN).tolist() == [True, False]


def test_a_plugin_registered_later_counts():
    class LateMethod(VIMethod):
        name = "late_bayes"

    MODEL_METHODS.register(LateMethod)
    try:
        assert "late_bayes" in BAYESIAN and method_kind("late_bayes") == "Bay"
    finally:
        MODEL_METHODS.unregister("late_bayes")
    assert "late_bayes" not in BAYESIAN


def test_two_sample_counts_of_a_new_method_pivot_into_two_rows():
    # the report's tests table crashed ("Index contains duplicate entries") when a Laplace
    # model at n = 1 and n = 100 got the same label
    rows = [{"model": series_label("lap", "laplace", n), "layer": layer, "v": f"{n}/{layer}"}
            for n in (1, 100) for layer in (1, 3)]
    wide = layer_pivot(pd.DataFrame(rows), ["model"], lambda r: r["v"])
    assert wide["model"].tolist() == ["lap (1 samples)", "lap (100 samples)"]
    assert wide["layer 3"].tolist() == ["1/3", "100/3"]
