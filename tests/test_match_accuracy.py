"""The accuracy-matched det control: early-stopped at another model's test accuracy."""
from __future__ import annotations

import copy
import json

import pytest
import torch

import bayeslrp as bl
from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment import runner
from bayeslrp.experiment.config import load_config
from bayeslrp.experiment.grid import expand_grid


@pytest.fixture(scope="module")
def digits():
    x, y = bl.data.load("digits", "train")
    xt, yt = bl.data.load("digits", "test")
    return x, y, xt, yt


def _net():
    return bl.nets.build("fc2", seed=1, hidden=32, in_shape=(1, 8, 8))


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9])
def test_reached_accuracy_is_within_the_tolerance(digits, target):
    x, y, xt, yt = digits
    tol = 0.01
    ens = bl.train.accuracy_matched(_net(), x, y, xt, yt, target=target, tolerance=tol,
                                    epochs=10, lr=3e-3, batch_size=32, progress=False)
    m = ens.meta["matched"]
    assert m["within_tolerance"] and abs(m["reached_accuracy"] - target) <= tol
    # the kept net is the one measured (Ensemble.accuracy: float32 mean of 410 images)
    assert ens.accuracy(xt, yt) == pytest.approx(m["reached_accuracy"], abs=1e-6)


def test_same_seed_same_start_and_batches_as_det(digits):
    x, y, xt, yt = digits
    det = bl.train.deterministic(_net(), x, y, epochs=1, lr=3e-3, batch_size=32, progress=False)
    # a target no checkpoint reaches within the tolerance: trains to the end, the closest
    # check (the last one, accuracy rising) is kept, and it is recorded as not matched
    with pytest.warns(UserWarning, match="not within"):
        far = bl.train.accuracy_matched(_net(), x, y, xt, yt, target=1.0, tolerance=1e-4,
                                        epochs=1, lr=3e-3, batch_size=32, progress=False)
    assert not far.meta["matched"]["within_tolerance"]
    checks = far.meta["history"]["check_accuracy"]
    assert checks[0] == pytest.approx(bl.Ensemble.from_module(_net()).accuracy(xt, yt), abs=1e-6)
    # the checks do not disturb training: the last one is the full det run's accuracy
    assert checks[-1] == pytest.approx(det.accuracy(xt, yt), abs=1e-6)
    assert far.meta["matched"]["reached_accuracy"] == max(checks)


def test_bad_targets_are_refused(digits):
    x, y, xt, yt = digits
    with pytest.raises(BayesLRPError, match="target accuracy"):
        bl.train.accuracy_matched(_net(), x, y, xt, yt, target=1.5, progress=False)


MATCHED = {
    "name": "matched",
    "seed": 1,
    "data": {"dataset": "digits", "n_points": 10},
    "models": [
        {"name": "det", "method": "det", "arch": "fc2", "hidden": 32, "epochs": 6,
         "batch_size": 32, "lr": 0.003},
        {"name": "vi", "method": "vi", "arch": "fc2", "hidden": 32, "epochs": 1, "lr": 0.01,
         "batch_size": 32, "n_samples": 4},
        {"name": "det_matched", "method": "det", "arch": "fc2", "hidden": 32, "epochs": 6,
         "batch_size": 32, "lr": 0.003, "match_accuracy": "vi", "match_tolerance": 0.01},
    ],
    "attacks": [{"method": "fgsm"}],
    "explain": {"rules": ["epsilon"], "layers": "last", "n_samples": [2]},
    "metrics": {"k": [20]},
    "compare": {"baseline": "det"},
}


def test_matched_det_in_the_grid_reaches_the_named_models_accuracy(tmp_path):
    g = expand_grid(load_config(MATCHED))
    matched = g.by_label("train[det_matched]")
    assert matched.deps["init"] == g.by_label("train[vi]").key  # depends on the target
    assert "match_accuracy" not in g.by_label("train[det]").params["model"]
    result = runner.run_experiment(MATCHED, tmp_path / "run")
    models = {m["name"]: m for m in json.loads((result.run_dir / "models.json").read_text())}
    vi_acc, got = models["vi"]["test_accuracy"], models["det_matched"]["test_accuracy"]
    diag = models["det_matched"]["diagnostics"]
    assert diag["target_accuracy"] == pytest.approx(vi_acc)
    assert diag["within_tolerance"] and abs(got - vi_acc) <= 0.01
    assert models["det_matched"]["posterior"]["reference"] is None  # matched, not started from
    assert abs(models["det"]["test_accuracy"] - vi_acc) > 0.01  # the control is not trivial


@pytest.mark.parametrize("change,match", [
    (lambda c: c["models"][2].update(match_accuracy="nobody"), "no model named 'nobody'"),
    (lambda c: c["models"][2].update(match_accuracy="det_matched"), "depends on"),
    (lambda c: c["models"][0].update(match_tolerance=0.1), "only used with match_accuracy"),
])
def test_match_accuracy_config_errors(change, match):
    cfg = copy.deepcopy(MATCHED)
    change(cfg)
    with pytest.raises(BayesLRPError, match=match):
        load_config(cfg)


def test_plan_estimate_counts_the_accuracy_checks():
    from bayeslrp.plugins.models import model_method

    cfg = load_config(MATCHED)
    det, matched = cfg.model("det"), cfg.model("det_matched")
    n = cfg.data.train_size
    assert model_method("det").test_passes(det, n) == 0.0
    # 6 epochs of ceil(1348 / 32) = 43 steps, a check every step, plus the one before training
    assert model_method("det").test_passes(matched, n) == 1 + 6 * 43
    g = expand_grid(cfg)
    from bayeslrp.experiment.stages.train import TrainStage

    train = TrainStage()
    assert train.estimate(g.by_label("train[det_matched]"), cfg) > \
        train.estimate(g.by_label("train[det]"), cfg)
