"""Plug-ins registered from test code only run through a whole grid: figures and report too.

The toy explainer is gradient × input (differentiable, so the toy attack on explanations can
use it); the toy attack adds seeded uniform noise of size eps and clamps.
"""
from __future__ import annotations

from typing import Literal

import pandas as pd
import pytest
import torch

import bayeslrp as bl
from bayeslrp.experiment import runner
from bayeslrp.experiment.config import load_config
from bayeslrp.explainers import EXPLAINERS, Explainer, ExplainerMethod
from bayeslrp.plugins.attacks import ATTACK_METHODS, AttackMethod, AttackSpecBase
from bayeslrp.plugins.spec import PosFloat, StrictSpec


class ToyParams(StrictSpec):
    scale: PosFloat = 1.0


class GradTimesInput(ExplainerMethod):
    """Gradient × input of the explained class, summed over channels, per sample."""

    name = "toy_gxi"
    Params = ToyParams

    def per_sample(self, ens, x, explainer, *, target, create_graph, surrogate_beta):
        n = ens.resolve_n(explainer.n_samples)
        xv = x if x.requires_grad else x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = ens.logits(xv, n)  # [S, B, C]
            cls = (logits.softmax(-1).mean(0).argmax(-1) if target is None
                   else torch.as_tensor(target, device=x.device).expand(x.shape[0]))
            picked = logits.gather(-1, cls.view(1, -1, 1).expand(n, -1, 1)).squeeze(-1)
            grads = [torch.autograd.grad(picked[s].sum(), xv, create_graph=create_graph,
                                         retain_graph=True)[0] for s in range(n)]
        scale = float(explainer.params.get("scale", 1.0))
        return torch.stack([(g * xv).sum(1) for g in grads]) * scale


class NoiseAttack(AttackSpecBase):
    method: Literal["toy_noise"]


class NoiseMethod(AttackMethod):
    """Seeded uniform noise in the eps-ball, clamped to [0, 1]."""

    name = "toy_noise"
    Spec = NoiseAttack

    def run(self, ens, x, y, spec, *, seed, explainer=None, bounds=(0.0, 1.0)):
        g = torch.Generator().manual_seed(seed + 12345)
        noise = (torch.rand(x.shape, generator=g) * 2 - 1) * spec["eps"]
        return (x + noise.to(x.device)).clamp(*bounds)


@pytest.fixture(scope="module")
def plugins():
    EXPLAINERS.register(GradTimesInput)
    ATTACK_METHODS.register(NoiseMethod)
    yield
    EXPLAINERS.unregister("toy_gxi")
    ATTACK_METHODS.unregister("toy_noise")


CONFIG = {
    "name": "plugins", "seed": 2,
    "data": {"dataset": "synthetic", "n_points": 20, "shape": [1, 8, 8]},
    "models": [
        {"name": "base", "method": "det", "arch": "fc2", "hidden": 8, "epochs": 2,
         "batch_size": 64},
        {"name": "vi", "method": "vi", "arch": "fc2", "hidden": 8, "epochs": 2, "lr": 0.01,
         "batch_size": 64, "n_samples": 3},
    ],
    "attacks": [{"method": "toy_noise", "eps": 0.1},
                {"method": "topk", "rule": "toy_gxi", "steps": 2, "n_samples": 2}],
    "explain": {"rules": ["epsilon", "toy_gxi"], "layers": "last", "n_samples": [1, 3],
                "options": {"toy_gxi": {"scale": 2.0}}},
    "compare": {"baseline": "base"},
}


@pytest.fixture(scope="module")
def run(plugins, tmp_path_factory):
    return runner.run_experiment(CONFIG, tmp_path_factory.mktemp("plugins") / "run")


def test_unregistered_names_are_config_errors():
    with pytest.raises(bl.BayesLRPError, match=r"attacks\[0\].method: .*'toy_noise'"):
        load_config(CONFIG)
    only_explainer = {**CONFIG, "attacks": [{"method": "fgsm"}]}
    with pytest.raises(bl.BayesLRPError, match=r"explain.rules\[1\]: unknown explainer"):
        load_config(only_explainer)


def test_plugin_options_are_checked_at_load_time(plugins):
    bad = {**CONFIG, "explain": {**CONFIG["explain"], "options": {"toy_gxi": {"scale": -1}}}}
    with pytest.raises(bl.BayesLRPError, match=r"explain.options.toy_gxi"):
        load_config(bad)


def test_toy_explainer_and_attack_run_end_to_end(run):
    results = pd.read_parquet(run.results)
    assert set(results["rule"]) == {"epsilon", "toy_gxi"}
    assert set(results["attack"]) == {"toy_noise", "topk"}
    assert len(results) == 20 * (1 + 2) * 2 * 2  # points × (det n=1, vi n=1,3) × rules × attacks
    tests = pd.read_parquet(run.run_dir / "tests.parquet")
    assert {"toy_gxi", "epsilon"} <= set(tests["rule"])
    bl.plots.make_all_figures(run.run_dir)
    html = bl.report.write_report(run.run_dir, figures=False).read_text()
    assert "toy_gxi" in html and "toy_noise" in html


def test_toy_explainer_heatmaps_equal_a_direct_call(run, plugins):
    from bayeslrp.experiment.grid import expand_grid
    from bayeslrp.experiment.store import Store

    grid = expand_grid(load_config(CONFIG))
    store = Store(run.run_dir)
    task = grid.by_label("explain[base,clean,toy_gxi,L5]")
    stored = store.load_tensors(task.key, "heatmaps.safetensors")["mean"][0]
    ens = bl.Ensemble.load(store.get_path(grid.by_label("train[base]").key) / "model")
    x = store.load_tensors(grid.by_label("data").key, "data.safetensors")["x"]
    direct = Explainer("toy_gxi", {"scale": 2.0}, layer=5).explain(ens, x)
    torch.testing.assert_close(stored, direct.detach(), rtol=1e-5, atol=1e-6)


def test_toy_attack_stays_in_the_ball(run):
    from bayeslrp.experiment.grid import expand_grid
    from bayeslrp.experiment.store import Store

    grid = expand_grid(load_config(CONFIG))
    store = Store(run.run_dir)
    x = store.load_tensors(grid.by_label("data").key, "data.safetensors")["x"]
    xa = store.load_tensors(grid.by_label("attack[base,toy_noise]").key,
                            "images.safetensors")["x"]
    assert float((xa - x).abs().max()) <= 0.1 + 1e-6
    assert 0 <= float(xa.min()) and float(xa.max()) <= 1
    assert not torch.equal(xa, x)


def test_runner_and_store_know_no_stage():
    import re
    from pathlib import Path

    import bayeslrp.experiment.runner as runner_module
    import bayeslrp.experiment.store as store_module

    names = re.compile(r"(?<!bayes)lrp|\bhmc\b|\bvi\b|explain\[|attack\[|train\[|heatmaps|"
                       r"probs|check_plan|\"(data|train|select|attack|predict|explain|metrics|"
                       r"compare)\"")
    for module in (runner_module, store_module):
        text = Path(module.__file__).read_text()
        assert not names.findall(text), (module.__name__, names.findall(text)[:3])
