"""Tests of the experiment config: strict validation, one-line errors with key paths, keys."""
from __future__ import annotations

import copy
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment.config import (LEARNABLE_LAYERS, Config, config_key, dump_config,
                                        load_config)

VALID = {
    "name": "demo",
    "seed": 0,
    "device": "cpu",
    "data": {"dataset": "mnist", "n_points": 100, "n_train": 2000},
    "models": [
        {"name": "det", "arch": "fc2", "hidden": 16, "method": "det", "epochs": 2, "lr": 1e-3,
         "batch_size": 128},
        {"name": "adv", "arch": "fc2", "hidden": 16, "method": "adv", "epochs": 2,
         "adv_attack": "fgsm", "adv_eps": 0.2},
        {"name": "vi", "arch": "fc2", "hidden": 16, "method": "vi", "epochs": 2, "lr": 1e-2,
         "n_samples": 100, "prior_std": 1.0},
        {"name": "hmc", "arch": "fc2", "hidden": 16, "method": "hmc", "n_samples": 100,
         "warmup": 20, "steps": 10, "mode": "subset", "subset": 500, "init": "map",
         "init_model": "det"},
    ],
    "attacks": [
        {"method": "fgsm", "eps": 0.2, "mode": "expected_gradient"},
        {"method": "pgd", "eps": 0.2, "steps": 40, "alpha": 0.01, "restarts": 1},
    ],
    "explain": {"rules": ["epsilon", "gamma"], "layers": "all", "n_samples": [10, 50, 100],
                "rule_params": {"epsilon": 0.1, "gamma": 0.1}},
    "metrics": {"k": [20], "ties": "nonzero", "topk_mode": "abs"},
    "compare": {"baseline": "det"},
}

ERROR_LINE = re.compile(r"^config error at \S.*$")


def _fmt(path) -> str:
    out = ""
    for el in path:
        out += f"[{el}]" if isinstance(el, int) else f".{el}"
    return out.lstrip(".")


def _get(obj, path):
    for el in path:
        obj = obj[el]
    return obj


def _set(obj, path, value):
    _get(obj, path[:-1])[path[-1]] = value


def _walk(obj, path=()):
    """Yield (path, value) of every node."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, path + (i,))


NODES = list(_walk(VALID))
DICT_PATHS = [p for p, v in NODES if isinstance(v, dict)]
LEAVES = [(p, v) for p, v in NODES if not isinstance(v, (dict, list)) and v is not None]
REQUIRED = [("data",), ("data", "dataset"), ("data", "n_points"), ("models",), ("attacks",),
            ("compare", "baseline")] + [
    ("models", i, key) for i in range(4) for key in ("name", "arch", "method")] + [
    ("attacks", j, "method") for j in range(2)]

# (path of the bad value, bad value[, path the error must name when it differs: cross-field
# problems are reported at the key that has to change]).
OUT_OF_RANGE = [
    (("attacks", 0, "eps"), -0.1), (("attacks", 0, "eps"), 0.0), (("attacks", 1, "eps"), 1.5),
    (("attacks", 1, "steps"), 0), (("attacks", 1, "alpha"), -0.01), (("attacks", 0, "mode"), "x"),
    (("attacks", 0, "method"), "cw"), (("attacks", 0, "n_samples"), 101),
    (("attacks", 1, "name"), "clean"), (("attacks", 1, "name"), "fgsm"),
    (("models", 0, "epochs"), 0), (("models", 0, "epochs"), -3), (("models", 0, "lr"), 0.0),
    (("models", 0, "arch"), "mlp"), (("models", 2, "method"), "mcmc"),
    (("models", 1, "name"), "det"), (("models", 1, "name"), "1bad"),
    (("models", 1, "adv_eps"), 1.01), (("models", 1, "adv_steps"), 10),
    (("models", 2, "n_samples"), 50, "explain.n_samples[2]"),
    (("models", 3, "n_samples"), 20, "explain.n_samples[1]"),
    (("models", 3, "chains"), 3, "models[3].n_samples"),
    (("models", 3, "target_accept"), 1.0), (("models", 3, "subset"), 2001),
    (("models", 3, "init_model"), "vi"), (("models", 3, "init_model"), "nobody"),
    (("models", 3, "init"), "random", "models[3].init_model"),
    (("models", 3, "block_size"), 100), (("models", 0, "channels"), 8),
    (("models", 2, "init_std"), 0.0), (("models", 2, "lr_schedule"), "linear"),
    (("data", "n_points"), 0), (("data", "n_points"), 105), (("data", "n_points"), 99990),
    (("data", "n_train"), 60001), (("data", "dataset"), "imagenet"),
    (("data", "shape"), [1, 8, 8]),
    (("metrics", "k", 0), 0), (("metrics", "k", 0), 101), (("metrics", "k", 0), -5),
    (("metrics", "k", 0), 0.05), (("metrics", "ties"), "random"), (("metrics", "topk_mode"), "x"),
    (("explain", "n_samples", 1), 0), (("explain", "n_samples", 2), 101),
    (("explain", "n_samples", 1), 10), (("explain", "layers"), [2], "explain.layers[0]"),
    (("explain", "layers"), [1, 1], "explain.layers[1]"), (("explain", "layers"), "first"),
    (("explain", "layers"), []), (("explain", "layers"), [-1]),
    (("explain", "rules", 0), "lrp"), (("explain", "rules", 1), "epsilon"),
    (("explain", "rule_params", "epsilon"), 0.0), (("explain", "rule_params", "alpha"), 2.0),
    (("explain", "bayes"), "median"), (("compare", "baseline"), "nobody", "compare.baseline[0]"),
    (("compare", "baseline"), ["det", "adv"], "compare.baseline[1]"), (("device",), "gpu"),
    (("seed",), -1), (("name",), "has space"),
]


def _assert_one_line_error(text_or_data, expected_path=None):
    with pytest.raises(BayesLRPError) as info:
        load_config(text_or_data)
    msg = str(info.value)
    assert "\n" not in msg and ERROR_LINE.match(msg), msg
    if expected_path is not None:
        # data.dataset also takes a mapping (a user's files): a mapping put there is reported
        # at the key of it that is wrong
        child = expected_path == "data.dataset" and f"config error at {expected_path}." in msg
        assert f"config error at {expected_path}:" in msg or child, msg
    return msg


# --------------------------------------------------------------------------- valid configs


def test_valid_config_loads_with_defaults_filled():
    cfg = load_config(VALID)
    assert isinstance(cfg, Config)
    assert [m.name for m in cfg.models] == ["det", "adv", "vi", "hmc"]
    assert cfg.models[3].sample_count == 100 and cfg.models[0].sample_count == 1
    assert cfg.explain.layers_for("fc2") == LEARNABLE_LAYERS["fc2"] == (1, 3, 5)
    assert cfg.baseline_for("hmc") == "det" and cfg.baseline_for("det") is None
    assert cfg.attacks[1].label == "pgd" and cfg.metrics.k == (20.0,)


def test_spec_defaults_are_filled_and_explicit_equals_implicit():
    text = """
data: {dataset: fashion_mnist, n_points: 500}
models:
  - {name: det, arch: conv, method: det}
  - {name: vi, arch: conv, method: vi}
  - {name: fc, arch: fc2, method: adv, adv_attack: pgd}
  - {name: h, arch: fc2, method: hmc, mode: blocks}
attacks: [{method: fgsm}]
"""
    cfg = load_config(text)
    det, vi, fc, h = cfg.models
    assert (det.hidden, det.channels, det.epochs, det.lr) == (1024, 32, 10, 1e-3)
    assert (vi.epochs, vi.lr, vi.n_samples) == (15, 1e-3, 100)
    assert (fc.epochs, fc.adv_steps, fc.adv_alpha) == (15, 40, 0.01)
    assert (h.block_size, h.warmup, h.steps, h.step_size) == (4000, 100, 10, 0.5)
    explicit = text.replace("{name: det, arch: conv, method: det}",
                            "{name: det, arch: conv, method: det, hidden: 1024, epochs: 10}")
    assert config_key(load_config(explicit)) == config_key(cfg)
    mnist = load_config(text.replace("fashion_mnist", "mnist"))
    assert (mnist.models[0].hidden, mnist.models[0].epochs) == (512, 5)
    assert (mnist.models[1].epochs, mnist.models[1].lr) == (5, 0.01)


def test_no_default_means_required():
    text = """
data: {dataset: digits, n_points: 100}
models: [{name: det, arch: fc2, method: det}]
attacks: [{method: fgsm}]
"""
    _assert_one_line_error(text, "models[0].hidden")
    _assert_one_line_error(text.replace("method: det}", "method: vi, hidden: 32}"),
                           "models[0].epochs")
    _assert_one_line_error(text.replace("arch: fc2", "arch: conv"), "models[0].arch")


def test_yaml_details():
    # 1e-3 without a dot is a float (YAML 1.2), not a string
    text = yaml.safe_dump(VALID, sort_keys=False).replace("lr: 0.001", "lr: 1e-3")
    assert "lr: 1e-3" in text
    assert load_config(text).models[0].lr == 1e-3
    # a key given twice is an error, not "last one wins"
    dup = text.replace("n_points: 100", "n_points: 100\n  n_points: 200")
    msg = _assert_one_line_error(dup, "data.n_points")
    assert "twice" in msg
    _assert_one_line_error("data: {dataset: mnist\nmodels: [", None)
    _assert_one_line_error("", "(top level)")
    _assert_one_line_error("- 1\n- 2\n", "(top level)")


def test_load_from_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(load_config(VALID)))
    assert load_config(path) == load_config(str(path)) == load_config(VALID)
    with pytest.raises(BayesLRPError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(BayesLRPError, match="not found"):
        load_config(str(tmp_path / "missing.yml"))
    with pytest.raises(BayesLRPError, match="not found"):
        load_config("configs/no_such_profile")


def test_union_tag_in_error_path_is_dropped():
    bad = copy.deepcopy(VALID)
    bad["attacks"][0]["fgsm"] = 1   # a key that equals the union tag
    _assert_one_line_error(bad, "attacks[0].fgsm")
    bad = copy.deepcopy(VALID)
    bad["models"][0]["epoch"] = 3
    assert "did you mean 'epochs'" in _assert_one_line_error(bad, "models[0].epoch")


def test_mixed_archs_need_matching_baselines():
    cfg = copy.deepcopy(VALID)
    cfg["models"].append({"name": "cv", "arch": "conv", "hidden": 8, "method": "vi",
                          "epochs": 1, "lr": 0.01})
    _assert_one_line_error(cfg, "models[4].arch")
    cfg["models"].append({"name": "cdet", "arch": "conv", "hidden": 8, "method": "det",
                          "epochs": 1})
    cfg["compare"]["baseline"] = ["det", "cdet"]
    cfg["explain"]["layers"] = "last"
    loaded = load_config(cfg)
    assert loaded.baseline_for("cv") == "cdet" and loaded.baseline_for("vi") == "det"
    assert loaded.explain.layers_for("conv") == (7,)
    cfg["explain"]["layers"] = [1]
    _assert_one_line_error(cfg, "explain.layers[0]")


# --------------------------------------------------------------------------- invalid configs


@pytest.mark.parametrize("case", OUT_OF_RANGE, ids=[_fmt(c[0]) for c in OUT_OF_RANGE])
def test_out_of_range_values_rejected(case):
    path, value = case[0], case[1]
    bad = copy.deepcopy(VALID)
    _set(bad, path, value)
    _assert_one_line_error(bad, case[2] if len(case) > 2 else _fmt(path))


def _wrong_type(value, choice):
    if isinstance(value, bool):
        return ["yes", 1, [value]][choice % 3]
    if isinstance(value, (int, float)):
        return ["x", True, [value], {"v": value}][choice % 4] if isinstance(value, int) else \
            ["0.5", True, [value], {"v": value}][choice % 4]
    return [5, {"v": value}, 1.5][choice % 3]


@st.composite
def _mutation(draw):
    kind = draw(st.sampled_from(["unknown", "type", "missing", "range", "yaml"]))
    bad = copy.deepcopy(VALID)
    if kind == "unknown":
        where = draw(st.sampled_from(DICT_PATHS))
        key = "zz" + draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8))
        _get(bad, where)[key] = draw(st.sampled_from([1, "a", None, [1], {"b": 2}]))
        return bad, _fmt(where + (key,))
    if kind == "type":
        where, value = draw(st.sampled_from(LEAVES))
        _set(bad, where, _wrong_type(value, draw(st.integers(0, 11))))
        return bad, _fmt(where)
    if kind == "missing":
        where = draw(st.sampled_from(REQUIRED))
        del _get(bad, where[:-1])[where[-1]]
        return bad, _fmt(where)
    if kind == "range":
        return None, draw(st.sampled_from(range(len(OUT_OF_RANGE))))
    text = yaml.safe_dump(VALID, sort_keys=False)
    pos = draw(st.integers(0, len(text)))
    junk = draw(st.sampled_from(["{", "[", ": :", "\t- ]", "'", "&a *b", "? [", "]"]))
    return text[:pos] + junk + text[pos:], None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutation(), st.booleans())
def test_generated_bad_configs_raise_one_line_error(mutation, as_text):
    bad, expected = mutation
    if bad is None:            # a range case, drawn by index
        test_out_of_range_values_rejected(OUT_OF_RANGE[expected])
        return
    if isinstance(bad, str):   # broken YAML text
        try:
            load_config(bad)
        except BayesLRPError as exc:
            msg = str(exc)
            assert "\n" not in msg and ERROR_LINE.match(msg), msg
        else:  # the junk landed where YAML takes it as text (e.g. inside a scalar) and the
            # result still validates: then it must be the valid config, unchanged
            assert _still_valid(bad), bad
        return
    source = yaml.safe_dump(bad, sort_keys=False) if as_text else bad
    _assert_one_line_error(source, expected)


def _still_valid(text: str) -> bool:
    try:
        return load_config(text) == load_config(VALID)
    except BayesLRPError:
        return False


# --------------------------------------------------------------------------- round trip, keys


@st.composite
def _valid_config(draw):
    cfg = copy.deepcopy(VALID)
    cfg["seed"] = draw(st.integers(0, 2**31))
    cfg["data"]["n_points"] = 10 * draw(st.integers(1, 50))
    cfg["models"][0]["epochs"] = draw(st.integers(1, 30))
    cfg["models"][0]["lr"] = draw(st.floats(1e-5, 1.0))
    cfg["models"][2]["n_samples"] = draw(st.integers(100, 200))
    cfg["attacks"][0]["eps"] = draw(st.floats(0.001, 1.0))
    cfg["attacks"][1]["steps"] = draw(st.integers(1, 100))
    cfg["explain"]["rules"] = draw(st.lists(st.sampled_from(["epsilon", "gamma", "alphabeta"]),
                                            min_size=1, max_size=3, unique=True))
    cfg["explain"]["layers"] = draw(st.one_of(
        st.sampled_from(["all", "last"]),
        st.lists(st.sampled_from([1, 3, 5]), min_size=1, max_size=3, unique=True)))
    cfg["explain"]["n_samples"] = draw(st.lists(st.integers(1, 100), min_size=1, max_size=4,
                                                unique=True))
    cfg["metrics"]["k"] = draw(st.lists(st.sampled_from([5, 10, 20, 30, 100]),
                                        min_size=1, max_size=3, unique=True))
    cfg["metrics"]["ties"] = draw(st.sampled_from(["nonzero", "index"]))
    return cfg


@settings(max_examples=60, deadline=None)
@given(_valid_config())
def test_valid_configs_round_trip(cfg):
    loaded = load_config(cfg)
    again = load_config(dump_config(loaded))
    assert again == loaded
    assert config_key(again) == config_key(loaded)
    assert hash(again) == hash(loaded)
    assert load_config(yaml.safe_dump(cfg)) == loaded


def test_config_key_is_stable_and_sensitive():
    cfg = load_config(VALID)
    key = config_key(cfg)
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert config_key(load_config(copy.deepcopy(VALID))) == key
    assert config_key({"b": 1, "a": [1, 2]}) == config_key({"a": [1, 2], "b": 1})
    assert config_key({"a": [1, 2]}) != config_key({"a": [2, 1]})
    changed = copy.deepcopy(VALID)
    changed["attacks"][0]["eps"] = 0.1
    assert config_key(load_config(changed)) != key
    assert config_key(cfg.models[0]) == config_key(cfg.models[0].model_dump(mode="json"))
    with pytest.raises(BayesLRPError):
        config_key({"a": float("nan")})


def test_vi_training_options():
    cfg = copy.deepcopy(VALID)
    cfg["models"][2].update(init_std=0.01, lr_schedule="cosine")
    vi = load_config(cfg).models[2]
    assert (vi.init_std, vi.lr_schedule) == (0.01, "cosine")
    default = load_config(VALID).models[2]
    assert (default.init_std, default.lr_schedule) == (1e-3, "constant")
    train_vi = pytest.importorskip("bayeslrp.train.vi")
    assert default.init_std == train_vi.DEFAULT_INIT_STD


def test_learnable_layers_agree_with_nets():
    nets = pytest.importorskip("bayeslrp.nets")
    small = {"fc2": {"hidden": 8}, "conv": {"hidden": 4, "channels": 2}, "resnet20": {}}
    for arch, kwargs in small.items():
        assert tuple(nets.learnable_layers(nets.build(arch, **kwargs))) == LEARNABLE_LAYERS[arch]


def test_architecture_must_fit_the_images():
    base = {"models": [{"name": "m", "arch": "conv", "hidden": 4, "method": "det", "epochs": 1}],
            "attacks": [{"method": "fgsm"}]}
    ok = dict(base, data={"dataset": "synthetic", "n_points": 10, "shape": [1, 16, 16]})
    assert load_config(ok).data.image_shape == (1, 16, 16)
    small = dict(base, data={"dataset": "synthetic", "n_points": 10, "shape": [1, 15, 15]})
    _assert_one_line_error(small, "models[0].arch")
    res = {"data": {"dataset": "mnist", "n_points": 10}, "attacks": [{"method": "fgsm"}],
           "models": [{"name": "r", "arch": "resnet20", "method": "det", "epochs": 1}]}
    _assert_one_line_error(res, "models[0].arch")
    res["data"]["dataset"] = "cifar10"
    assert load_config(res).explain.layers_for("resnet20")[-1] == 15
    res["models"][0]["hidden"] = 64
    _assert_one_line_error(res, "models[0].hidden")
