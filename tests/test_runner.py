"""The experiment runner end to end on a tiny grid: results, oracles, reuse, resume, executors.

One tiny run (synthetic 8×8 data, fc2 nets with 8 hidden units, det/adv/VI/HMC, FGSM + PGD)
is shared by the module; its numbers are checked against independent recomputations from
the stored models and images.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import bayeslrp as bl
from bayeslrp.ensemble import Ensemble
from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment import expand_grid, load_config
from bayeslrp.experiment import runner, stages
from bayeslrp.experiment.store import Store
from bayeslrp.fileio import sha256_file

SRC = Path(__file__).resolve().parents[1] / "src"

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"dataset": "synthetic", "n_points": 20, "shape": [1, 8, 8]},
    "models": [
        {"name": "det", "method": "det", "arch": "fc2", "hidden": 8, "epochs": 2,
         "batch_size": 64},
        {"name": "adv", "method": "adv", "arch": "fc2", "hidden": 8, "epochs": 2,
         "batch_size": 64},
        {"name": "vi", "method": "vi", "arch": "fc2", "hidden": 8, "epochs": 2, "lr": 0.01,
         "batch_size": 64, "n_samples": 4},
        {"name": "hmc", "method": "hmc", "arch": "fc2", "hidden": 8, "n_samples": 4,
         "warmup": 3, "steps": 2, "mode": "subset", "subset": 100, "init_model": "det"},
    ],
    "attacks": [{"method": "fgsm"}, {"method": "pgd", "steps": 3}],
    "explain": {"rules": ["epsilon"], "layers": "all", "n_samples": [2, 4]},
    "metrics": {"k": [20, 50]},
    "compare": {"baseline": "det"},
}
N_POINTS, LAYERS, KS = 20, (1, 3, 5), (20, 50)


def tiny_yaml(path: Path, cfg: dict = TINY) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runner") / "run"
    result = runner.run_experiment(TINY, run_dir)
    return result


def _grid():
    return expand_grid(load_config(TINY))


def _store(result) -> Store:
    return Store(result.run_dir)


def _model(result, name) -> Ensemble:
    task = _grid().by_label(f"train[{name}]")
    return Ensemble.load(_store(result).get_path(task.key) / stages.MODEL_DIR)


def _data(result):
    return _store(result).load_tensors(_grid().by_label("data").key, stages.DATA_FILE)


def _adv_images(result, model, attack):
    key = _grid().by_label(f"attack[{model},{attack}]").key
    return _store(result).load_tensors(key, stages.IMAGES_FILE)["x"]


# --------------------------------------------------------------------------- results table


def test_results_schema_rows_and_order(tiny_run):
    df = pd.read_parquet(tiny_run.results)
    assert list(df.columns) == list(stages.RESULT_COLUMNS)
    kinds = {c: df[c].dtype.kind for c in df.columns}
    for c in ("layer", "n_samples", "k_pixels", "point", "label", "pred_clean", "pred_adv",
              "nnz"):
        assert kinds[c] == "i", c
    assert kinds["k"] == "f"  # fractional percentages are allowed
    assert kinds["success"] == "b"
    assert kinds["lrp_robustness"] == kinds["softmax_robustness"] == "f"
    # det/adv: 1 sample count; vi/hmc: 2 → 6 series × 2 attacks × 3 layers × 2 k × 20 points
    assert len(df) == 6 * 2 * len(LAYERS) * len(KS) * N_POINTS
    assert set(df["model"]) == {"det", "adv", "vi", "hmc"}
    assert set(df.loc[df["model"] == "vi", "n_samples"]) == {2, 4}
    assert set(df.loc[df["model"] == "det", "n_samples"]) == {1}
    assert set(df["attack_mode"]) == {"", "expected_gradient"}
    assert set(df.loc[df["method"].isin(["det", "adv"]), "attack_mode"]) == {""}
    assert df.equals(df.sort_values(stages.RESULT_ORDER, kind="mergesort")
                     .reset_index(drop=True))
    assert df["lrp_robustness"].between(0, 1).all()
    assert df["softmax_robustness"].between(0, 1).all()
    d = _data(tiny_run)
    first = df[(df["model"] == "det") & (df["attack"] == "fgsm") & (df["layer"] == 5)
               & (df["k"] == 20)]
    assert first["point"].tolist() == d["points"].tolist()
    assert first["label"].tolist() == d["y"].tolist()
    assert sorted(np.bincount(first["label"], minlength=10).tolist()) == [2] * 10


def test_predictions_and_success_match_the_models(tiny_run):
    df = pd.read_parquet(tiny_run.results)
    d = _data(tiny_run)
    for name, n in (("det", 1), ("vi", 2), ("vi", 4), ("hmc", 2)):
        ens = _model(tiny_run, name)
        x_adv = _adv_images(tiny_run, name, "pgd")
        p = ens.predict_proba(d["x"], n_samples=n).double()
        p_adv = ens.predict_proba(x_adv, n_samples=n).double()
        rows = df[(df["model"] == name) & (df["attack"] == "pgd") & (df["n_samples"] == n)
                  & (df["layer"] == 1) & (df["k"] == 20)]
        assert rows["pred_clean"].tolist() == p.argmax(1).tolist()
        assert rows["pred_adv"].tolist() == p_adv.argmax(1).tolist()
        soft = 1 - (p - p_adv).abs().amax(1)
        np.testing.assert_allclose(rows["softmax_robustness"], soft.numpy(), atol=1e-6)
        y = d["y"].numpy()
        expected = (rows["pred_clean"].to_numpy() == y) & (rows["pred_adv"].to_numpy() != y)
        assert rows["success"].tolist() == expected.tolist()


def _robustness_oracle(R, R_adv, k):
    """Independent k-LRP robustness, ties="nonzero" (SPEC §6), one image at a time."""
    out = []
    for r, ra in zip(R.reshape(len(R), -1).numpy(), R_adv.reshape(len(R), -1).numpy()):
        size = min(int(np.floor(k * r.size / 100)), int(np.count_nonzero(r)))
        a = set(np.argsort(-np.abs(r), kind="stable")[:size])
        b = set(np.argsort(-np.abs(ra), kind="stable")[:size])
        out.append(len(a & b) / size if size else float(np.count_nonzero(ra) == 0))
    return np.array(out)


@pytest.mark.parametrize("name,n,layer", [("det", 1, 1), ("adv", 1, 5), ("vi", 2, 3),
                                          ("hmc", 4, 5), ("vi", 2, 5)])
def test_lrp_robustness_against_recomputed_explanations(tiny_run, name, n, layer):
    """Heatmaps recomputed with lrp.explain(reduce="mean") on the first n samples."""
    df = pd.read_parquet(tiny_run.results)
    d = _data(tiny_run)
    ens = _model(tiny_run, name)
    x_adv = _adv_images(tiny_run, name, "fgsm")
    R = bl.lrp.explain(ens, d["x"], rule="epsilon", layer=layer, n_samples=n, epsilon=0.1)
    R_adv = bl.lrp.explain(ens, x_adv, rule="epsilon", layer=layer, n_samples=n, epsilon=0.1)
    for k in KS:
        rows = df[(df["model"] == name) & (df["attack"] == "fgsm") & (df["n_samples"] == n)
                  & (df["layer"] == layer) & (df["k"] == k)]
        assert len(rows) == N_POINTS
        np.testing.assert_allclose(rows["lrp_robustness"], _robustness_oracle(R, R_adv, k),
                                   atol=1e-9)
        assert rows["nnz"].tolist() == (R.reshape(N_POINTS, -1) != 0).sum(1).tolist()


def test_stored_heatmaps_equal_direct_bayesian_explanations(tiny_run):
    """Cumulative means of one max-n pass == lrp.explain with the first n samples."""
    g, store = _grid(), _store(tiny_run)
    d = _data(tiny_run)
    for name in ("vi", "hmc"):
        ens = _model(tiny_run, name)
        for layer in LAYERS:
            stored = store.load_tensors(g.by_label(f"explain[{name},clean,epsilon,L{layer}]").key,
                                        stages.HEATMAPS_FILE)
            assert stored["n_samples"].tolist() == [2, 4]
            for i, n in enumerate((2, 4)):
                mean, std = bl.lrp.explain(ens, d["x"], rule="epsilon", layer=layer,
                                           n_samples=n, reduce="mean_std", epsilon=0.1)
                torch.testing.assert_close(stored["mean"][i], mean, atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(stored["std"][i], std, atol=1e-5, rtol=1e-4)


def test_differences_and_tests_tables(tiny_run):
    from bayeslrp import stats

    run_dir = tiny_run.run_dir
    df = pd.read_parquet(run_dir / "results.parquet")
    diffs = pd.read_parquet(run_dir / "differences.parquet")
    tests = pd.read_parquet(run_dir / "tests.parquet")
    assert set(diffs["model"]) == {"adv", "vi", "hmc"} and set(diffs["baseline"]) == {"det"}
    key = ["dataset", "attack", "rule", "layer", "k", "point"]
    base = df[df["model"] == "det"].set_index(key)["lrp_robustness"]
    mine = diffs.set_index(key)
    np.testing.assert_allclose(mine["diff"], mine["lrp_robustness"] - base.loc[mine.index].values)
    row = tests[(tests["test"] == "baseline<model") & (tests["model"] == "vi")
                & (tests["attack"] == "fgsm") & (tests["layer"] == 3) & (tests["n_samples"] == 4)
                & (tests["k"] == 20)].iloc[0]
    part = diffs[(diffs["model"] == "vi") & (diffs["attack"] == "fgsm") & (diffs["layer"] == 3)
                 & (diffs["n_samples"] == 4) & (diffs["k"] == 20)]
    mw = stats.mann_whitney(part["baseline_robustness"], part["lrp_robustness"], "less")
    assert row["pvalue"] == pytest.approx(mw.pvalue) and row["stars"] == mw.stars
    assert {"baseline<model", "adv<bayes"} == set(tests["test"])
    spear = pd.read_parquet(run_dir / "spearman.parquet")
    assert len(spear) == 6 * 2 * len(LAYERS) * len(KS)


def test_run_directory_files(tiny_run):
    run_dir = tiny_run.run_dir
    models = json.loads((run_dir / "models.json").read_text())
    assert [m["name"] for m in models] == ["det", "adv", "vi", "hmc"]
    assert [m["n_samples"] for m in models] == [1, 1, 4, 4]
    for m in models:
        assert 0.0 <= m["test_accuracy"] <= 1.0
    d = _data(tiny_run)
    ens = _model(tiny_run, "det")
    x_test, y_test = bl.data.load("synthetic", "test", shape=(1, 8, 8), seed=0)
    assert models[0]["test_accuracy"] == pytest.approx(ens.accuracy(x_test, y_test))
    assert "acceptance" in models[3]["diagnostics"] and "elbo_per_point" in models[2]["diagnostics"]
    _check_calibration_and_posterior(tiny_run, models, x_test, y_test)
    assert load_config((run_dir / "config.yaml").read_text()) == load_config(TINY)
    files = sorted(p.name for p in (run_dir / "heatmaps").iterdir())
    # (det, adv: 1 n; vi, hmc: 2 n) × 2 attacks × 3 layers
    assert len(files) == 6 * 2 * len(LAYERS)
    assert "hmc__pgd__epsilon__layer3__n4.safetensors" in files
    from safetensors.torch import load_file

    t = load_file(str(run_dir / "heatmaps" / "det__fgsm__epsilon__layer5__n1.safetensors"))
    from bayeslrp.experiment.stages.heatmap_files import HEATMAP_POINTS as b
    assert t["R_clean"].shape == (b, 8, 8) and t["x_adv"].shape == (b, 1, 8, 8)
    assert t["points"].tolist() == d["points"][:b].tolist()
    torch.testing.assert_close(t["x_adv"], _adv_images(tiny_run, "det", "fgsm")[:b])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["runs"][-1]["status"] == "finished"
    (flags,) = manifest["runs"][-1]["extra"]["torch"]  # configure_torch's, one per document
    assert flags["device"] == "cpu" and flags["cudnn_deterministic"] is True
    assert flags["tf32_matmul"] is False and flags["tf32_cudnn"] is False
    assert not (run_dir / "work").exists()


def _check_calibration_and_posterior(tiny_run, models, x_test, y_test):
    """models.json's calibration is that of each model's predictive mean on the test split
    (bl.calibration, oracle-tested on its own); the posterior block names its reference."""
    from bayeslrp.calibration import calibration
    from bayeslrp.posterior_diagnostics import repeated_share

    for m in models:
        ens = _model(tiny_run, m["name"])
        want = calibration(ens.predict_proba(x_test), y_test)
        assert m["calibration"]["nll"] == pytest.approx(want["nll"], rel=1e-9)
        assert m["calibration"]["ece"] == pytest.approx(want["ece"], abs=1e-12)
        assert m["calibration"]["accuracy"] == pytest.approx(m["test_accuracy"])
    det, adv, vi, hmc = models
    assert det["posterior"]["prediction_disagreement"] is None  # S = 1: no pairs
    assert vi["posterior"]["reference"] == "vi_mean"
    assert hmc["posterior"]["reference"] == "init_model"  # started at det
    assert hmc["posterior"]["repeated_share"] == pytest.approx(
        repeated_share(_model(tiny_run, "hmc")))
    assert hmc["posterior"]["predictive_ess"]["n_draws"] == 4
    assert 0.0 <= vi["posterior"]["prediction_disagreement"] <= 1.0


def test_rerun_reuses_everything_and_is_bit_identical(tiny_run, tmp_path):
    before = sha256_file(tiny_run.results)
    again = runner.run_experiment(TINY, tiny_run.run_dir)
    assert again.computed == []
    assert len(again.reused) == len(_grid())
    assert sha256_file(again.results) == before
    manifest = json.loads((tiny_run.run_dir / "manifest.json").read_text())
    assert all(not s["computed"] for s in manifest["runs"][-1]["stages"])


def test_changed_metrics_recompute_only_downstream(tiny_run, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run.run_dir, run_dir)
    cfg = copy.deepcopy(TINY)
    cfg["metrics"] = {"k": [30]}
    result = runner.run_experiment(cfg, run_dir)
    stages_run = {label.split("[")[0] for label, _ in result.computed}
    assert stages_run == {"metrics", "compare"}
    assert set(pd.read_parquet(result.results)["k"]) == {30}


# --------------------------------------------------------------------------- resume


def test_killed_run_resumes_to_identical_results(tiny_run, tmp_path):
    config = tiny_yaml(tmp_path / "tiny.yaml")
    run_dir = tmp_path / "killed"
    code = ("import sys; from bayeslrp.cli import main; "
            f"sys.exit(main(['run', {str(config)!r}, '--run-dir', {str(run_dir)!r}, '--quiet']))")
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    train_dir = run_dir / "artifacts" / "train"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if train_dir.is_dir() and any(not p.name.startswith(".") for p in train_dir.iterdir()):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "results.parquet").exists()
    first = json.loads((run_dir / "manifest.json").read_text())
    assert first["runs"][0]["status"] == "running"
    grid = _grid()
    killed = Store(run_dir)  # verifies every artifact: a killed writer leaves none half-done
    present = {t.label for t in grid.tasks if killed.has(t.key)}
    assert {"data", "train[det]"} <= present and len(present) < len(grid)

    result = runner.run_experiment(str(config), run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [r["status"] for r in manifest["runs"]] == ["interrupted", "finished"]  # issue 16
    rerun = {s["label"]: s["computed"] for s in manifest["runs"][1]["stages"]}
    assert rerun == {t.label: t.label not in present for t in grid.tasks}
    pd.testing.assert_frame_equal(pd.read_parquet(result.results),
                                  pd.read_parquet(tiny_run.results))
    assert sha256_file(result.results) == sha256_file(tiny_run.results)


# --------------------------------------------------------------------------- executors


class ReversingExecutor:
    """Takes up to three tasks at a time and finishes the last submitted first."""

    slots = 3

    def __init__(self, store, ctx):
        self.store, self.ctx, self.pending, self.order = store, ctx, [], []

    def submit(self, task):
        self.pending.append(task)

    def wait(self):
        task = self.pending.pop()
        self.order.append(task.label)
        return task, runner.execute_task(task, self.store, self.ctx)

    def close(self):
        self.pending.clear()


def test_pluggable_executor_gives_identical_results(tiny_run, tmp_path):
    import shutil

    run_dir = tmp_path / "rev"
    for stage in ("data", "train"):  # start from the trained models to keep the test short
        shutil.copytree(tiny_run.run_dir / "artifacts" / stage, run_dir / "artifacts" / stage)
    runner.EXECUTORS["reversing"] = ReversingExecutor
    try:
        result = runner.run_experiment(TINY, run_dir, executor="reversing")
    finally:
        del runner.EXECUTORS["reversing"]
    labels = [label for label, _ in result.computed]
    order = [t.label for t in _grid().unique() if t.stage not in ("data", "train")]
    assert sorted(labels) == sorted(order)
    assert labels != order  # a different (but dependency-respecting) order was used
    assert sha256_file(result.results) == sha256_file(tiny_run.results)


def test_unknown_executor_is_a_user_error(tmp_path):
    with pytest.raises(BayesLRPError, match="unknown executor"):
        runner.run_tasks([], Store(tmp_path / "s"), stages.StageContext(), executor="nope")


# --------------------------------------------------------------------------- planning


def test_builtin_dataset_limits_match_the_data():
    for name, (n_train, n_test_max) in {"digits": (1348, 410),
                                        "synthetic": (1000, 200)}.items():
        x, y = bl.data.load(name, "train")
        assert x.shape[0] == n_train == bl.catalog.DATASETS[name].train_size
        _, y = bl.data.load(name, "test")
        assert 10 * int(torch.bincount(y, minlength=10).min()) == n_test_max
        assert bl.catalog.DATASETS[name].max_points == n_test_max


@pytest.mark.parametrize("mutate,match", [
    (lambda c: c["explain"].update(bayes="avg_prediction"), "explain.bayes"),
    (lambda c: c["metrics"].update(k=[0.5]), r"metrics.k\[0\]"),
    (lambda c: c["data"].update(n_points=210), "data.n_points"),
    (lambda c: c["data"].update(n_train=2000), "data.n_train"),
    (lambda c: c["models"][1].update(adv_attack="pgd", adv_mix=True), r"models\[1\].adv_mix"),
    (lambda c: c["models"][3].update(mode="blocks", subset=None, chains=2, n_samples=4),
     r"models\[3\]"),
])
def test_plan_checks_reject_before_writing(tmp_path, mutate, match):
    cfg = copy.deepcopy(TINY)
    mutate(cfg)
    cfg["models"][3] = {k: v for k, v in cfg["models"][3].items() if v is not None}
    with pytest.raises(BayesLRPError, match=match):
        runner.run_experiment(cfg, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_run_dir_must_be_a_run_directory(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(BayesLRPError, match="not a bayeslrp run directory"):
        runner.plan_run(TINY, tmp_path / "busy")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BayesLRPError, match="not a directory"):
        runner.plan_run(TINY, tmp_path / "file")


def test_multi_document_configs(tmp_path):
    other = copy.deepcopy(TINY)
    other["name"] = "other"
    for m in other["models"]:
        m["name"] = "o_" + m["name"]
    other["models"][3]["init_model"] = "o_det"
    other["compare"] = {"baseline": "o_det"}
    text = yaml.safe_dump(TINY) + "---\n" + yaml.safe_dump(other)
    configs = runner.load_configs(text)
    assert [c.name for c in configs] == ["tiny", "other"]
    with pytest.raises(BayesLRPError, match="document 2: .*unique across documents"):
        runner.load_configs(yaml.safe_dump(TINY) + "---\n" + yaml.safe_dump(TINY))
    with pytest.raises(BayesLRPError, match="document 2: config error at data.n_points"):
        bad = copy.deepcopy(other)
        bad["data"]["n_points"] = 15
        runner.load_configs(yaml.safe_dump(TINY) + "---\n" + yaml.safe_dump(bad))


def test_missing_data_is_skipped_only_when_asked(tmp_path, monkeypatch):
    cfg = copy.deepcopy(TINY)
    monkeypatch.setattr(runner, "data_problem",
                        lambda c: "synthetic data not found" if c.name == "gone" else None)
    gone = copy.deepcopy(cfg)
    gone["name"] = "gone"
    for m in gone["models"]:
        m["name"] = "g_" + m["name"]
    gone["models"][3]["init_model"] = "g_det"
    gone["compare"] = {"baseline": "g_det"}
    with pytest.raises(BayesLRPError, match="synthetic data not found"):
        runner.plan_run([cfg, gone], tmp_path / "r")
    plan = runner.plan_run([cfg, gone], tmp_path / "r", skip_unavailable=True)
    assert [p.config.name for p in plan.parts] == ["tiny"] and len(plan.skipped) == 1


def test_device_cuda_refused_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(BayesLRPError, match="CUDA is not available"):
        runner.plan_run(TINY, tmp_path / "r", device="cuda")
    assert runner.resolve_device("auto") == "cpu"


# --------------------------------------------------------------------------- packaged profiles


def _packaged(name):
    from bayeslrp.cli.run_cmd import packaged_config

    return runner.load_configs(packaged_config(name))


def test_demo_profile_matches_the_spec():
    (cfg,) = _packaged("demo")
    assert cfg.data.dataset == "mnist" and cfg.data.n_points == 100
    assert {m.method for m in cfg.models} == {"det", "adv", "vi", "hmc"}
    assert {m.arch for m in cfg.models} == {"fc2"}
    assert all(m.hidden <= 256 for m in cfg.models)
    hmc = cfg.model("hmc")
    assert hmc.mode == "subset"
    assert {a.method for a in cfg.attacks} == {"fgsm", "pgd"}
    assert cfg.explain.rules == ("epsilon",) and cfg.explain.layers == "all"
    assert len(expand_grid(cfg)) > 0


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_reproduction_profiles_validate_and_expand(profile):
    configs = _packaged(profile)
    grids = [expand_grid(c) for c in configs]
    for cfg in configs:
        assert cfg.data.n_points == 500
        assert set(cfg.explain.rules) == {"epsilon", "gamma", "alphabeta"}
        assert cfg.explain.layers == "all"
        assert {a.method for a in cfg.attacks} >= {"fgsm", "pgd"}
    datasets = {c.data.dataset for c in configs}
    if profile == "quick":
        assert datasets == {"mnist"}
        methods = {(m.arch, m.method) for c in configs for m in c.models}
        assert {("fc2", "hmc"), ("conv", "vi")} <= methods
        vi = [m for c in configs for m in c.models if m.method == "vi"][0]
        assert (vi.epochs, vi.lr, vi.n_samples, vi.channels, vi.hidden) == (5, 0.01, 100, 32, 512)
    else:
        assert datasets == {"mnist", "fashion_mnist", "cifar10"}
        attacks = {a.method for c in configs for a in c.attacks}
        assert attacks == {"fgsm", "pgd", "topk", "region", "beta"}
        assert all(c.explain.n_samples == (10, 50, 100) for c in configs)
    assert sum(len(g) for g in grids) > 100


# --------------------------------------------------------------------------- every option

OPTIONS = {
    "name": "options", "seed": 5,
    "data": {"dataset": "synthetic", "n_points": 10, "shape": [1, 8, 8], "n_train": 200},
    "models": [
        {"name": "det", "method": "det", "arch": "fc2", "hidden": 4, "epochs": 1},
        {"name": "advpgd", "method": "adv", "arch": "fc2", "hidden": 4, "epochs": 1,
         "adv_attack": "pgd", "adv_steps": 2},
        {"name": "chains", "method": "hmc", "arch": "fc2", "hidden": 4, "n_samples": 16,
         "warmup": 1, "steps": 1, "chains": 2, "adapt_mass": True, "init": "random"},
        {"name": "blocks", "method": "hmc", "arch": "fc2", "hidden": 4, "n_samples": 2,
         "warmup": 1, "steps": 1, "mode": "blocks", "block_size": 100, "init_model": "det"},
    ],
    "attacks": [
        {"method": "fgsm", "mode": "per_sample_average"},
        {"method": "pgd", "steps": 2, "mode": "predictive", "targeted": True, "restarts": 2,
         "n_samples": 1},
        {"method": "topk", "steps": 1, "rule": "gamma"},
        {"method": "region", "steps": 1, "rule": "alphabeta"},
        {"name": "manip", "method": "beta", "steps": 1},
    ],
    "explain": {"rules": ["alphabeta"], "layers": [3], "n_samples": [1, 2],
                "bayes": "per_sample_argmax", "output_seed": "one", "inner_seed": "all"},
    "metrics": {"k": [20], "ties": "index", "topk_mode": "signed"},
    "compare": {"baseline": "det"},
}


def test_every_model_attack_and_explain_option_runs(tmp_path):
    result = runner.run_experiment(OPTIONS, tmp_path / "options")
    df = pd.read_parquet(result.results)
    assert set(df["attack"]) == {"fgsm", "pgd", "topk", "region", "manip"}
    assert set(df["rule"]) == {"alphabeta"} and set(df["layer"]) == {3}
    assert set(df.loc[df["model"] == "chains", "n_samples"]) == {1, 2}
    assert set(df.loc[(df["model"] == "chains") & (df["attack"] == "pgd"), "attack_mode"]) == \
        {"predictive"}
    assert set(df.loc[df["attack"] == "topk", "attack_mode"]) == {""}
    models = {m["name"]: m for m in json.loads((result.run_dir / "models.json").read_text())}
    assert models["chains"]["n_samples"] == 16 and models["blocks"]["n_samples"] == 2
    # targeted PGD and the saliency attacks stay in the ε-ball and in [0, 1]
    g, store = expand_grid(load_config(OPTIONS)), Store(result.run_dir)
    d = store.load_tensors(g.by_label("data").key, stages.DATA_FILE)
    for attack in ("pgd", "topk", "region", "manip"):
        x_adv = store.load_tensors(g.by_label(f"attack[chains,{attack}]").key,
                                   stages.IMAGES_FILE)["x"]
        assert float((x_adv - d["x"]).abs().max()) <= 0.2 + 1e-6
        assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1


def test_adversarial_training_modes():
    from bayeslrp.plugins.models.adversarial import adv_mode

    base = {"adv_attack": "fgsm", "adv_mix": False}
    assert adv_mode(base) == "fgsm"
    assert adv_mode({**base, "adv_mix": True}) == "mix"
    assert adv_mode({**base, "adv_attack": "pgd"}) == "pgd"


def test_ray_executor_matches_the_local_executor(ray_matches_local):
    """A local Ray cluster on 127.0.0.1 gives the bytes of the local executor.

    ``make test`` installs the ``ray`` extra, so this runs there.
    """
    ray_matches_local(TINY)


def test_missing_or_unknown_executors_fail_before_writing(tmp_path, monkeypatch):
    with pytest.raises(BayesLRPError, match="unknown executor 'dask'"):
        runner.run_experiment(TINY, tmp_path / "a", executor="dask")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(BayesLRPError, match="needs Ray"):
        runner.run_experiment(TINY, tmp_path / "b", executor="ray")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
