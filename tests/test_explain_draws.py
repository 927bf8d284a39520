"""``explain_draws: fresh``: explanations and predictions never reuse an attack sample."""
from __future__ import annotations

import copy

import pandas as pd
import pytest

from bayeslrp import Ensemble
from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment import runner
from bayeslrp.experiment.config import load_config
from bayeslrp.experiment.grid import expand_grid
from bayeslrp.experiment.stages import attack as attack_stage
from bayeslrp.experiment.stages import explain as explain_stage
from bayeslrp.experiment.stages import predict as predict_stage
from bayeslrp.experiment.stages.base import MODEL_DIR
from bayeslrp.experiment.store import Store

FRESH = {
    "name": "fresh",
    "seed": 2,
    "data": {"dataset": "synthetic", "n_points": 10, "shape": [1, 6, 6]},
    "models": [
        {"name": "det", "method": "det", "arch": "fc2", "hidden": 6, "epochs": 1,
         "batch_size": 64},
        {"name": "vi", "method": "vi", "arch": "fc2", "hidden": 6, "epochs": 1, "lr": 0.01,
         "batch_size": 64, "n_samples": 7},
    ],
    "attacks": [{"method": "fgsm"},
                {"method": "pgd_adaptive", "steps": 2, "restarts": 2, "n_samples": 2},
                {"method": "noise"}],
    "explain": {"rules": ["epsilon"], "layers": "last", "n_samples": [1, 3],
                "explain_draws": "fresh"},
    "metrics": {"k": [20]},
    "compare": {"baseline": "det"},
}


def _tags(ens, n):
    """One fingerprint per sample of the first n samples."""
    w = ens.params["1.weight"]
    return {tuple(w[j].flatten()[:4].tolist()) for j in range(n)}


def test_fresh_explanations_never_reuse_an_attack_sample(tmp_path, monkeypatch):
    seen = {"attack": set(), "explain": set(), "predict": set()}
    real_explain, real_probs = explain_stage.explain_cumulative, predict_stage.cumulative_probs
    real_attack = attack_stage.AttackStage.run

    def spy_attack(self, params, inputs, ctx):
        ens = attack_stage.load_model(inputs["model"], ctx)
        if ens.n_samples > 1:
            seen["attack"] |= _tags(ens, int(params["attack"]["n_samples"]))
        return real_attack(self, params, inputs, ctx)

    def spy_explain(ens, x, explainer, n_list):
        if ens.n_samples > 1:  # the VI model (det has one net)
            seen["explain"] |= _tags(ens, max(n_list))
        return real_explain(ens, x, explainer, n_list)

    def spy_probs(ens, x, n_list):
        if ens.n_samples > 1:
            seen["predict"] |= _tags(ens, max(n_list))
        return real_probs(ens, x, n_list)

    monkeypatch.setattr(attack_stage.AttackStage, "run", spy_attack)
    monkeypatch.setattr(explain_stage, "explain_cumulative", spy_explain)
    monkeypatch.setattr(predict_stage, "cumulative_probs", spy_probs)
    result = runner.run_experiment(FRESH, tmp_path / "run")
    g = expand_grid(load_config(FRESH))
    # fgsm defaults to max(explain n) = 3 samples, pgd_adaptive asked for 2: attacks [0, 3)
    assert g.by_label("attack[vi,fgsm]").params["attack"]["n_samples"] == 3
    assert g.by_label("explain[vi,clean,epsilon,L5]").params["draw_offset"] == 3
    assert "draw_offset" not in g.by_label("explain[det,clean,epsilon,L5]").params
    ens = Ensemble.load(Store(result.run_dir).get_path(g.by_label("train[vi]").key) / MODEL_DIR)
    assert len(seen["attack"]) == 3 and len(seen["explain"]) == 3
    assert seen["explain"] == seen["predict"]  # predictions use the explained samples
    assert seen["attack"].isdisjoint(seen["explain"])
    assert seen["attack"] == _tags(ens, 3)
    assert seen["explain"] == _tags(ens.select([3, 4, 5]), 3)
    df = pd.read_parquet(result.results)
    assert set(df["attack"]) == {"fgsm", "pgd_adaptive", "noise"}


def test_same_draws_keep_the_keys_of_earlier_runs():
    same = copy.deepcopy(FRESH)
    del same["explain"]["explain_draws"]
    g = expand_grid(load_config(same))
    assert "draw_offset" not in g.by_label("explain[vi,clean,epsilon,L5]").params
    assert "draw_offset" not in g.by_label("predict[vi,clean]").params
    assert g.by_label("attack[vi,fgsm]").params["attack"]["n_samples"] == 7


def test_too_few_samples_for_fresh_draws_is_a_config_error():
    short = copy.deepcopy(FRESH)
    short["models"][1]["n_samples"] = 5
    with pytest.raises(BayesLRPError, match=r"explain\.explain_draws.*keeps 5.*n_samples to 6"):
        load_config(short)
