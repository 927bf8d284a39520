"""``explain.methods``: the list form of the explain section (each entry a name or a map with
the explainer's parameters) expands to the ``rules`` / ``options`` / ``rule_params`` form, with
identical task keys, and every malformed list is a one-line config error at its entry."""
from __future__ import annotations

import pytest

import bayeslrp as bl
from bayeslrp.experiment.config import load_config
from bayeslrp.experiment.grid import expand_grid
from test_explainers_grid import CONFIG

SHORT = {"rules": ["epsilon", "integrated_gradients", "gamma", "smoothgrad"],
         "options": {"integrated_gradients": {"steps": 8, "baseline": "lower"},
                     "smoothgrad": {"n": 3, "sigma": 0.1, "base": "grad_x_input"}},
         "rule_params": {"gamma": 0.25}, "layers": [3, 5], "n_samples": [1, 3]}
METHODS = {"methods": ["epsilon",
                       {"method": "integrated_gradients", "steps": 8, "baseline": "lower"},
                       {"method": "gamma", "gamma": 0.25},
                       {"method": "smoothgrad",
                        "params": {"n": 3, "sigma": 0.1, "base": "grad_x_input"}}],
           "layers": [3, 5], "n_samples": [1, 3]}


def keys(explain: dict) -> dict[str, str]:
    grid = expand_grid(load_config({**CONFIG, "explain": explain}))
    return {t.label: t.key for t in grid.tasks}


def test_methods_and_the_rules_shorthand_give_the_same_tasks_and_keys():
    short, methods = keys(SHORT), keys(METHODS)
    assert short == methods
    assert any("integrated_gradients" in label for label in methods)
    # the keys do depend on the parameters: another IG step count changes them
    changed = {**METHODS, "methods": [*METHODS["methods"][:1],
                                      {"method": "integrated_gradients", "steps": 16,
                                       "baseline": "lower"}, *METHODS["methods"][2:]]}
    assert keys(changed) != methods


def test_methods_keep_their_order_and_parameters():
    cfg = load_config({**CONFIG, "explain": METHODS})
    assert cfg.explain.rules == ("epsilon", "integrated_gradients", "gamma", "smoothgrad")
    assert cfg.explain.rule_params.gamma == 0.25
    assert cfg.explain.options["integrated_gradients"] == {"steps": 8, "baseline": "lower"}


@pytest.mark.parametrize("explain,match", [
    ({"methods": ["epsilon", "epsilon"]}, r"explain\.methods\[1\]: .*listed twice"),
    ({"methods": ["nope"]}, r"explain\.methods\[0\]: unknown explainer 'nope'"),
    ({"methods": []}, r"explain\.methods: must be a non-empty list"),
    ({"methods": "epsilon"}, r"explain\.methods: must be a non-empty list"),
    ({"methods": [7]}, r"explain\.methods\[0\]: must be an explainer name or a map"),
    ({"methods": [{"steps": 8}]}, r"explain\.methods\[0\]: must be an explainer name"),
    ({"methods": ["epsilon"], "rules": ["gamma"]}, r"explain\.methods: give explain\.methods "
                                                   r"or explain\.rules, not both"),
    ({"methods": ["smoothgrad"], "options": {"smoothgrad": {}}}, r"not both"),
    ({"methods": [{"method": "epsilon", "gamma": 1.0}]},
     r"explain\.methods\[0\]: unknown parameter\(s\) \['gamma'\] for the epsilon rule"),
    ({"methods": [{"method": "epsilon", "epsilon": 0.2}], "rule_params": {"epsilon": 0.3}},
     r"explain\.methods\[0\]\.epsilon: .*give it once"),
    ({"methods": [{"method": "integrated_gradients", "steps": 0}]},
     r"explain\.methods\[0\]\.steps: Input should be greater than 0"),
    ({"methods": [{"method": "smoothgrad", "base": "nope"}]},
     r"explain\.methods\[0\]: .*unknown base"),
    ({"methods": [{"method": "smoothgrad", "params": 3}]},
     r"explain\.methods\[0\]\.params: must be a map"),
])
def test_malformed_methods_are_one_line_config_errors(explain, match):
    with pytest.raises(bl.BayesLRPError, match=match) as info:
        load_config({**CONFIG, "explain": explain})
    assert "\n" not in str(info.value)


def test_an_lrp_parameter_given_twice_alike_is_accepted():
    cfg = load_config({**CONFIG, "explain": {
        "methods": [{"method": "epsilon", "epsilon": 0.2}], "rule_params": {"epsilon": 0.2},
        "n_samples": [1, 3]}})
    assert cfg.explain.rule_params.epsilon == 0.2
