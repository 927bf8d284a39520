"""The new explainers through the existing config path (``explain.rules`` / ``options``):
validated at load time, run by the explain stage and by the attacks on explanations, and the
stored heatmaps equal a direct ``bl.explain`` call."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

import bayeslrp as bl
from bayeslrp.experiment import runner
from bayeslrp.experiment.config import load_config

OPTIONS = {"integrated_gradients": {"steps": 8, "baseline": "lower"},
           "smoothgrad": {"n": 3, "sigma": 0.1, "base": "grad_x_input"},
           "noisegrad": {"n": 2, "base": "epsilon", "base_params": {"epsilon": 0.2}},
           "composite": {"rules": {"input": "zbox", "default": "epsilon"}}}
CONFIG = {
    "name": "explainers", "seed": 3,
    "data": {"dataset": "synthetic", "n_points": 20, "shape": [1, 8, 8]},
    "models": [
        {"name": "base", "method": "det", "arch": "fc2", "hidden": 8, "epochs": 2,
         "batch_size": 64},
        {"name": "vi", "method": "vi", "arch": "fc2", "hidden": 8, "epochs": 2, "lr": 0.01,
         "batch_size": 64, "n_samples": 3},
    ],
    "attacks": [{"method": "fgsm"},
                {"method": "topk", "rule": "integrated_gradients", "steps": 2, "n_samples": 2}],
    "explain": {"rules": ["epsilon", *OPTIONS, "epsilon_gamma_box"], "layers": [3, 5],
                "n_samples": [1, 3], "options": OPTIONS},
    "compare": {"baseline": "base"},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return runner.run_experiment(CONFIG, tmp_path_factory.mktemp("explainers") / "run")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("options,match", [
    ({"integrated_gradients": {"steps": 0}}, r"explain.options.integrated_gradients"),
    ({"smoothgrad": {"base": "nope"}}, r"explain.options.smoothgrad: .*unknown base"),
    ({"noisegrad": {"base_params": {"gamma": 1.0}}}, r"explain.options.noisegrad"),
    ({"composite": {"rules": {"input": "nope"}}}, r"explain.options.composite: .*unknown rule"),
    ({"composite": {"rules": {"middle": "epsilon"}}}, r"composite selector"),
])
def test_bad_options_are_config_errors(options, match):
    bad = {**CONFIG, "explain": {**CONFIG["explain"], "options": options}}
    with pytest.raises(bl.BayesLRPError, match=match):
        load_config(bad)


def test_new_explainers_run_through_the_grid(run):
    results = pd.read_parquet(run.results)
    assert set(results["rule"]) == {"epsilon", *OPTIONS, "epsilon_gamma_box"}
    assert (results["explainer"] == results["rule"]).all()
    assert set(results["attack"]) == {"fgsm", "topk"}
    assert results["lrp_robustness"].between(0, 1).all()


@pytest.mark.parametrize("rule", ["integrated_gradients", "smoothgrad", "noisegrad",
                                  "composite"])
def test_stored_heatmaps_equal_a_direct_call(run, rule):
    from bayeslrp.experiment.grid import expand_grid
    from bayeslrp.experiment.store import Store

    grid = expand_grid(load_config(CONFIG))
    store = Store(run.run_dir)
    ens = bl.Ensemble.load(store.get_path(grid.by_label("train[vi]").key) / "model")
    x = store.load_tensors(grid.by_label("data").key, "data.safetensors")["x"]
    for layer in (3, 5):
        stored = store.load_tensors(grid.by_label(f"explain[vi,clean,{rule},L{layer}]").key,
                                    "heatmaps.safetensors")
        params = dict(OPTIONS[rule])
        if "method" in params:
            params["quadrature"] = params.pop("method")
        for i, n in enumerate((1, 3)):
            mean, std = bl.explain(ens, x, rule, layer=layer, n_samples=n, reduce="mean_std",
                                   **params)
            torch.testing.assert_close(stored["mean"][i], mean, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(stored["std"][i], std, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule,options", [("gradient", {}),
                                          ("smoothgrad", {"base": "integrated_gradients"})])
def test_output_seed_one_is_refused_for_gradient_methods(rule, options):
    bad = {**CONFIG, "attacks": [{"method": "fgsm"}],
           "explain": {"rules": [rule], "output_seed": "one", "n_samples": [1, 3],
                       "options": {rule: options} if options else None}}
    with pytest.raises(bl.BayesLRPError, match=r"explain.output_seed: .*'logit'"):
        load_config(bad)
    fine = {**bad, "explain": {**bad["explain"], "rules": ["epsilon"], "options": None}}
    load_config(fine)
