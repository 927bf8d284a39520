"""Tests of the task grid: structure, stable keys, exact invalidation, reuse."""
from __future__ import annotations

import copy
from collections import Counter

import pytest
import yaml

from bayeslrp.experiment.config import load_config
from bayeslrp.experiment.grid import Task, expand_grid, topological_order
from bayeslrp.experiment.store import artifact_key

BASE = {
    "name": "g",
    "seed": 0,
    "data": {"dataset": "mnist", "n_points": 100},
    "models": [
        {"name": "det", "arch": "fc2", "hidden": 16, "method": "det", "epochs": 2},
        {"name": "adv", "arch": "fc2", "hidden": 16, "method": "adv", "epochs": 2},
        {"name": "vi", "arch": "fc2", "hidden": 16, "method": "vi", "epochs": 2, "lr": 0.01},
        {"name": "hmc", "arch": "fc2", "hidden": 16, "method": "hmc", "n_samples": 100,
         "mode": "subset", "subset": 500, "init_model": "det"},
    ],
    "attacks": [{"method": "fgsm"}, {"method": "pgd"}],
    "explain": {"rules": ["epsilon", "gamma"], "layers": "all", "n_samples": [10, 50, 100]},
    "compare": {"baseline": "det"},
}
MODELS = ["det", "adv", "vi", "hmc"]
ATTACKS = ["fgsm", "pgd"]


def _grid(mutate=None):
    cfg = copy.deepcopy(BASE)
    if mutate:
        mutate(cfg)
    return expand_grid(load_config(cfg))


def _keys(grid):
    return {t.label: t.key for t in grid.tasks}


BASE_GRID = _grid()


def test_structure_counts_and_order():
    g = BASE_GRID
    counts = Counter(t.stage for t in g.tasks)
    n_src = 1 + len(ATTACKS)
    assert counts == {"data": 1, "train": 4, "attack": 4 * 2, "predict": 4 * n_src,
                      "explain": 4 * n_src * 2 * 3, "metrics": 4 * 2 * 2 * 3, "compare": 1}
    labels = [t.label for t in g.tasks]
    assert len(set(labels)) == len(labels)
    seen = set()
    for t in g.tasks:                       # topological: inputs come first
        assert all(d in seen for d in t.deps.values()), t.label
        seen.add(t.key)
    assert g.tasks[0].label == "data" and g.tasks[-1].label == "compare"
    assert g.by_label("train[hmc]").deps == {"init": g.by_label("train[det]").key}
    assert g.by_label("attack[vi,pgd]").deps == {"model": g.by_label("train[vi]").key,
                                                 "data": g.by_label("data").key}
    m = g.by_label("metrics[hmc,pgd,gamma,L3]")
    assert m.deps == {"data": g.by_label("data").key,
                      "clean": g.by_label("explain[hmc,clean,gamma,L3]").key,
                      "adv": g.by_label("explain[hmc,pgd,gamma,L3]").key,
                      "p_clean": g.by_label("predict[hmc,clean]").key,
                      "p_adv": g.by_label("predict[hmc,pgd]").key}
    assert m.coords == {"model": "hmc", "attack": "pgd", "rule": "gamma", "layer": 3}
    compare = g.by_label("compare")
    assert compare.params["pairs"] == [["adv", "det"], ["vi", "det"], ["hmc", "det"]]
    assert set(compare.deps.values()) == {t.key for t in g.stage("metrics")}
    for t in g.tasks:
        assert t.key == artifact_key(t.stage, t.params, t.deps)
        hash(t)


def test_keys_are_stable():
    again = expand_grid(yaml.safe_dump(BASE))
    assert _keys(again) == _keys(BASE_GRID)
    assert [t.label for t in again.tasks] == [t.label for t in BASE_GRID.tasks]


def test_max_n_explanation_is_computed_once_and_shared():
    g = BASE_GRID
    for t in g.stage("explain"):
        model = t.coords["model"]
        assert t.params["n_samples"] == ([10, 50, 100] if model in ("vi", "hmc") else [1])
    # one explanation task per (model, source, rule, layer), not per n
    assert len(g.stage("explain")) == 4 * 3 * 2 * 3
    # the clean explanation is shared by every attack's metrics
    for model in MODELS:
        clean = {g.by_label(f"metrics[{model},{a},epsilon,L5]").deps["clean"] for a in ATTACKS}
        assert clean == {g.by_label(f"explain[{model},clean,epsilon,L5]").key}
    # det explanations do not depend on the Bayesian sample counts at all
    g2 = _grid(lambda c: c["explain"].update(n_samples=[25, 100]))
    k1, k2 = _keys(g), _keys(g2)
    for t in g.stage("explain"):
        assert (k1[t.label] == k2[t.label]) == (t.coords["model"] in ("det", "adv"))
    assert g2.by_label("explain[vi,fgsm,gamma,L1]").params["n_samples"] == [25, 100]


def _roots(grid, predicate):
    return {t.label for t in grid.tasks if predicate(t)}


CASES = {
    "attack eps": (lambda c: c["attacks"][0].update(eps=0.1),
                   lambda t: t.stage == "attack" and t.coords["attack"] == "fgsm"),
    "vi lr": (lambda c: c["models"][2].update(lr=0.02), lambda t: t.label == "train[vi]"),
    "vi init_std": (lambda c: c["models"][2].update(init_std=0.01),
                    lambda t: t.label == "train[vi]"),
    "vi lr_schedule": (lambda c: c["models"][2].update(lr_schedule="cosine"),
                       lambda t: t.label == "train[vi]"),
    "vi options written at their defaults": (
        lambda c: c["models"][2].update(init_std=1e-3, lr_schedule="constant"), lambda t: False),
    "det epochs (hmc starts from det)": (lambda c: c["models"][0].update(epochs=3),
                                         lambda t: t.label == "train[det]"),
    "metrics k": (lambda c: c.update(metrics={"k": [20, 30]}), lambda t: t.stage == "metrics"),
    "n_points": (lambda c: c["data"].update(n_points=200), lambda t: t.stage == "data"),
    "gamma value": (lambda c: c["explain"].update(rule_params={"gamma": 0.25}),
                    lambda t: t.stage == "explain" and t.coords["rule"] == "gamma"),
    "inner seed": (lambda c: c["explain"].update(inner_seed="all"),
                   lambda t: t.stage == "explain" and t.coords["layer"] != 5),
    "output seed": (lambda c: c["explain"].update(output_seed="one"),
                    lambda t: t.stage == "explain" and t.coords["layer"] == 5),
    "bayes target": (lambda c: c["explain"].update(bayes="per_sample_argmax"),
                     lambda t: t.stage == "explain" and t.coords["model"] in ("vi", "hmc")),
    "seed": (lambda c: c.update(seed=1), lambda t: t.stage in ("data", "train", "attack")),
    "model seed": (lambda c: c["models"][1].update(seed=7), lambda t: t.label == "train[adv]"),
    "n_train": (lambda c: c["data"].update(n_train=1000), lambda t: t.stage == "train"),
    "pgd steps": (lambda c: c["attacks"][1].update(steps=20),
                  lambda t: t.stage == "attack" and t.coords["attack"] == "pgd"),
    "name, data_dir": (lambda c: c.update(name="other") or
                       c["data"].update(data_dir="/tmp/x"), lambda t: False),
    # the device *type* is keyed, not its index: cuda and cuda:1 share every artifact
    "cuda index": (lambda c: c.update(device="cuda:1"), lambda t: False),
}
DEVICE_STAGES = {"train", "select", "attack", "predict", "explain"}


@pytest.mark.parametrize("case", list(CASES))
def test_a_change_invalidates_exactly_the_downstream_tasks(case):
    mutate, is_root = CASES[case]
    base = BASE_GRID if case != "cuda index" else _grid(lambda c: c.update(device="cuda"))
    changed_grid = _grid(mutate)
    old, new = _keys(base), _keys(changed_grid)
    assert set(old) == set(new)
    changed = {label for label in old if old[label] != new[label]}
    expected = base.downstream(_roots(base, is_root))
    if expected:
        expected.add("compare")
    assert changed == expected
    # an unchanged task really is untouched: same params and deps
    for t in base.tasks:
        if t.label not in changed:
            other = changed_grid.by_label(t.label)
            assert (other.params, other.deps) == (t.params, t.deps)


@pytest.mark.parametrize("spec", ["cpu", "auto"])
def test_cpu_keys_carry_no_device(spec, monkeypatch):
    # CPU keys are those of run dirs made before the device entered keys
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    grid = _grid(lambda c: c.update(device=spec))
    assert _keys(grid) == _keys(BASE_GRID)
    assert not any("device" in t.params for t in grid.tasks)


def test_stage_keys_differ_by_device_type():
    cuda = _grid(lambda c: c.update(device="cuda"))
    old, new = _keys(BASE_GRID), _keys(cuda)
    changed = {label for label in old if old[label] != new[label]}
    roots = _roots(BASE_GRID, lambda t: t.stage in DEVICE_STAGES)
    assert changed == BASE_GRID.downstream(roots) | {"compare"}
    assert "data" not in changed
    for t in cuda.tasks:
        assert (t.params.get("device") == "cuda") == (t.stage in DEVICE_STAGES), t.label
    # an explicit device type overrides the config's
    assert _keys(expand_grid(load_config(BASE), device_type="cuda")) == new


def test_select_keys_differ_by_device_type():
    def own(c):
        c["models"][2]["own_attack_sample"] = 0
    cpu, cuda = _grid(own), _grid(lambda c: own(c) or c.update(device="cuda"))
    selects = [t for t in cpu.tasks if t.stage == "select"]
    assert selects
    for t in selects:
        assert cuda.by_label(t.label).key != t.key
        assert cuda.by_label(t.label).params["device"] == "cuda"


def test_vi_options_at_their_defaults_stay_out_of_the_training_key():
    # run directories made before init_std / lr_schedule existed keep their VI artifacts
    spec = BASE_GRID.by_label("train[vi]").params["model"]
    assert "init_std" not in spec and "lr_schedule" not in spec
    changed = _grid(lambda c: c["models"][2].update(lr_schedule="cosine"))
    assert changed.by_label("train[vi]").params["model"]["lr_schedule"] == "cosine"


def test_renaming_a_model_only_changes_the_summary():
    def rename(c):
        c["models"][2]["name"] = "vi2"

    g = _grid(rename)
    old, new = _keys(BASE_GRID), _keys(g)
    for label, key in old.items():
        new_label = label.replace("[vi,", "[vi2,").replace("[vi]", "[vi2]")
        assert (new[new_label] == key) == (label != "compare"), label


def test_identical_models_share_artifacts():
    def twin(c):
        clone = dict(c["models"][0], name="det_twin")
        c["models"].append(clone)

    g = _grid(twin)
    assert g.by_label("train[det]").key == g.by_label("train[det_twin]").key
    assert (g.by_label("metrics[det,fgsm,gamma,L1]").key
            == g.by_label("metrics[det_twin,fgsm,gamma,L1]").key)
    assert len(g.unique()) < len(g)
    assert len({t.key for t in g.unique()}) == len(g.unique())


def test_saliency_attack_depends_on_its_rule_params():
    def add_topk(c):
        c["attacks"].append({"method": "topk", "rule": "gamma"})

    g = _grid(add_topk)
    t = g.by_label("attack[hmc,topk]")
    assert t.params["explain"]["rule_args"] == {"gamma": 0.1}
    g2 = _grid(lambda c: add_topk(c) or c["explain"].update(rule_params={"epsilon": 0.3}))
    assert g2.by_label("attack[hmc,topk]").key == t.key     # epsilon does not matter to it
    g3 = _grid(lambda c: add_topk(c) or c["explain"].update(rule_params={"gamma": 0.3}))
    assert g3.by_label("attack[hmc,topk]").key != t.key


def test_attack_sample_count_is_resolved_per_model():
    g = _grid(lambda c: c["attacks"][0].update(n_samples=50))
    assert g.by_label("attack[vi,fgsm]").params["attack"]["n_samples"] == 50
    assert g.by_label("attack[det,fgsm]").params["attack"]["n_samples"] == 1
    assert BASE_GRID.by_label("attack[vi,fgsm]").params["attack"]["n_samples"] == 100


def test_topological_order_errors():
    a = Task("data", "a" * 64, {}, {}, "a")
    b = Task("train", "b" * 64, {}, {"x": "a" * 64}, "b")
    assert [t.label for t in topological_order([b, a])] == ["a", "b"]
    with pytest.raises(ValueError, match="no task makes"):
        topological_order([b])
    c1 = Task("train", "c" * 64, {}, {"x": "d" * 64}, "c1")
    c2 = Task("train", "d" * 64, {}, {"x": "c" * 64}, "c2")
    with pytest.raises(ValueError, match="cycle"):
        topological_order([c1, c2])
