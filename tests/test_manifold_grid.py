"""The ``manifold`` grid stage: config validation, the published table, and agreement of its
numbers with direct ``bl.analysis`` calls on the same models and points."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import bayeslrp as bl
from bayeslrp.analysis import manifold as mf
from bayeslrp.analysis.manifold_measures import MANIFOLD_COLUMNS, sample_input_gradients
from bayeslrp.ensemble import Ensemble
from bayeslrp.experiment import runner
from bayeslrp.experiment.config import load_config
from bayeslrp.experiment.stages.base import MODEL_DIR

MANIFOLD = {"k": 12, "dim": 3, "n_samples": [1, 2, 3], "heatmaps": ["epsilon", "grad_x_input"],
            "controls": {"random": True, "k": [20], "dim": [5]}}
CONFIG = {
    "name": "manifold", "seed": 1,
    "data": {"dataset": "synthetic", "n_points": 10, "shape": [1, 6, 6]},
    "models": [
        {"name": "det", "method": "det", "arch": "fc2", "hidden": 8, "epochs": 2,
         "batch_size": 64},
        {"name": "vi", "method": "vi", "arch": "fc2", "hidden": 8, "epochs": 2, "lr": 0.01,
         "batch_size": 64, "n_samples": 3},
    ],
    "attacks": [{"method": "fgsm"}],
    "explain": {"rules": ["epsilon"], "layers": "last", "n_samples": [1, 3]},
    "compare": {"baseline": "det"},
    "analysis": {"manifold": MANIFOLD},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return runner.run_experiment(CONFIG, tmp_path_factory.mktemp("manifold") / "run")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("manifold,match", [
    ({"dim": None}, "give dim"),
    ({"dim": 4, "variance": 0.9}, "not both"),
    ({"k": 5, "dim": 5}, "below the neighbourhood size"),
    ({"k": 12, "dim": 3, "controls": {"k": [3]}}, "below the neighbourhood size"),
    ({"quantities": [], "heatmaps": False, "perturbations": False}, "nothing to measure"),
    ({"quantities": ["hessian"]}, "analysis.manifold.quantities"),
    ({"heatmaps": ["nope"]}, "unknown explainer 'nope'"),
])
def test_bad_manifold_settings_are_config_errors(manifold, match):
    with pytest.raises(bl.BayesLRPError, match=match):
        load_config({**CONFIG, "analysis": {"manifold": manifold}})


def test_manifold_table_is_published(run):
    table = pd.read_parquet(run.run_dir / "manifold.parquet")
    assert tuple(table.columns) == MANIFOLD_COLUMNS
    assert set(table["model"]) == {"det", "vi"}
    assert set(table["quantity"]) == {"prediction", "loss", "heatmap:epsilon",
                                      "heatmap:grad_x_input", "perturbation"}
    assert set(table["basis"]) == {"pca", "random"}
    assert set(zip(table["k"], table["dim"])) == {(12, 3), (20, 3), (12, 5)}
    vi = table[(table["model"] == "vi") & (table["kind"] == "mean")]
    assert sorted(vi["n"].unique()) == [1, 2, 3]
    det = table[table["model"] == "det"]
    assert sorted(det["n"].unique()) == [1]  # a det net has one sample
    samples = table[table["kind"] == "sample"]
    assert set(samples["basis"]) == {"pca"} and set(zip(samples["k"], samples["dim"])) == {(12, 3)}
    assert len(samples[(samples["model"] == "vi") & (samples["quantity"] == "loss")]) == 3 * 10
    ok = table["share"].dropna()
    assert ((ok >= 0) & (ok <= 1 + 1e-9)).all()


def test_stage_numbers_equal_direct_library_calls(run):
    table = pd.read_parquet(run.run_dir / "manifold.parquet")
    store_dir = run.run_dir / "artifacts"
    vi_dirs = [p for p in (store_dir / "train").iterdir()
               if (p / MODEL_DIR / "ensemble.json").exists()]
    ens = next(e for e in (Ensemble.load(p / MODEL_DIR) for p in vi_dirs) if e.n_samples == 3)
    data_dir = next((store_dir / "data").iterdir())
    from safetensors.torch import load_file
    d = load_file(data_dir / "data.safetensors")
    x_train, _ = bl.data.load("synthetic", "train", shape=(1, 6, 6), n_classes=10, seed=0)
    bases = mf.tangent_spaces(d["x"], x_train, k=12, dim=3)
    grads = sample_input_gradients(ens, d["x"], "loss", y=d["y"])
    want = mf.normal_share(grads[:2].mean(0), bases).numpy()
    rows = table.query("model == 'vi' and quantity == 'loss' and basis == 'pca' and k == 12 "
                       "and dim == 3 and kind == 'mean' and n == 2").sort_values("point")
    np.testing.assert_allclose(rows["share"].to_numpy(), want, rtol=1e-5, atol=1e-7)
    assert list(rows["point"]) == sorted(d["points"].tolist())
    # heatmaps: every sample's grad×input map, explained for the predictive class
    heat = bl.explain(ens, d["x"], method="grad_x_input", reduce=None, target=ens.predict(d["x"]))
    want = mf.normal_share(heat.mean(0), bases).numpy()
    rows = table.query("model == 'vi' and quantity == 'heatmap:grad_x_input' and basis == 'pca' "
                       "and k == 12 and dim == 3 and kind == 'mean' and n == 3").sort_values("point")
    np.testing.assert_allclose(rows["share"].to_numpy(), want, rtol=1e-5, atol=1e-7)


def test_figure_and_report_section(run):
    from bayeslrp.report import write_report

    write_report(run.run_dir)
    figures = run.run_dir / "figures"
    assert any(p.name.startswith("manifold") for p in figures.iterdir())
    html = (run.run_dir / "report.html").read_text()
    assert "Theorem IV.1" in html and "normal share" in html


def test_plan_estimates_the_manifold_tasks(run):
    from bayeslrp.experiment.plan_summary import plan_summary

    summary = plan_summary(CONFIG, run.run_dir)
    row = summary.table.set_index("stage").loc["manifold"]
    assert row["tasks"] == 2 and row["done"] == 2 and row["estimate_s"] > 0
