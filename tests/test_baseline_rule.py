"""One baseline rule: the config's compare.baseline, in the tables, figures, report and CLI.

Two deterministic models per architecture, neither named ``det``, and a Bayesian baseline:
the run, the figures, the report and the printed summary all work, and the printed tests are
exactly those of ``tests.parquet``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayeslrp as bl
from bayeslrp.cli import main
from bayeslrp.experiment import runner

CONFIG = {
    "name": "baselines", "seed": 4,
    "data": {"dataset": "synthetic", "n_points": 20, "shape": [1, 8, 8]},
    "models": [
        {"name": "net_a", "method": "det", "arch": "fc2", "hidden": 8, "epochs": 1,
         "batch_size": 64},
        {"name": "net_b", "method": "det", "arch": "fc2", "hidden": 8, "epochs": 2,
         "batch_size": 64},
        {"name": "post", "method": "vi", "arch": "fc2", "hidden": 8, "epochs": 1, "lr": 0.01,
         "batch_size": 64, "n_samples": 3},
    ],
    "attacks": [{"method": "fgsm"}],
    "explain": {"rules": ["epsilon"], "layers": [1, 5], "n_samples": [3]},
    "compare": {"baseline": "post"},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return runner.run_experiment(CONFIG, tmp_path_factory.mktemp("baselines") / "run")


def test_differences_use_the_configured_baseline(run):
    diffs = pd.read_parquet(run.run_dir / "differences.parquet")
    assert set(diffs["baseline"]) == {"post"}
    assert set(diffs["model"]) == {"net_a", "net_b"}
    assert bl.analysis.baseline_map(diffs) == {"net_a": "post", "net_b": "post"}


def test_printed_tests_equal_tests_parquet(run):
    tests = pd.read_parquet(run.run_dir / "tests.parquet")
    printed = bl.report.summary_tables(run.run_dir)["mann_whitney"]
    assert len(printed) == len(tests) > 0
    got = printed.sort_values(["test", "layer"])[["U", "p", "n"]].to_numpy(dtype=float)
    want = tests.assign(test=[f"{b} < {m}" for b, m in zip(tests["baseline"], tests["model"])]
                        ).sort_values(["test", "layer"])[["u", "pvalue", "n_images"]]
    np.testing.assert_array_equal(got, want.to_numpy(dtype=float))


def test_figures_report_and_cli_summary_run(run, capsys):
    files = bl.plots.make_all_figures(run.run_dir)
    assert any("fig3" in str(f) for f in files) and any("fig2" in str(f) for f in files)
    assert main(["report", str(run.run_dir)]) == 0
    out = capsys.readouterr().out
    assert "post < net_a" in out and "post < net_b" in out
    html = (run.run_dir / "report.html").read_text()
    assert "net_a − post" in html
