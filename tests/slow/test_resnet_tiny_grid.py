"""Issue 20: a tiny end-to-end grid on cifar_synthetic (det / adv / VI ResNet-20, FGSM + PGD,
ε / γ / αβ, every learnable layer, n = 10) runs to a report (slow: about 10 minutes on the
2-core development machine, 1 thread).

Run with ``pytest tests/slow/test_resnet_tiny_grid.py -m slow -s``.
"""
from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from bayeslrp.cli import main

pytestmark = pytest.mark.slow

RESNET_LAYERS = [1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15]
CONFIG = """
name: resnet-tiny
seed: 0
device: cpu
data: {dataset: cifar_synthetic, n_points: 20, n_train: 1000}
models:
  - {name: det, method: det, arch: resnet20, epochs: 2}
  - {name: adv, method: adv, arch: resnet20, epochs: 2, augment: crop_flip, adv_eps: 0.03}
  - {name: vi, method: vi, arch: resnet20, epochs: 2, lr: 1.0e-2, n_samples: 10}
attacks:
  - {method: fgsm, eps: 0.03}
  - {method: pgd, eps: 0.03, steps: 10, alpha: 0.01}
explain: {rules: [epsilon, gamma, alphabeta], layers: all, n_samples: [10]}
metrics: {k: [20]}
compare: {baseline: det}
"""


def test_tiny_resnet_grid_runs_to_a_report(tmp_path):
    path = tmp_path / "resnet_tiny.yaml"
    path.write_text(CONFIG)
    run_dir = tmp_path / "run"
    started = time.perf_counter()
    assert main(["run", str(path), "--run-dir", str(run_dir), "--threads", "1", "--quiet"]) == 0
    print(f"tiny ResNet-20 grid: {time.perf_counter() - started:.0f} s wall")
    assert (run_dir / "report.html").stat().st_size > 0
    results = pd.read_parquet(run_dir / "results.parquet")
    assert set(results["model"]) == {"det", "adv", "vi"}
    assert set(results["attack"]) == {"fgsm", "pgd"}
    assert set(results["rule"]) == {"epsilon", "gamma", "alphabeta"}
    assert sorted(set(results["layer"])) == RESNET_LAYERS
    assert set(results.loc[results["model"] == "vi", "n_samples"]) == {10}
    assert results["lrp_robustness"].notna().any()
    models = {m["name"]: m["test_accuracy"] for m in json.loads((run_dir / "models.json")
                                                                 .read_text())}
    print("test accuracy (chance 0.1):", {k: round(v, 3) for k, v in models.items()})
