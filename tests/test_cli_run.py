"""``bayeslrp run|demo|reproduce|plot|report``: a tiny run end to end, and bad configs.

Bad configs (hypothesis, several hundred) must each give one ``error:`` line on stderr,
exit code 2, and leave the run directory uncreated.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayeslrp.cli import main
from bayeslrp.experiment.config import known_keys

_FIELD_NAMES = known_keys()

SRC = Path(__file__).resolve().parents[1] / "src"

BASE = {
    "name": "cli",
    "seed": 1,
    "data": {"dataset": "synthetic", "n_points": 20, "shape": [1, 8, 8]},
    "models": [
        {"name": "det", "method": "det", "arch": "fc2", "hidden": 8, "epochs": 2,
         "batch_size": 64},
        {"name": "adv", "method": "adv", "arch": "fc2", "hidden": 8, "epochs": 2,
         "batch_size": 64},
        {"name": "vi", "method": "vi", "arch": "fc2", "hidden": 8, "epochs": 2, "lr": 0.01,
         "batch_size": 64, "n_samples": 4},
        {"name": "hmc", "method": "hmc", "arch": "fc2", "hidden": 8, "n_samples": 4,
         "warmup": 2, "steps": 2, "mode": "subset", "subset": 100, "init_model": "det"},
    ],
    "attacks": [{"method": "fgsm"}, {"method": "pgd", "steps": 2}],
    "explain": {"rules": ["epsilon"], "layers": "all", "n_samples": [2, 4]},
    "metrics": {"k": [20]},
    "compare": {"baseline": "det"},
}


def _call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _assert_one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    cfg = copy.deepcopy(BASE)
    cfg["models"] = cfg["models"][:3]
    cfg["attacks"] = cfg["attacks"][:1]
    cfg["explain"]["n_samples"] = [4]
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_dir = root / "run"
    code, out, err = _call(["run", str(path), "--run-dir", str(run_dir)])
    return code, out, err, run_dir


def test_run_writes_results_figures_report_and_prints_a_summary(cli_run):
    code, out, err, run_dir = cli_run
    assert code == 0, err
    for name in ("results.parquet", "models.json", "config.yaml", "manifest.json",
                 "report.html", "differences.parquet", "tests.parquet"):
        assert (run_dir / name).is_file(), name
    assert any(p.suffix == ".png" for p in (run_dir / "figures").iterdir())
    for title in ("Models", "Attacks", "Median LRP robustness", "Mann-Whitney"):
        assert title in out
    assert f"report:  {run_dir / 'report.html'}" in out
    assert "tasks computed, 0 reused" in out


def test_plot_and_report_commands_on_a_finished_run(cli_run):
    run_dir = cli_run[3]
    code, out, err = _call(["plot", str(run_dir)])
    assert code == 0, err and "figure files" in out
    code, out, err = _call(["report", str(run_dir)])
    assert code == 0, err
    assert "report:" in out and "Models" in out


def test_rerun_through_the_cli_reuses_everything(cli_run):
    run_dir = cli_run[3]
    code, out, err = _call(["run", str(run_dir / "config.yaml"), "--run-dir", str(run_dir),
                            "--quiet"])
    assert code == 0, err
    assert "0 tasks computed" in out


def test_plot_and_report_need_a_run_directory(tmp_path):
    for command in ("plot", "report"):
        code, _, err = _call([command, str(tmp_path / "nothing")])
        _assert_one_line_error(code, err)
        assert "results.parquet" in err


def test_reproduce_rejects_unknown_profiles(tmp_path):
    code, _, err = _call(["reproduce", "--profile", "full", "--run-dir", str(tmp_path / "r")])
    _assert_one_line_error(code, err)
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("argv", [["demo"], ["reproduce", "--profile", "quick"],
                                  ["reproduce", "--profile", "paper"]])
def test_packaged_profiles_are_validated_before_anything_is_written(tmp_path, argv):
    # The packaged configs load and validate; asking for CUDA on a CPU-only machine then
    # stops the run before the run directory exists.
    code, _, err = _call(argv + ["--run-dir", str(tmp_path / "r"), "--device", "cuda"])
    _assert_one_line_error(code, err)
    assert "CUDA" in err
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- bad configs

NOT_NAMES = st.text(min_size=1, max_size=12).filter(
    lambda s: s.strip() and s not in _FIELD_NAMES)


def _set(cfg: dict, path: tuple, value) -> None:
    target = cfg
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value


def _delete(cfg: dict, path: tuple) -> None:
    target = cfg
    for p in path[:-1]:
        target = target[p]
    del target[path[-1]]


def _not_in(choices):
    return st.text(min_size=0, max_size=10).filter(lambda s: s not in choices)


BAD_VALUES = [
    (("data", "n_points"), st.integers(max_value=0)),
    (("data", "n_points"), st.integers(1, 10_000).filter(lambda n: n % 10)),
    (("data", "n_points"), st.integers(21, 500).map(lambda n: 10 * n)),   # synthetic has 200
    (("data", "n_points"), st.floats(allow_nan=False) | st.text(max_size=5) | st.booleans()),
    (("data", "dataset"), _not_in({"mnist", "fashion_mnist", "cifar10", "digits",
                                   "synthetic"})),
    (("data", "n_train"), st.integers(1001, 10**6) | st.integers(max_value=0)),
    (("data", "shape"), st.lists(st.integers(-3, 0), min_size=3, max_size=3)
     | st.lists(st.integers(1, 9), min_size=0, max_size=2)),
    (("models", 0, "epochs"), st.integers(max_value=0) | st.floats(0.1, 9.9)
     | st.booleans()),
    (("models", 0, "hidden"), st.integers(max_value=0) | st.text(max_size=4)),
    (("models", 0, "arch"), _not_in({"fc2", "conv", "resnet20"})),
    (("models", 1, "method"), _not_in({"det", "adv", "vi", "hmc", "ensemble", "mc_dropout",
                                       "laplace", "weight_noise"})),
    (("models", 1, "adv_eps"), st.floats(1.0001, 1e6) | st.floats(-1e6, 0.0)),
    (("models", 2, "n_samples"), st.integers(1, 3)),           # explain asks for 4
    (("models", 2, "lr"), st.floats(-1e3, 0.0) | st.just(float("nan"))),
    (("models", 3, "subset"), st.integers(1001, 10**5) | st.integers(max_value=0)),
    (("models", 3, "init_model"), st.sampled_from(["adv", "vi", "nobody"])),
    (("models", 3, "target_accept"), st.floats(1.0, 10.0) | st.floats(-10.0, 0.0)),
    (("attacks", 0, "eps"), st.floats(1.0001, 1e3) | st.floats(-1e3, 0.0)
     | st.just(float("inf"))),
    (("attacks", 0, "mode"), _not_in({"expected_gradient", "predictive", "per_sample_average"})),
    (("attacks", 1, "steps"), st.integers(max_value=0)),
    (("attacks", 1, "method"), _not_in({"fgsm", "pgd", "topk", "region", "beta", "noise",
                                         "pgd_adaptive"})),
    (("explain", "rules"), st.lists(_not_in({"epsilon", "gamma", "alphabeta"}), min_size=1,
                                    max_size=3) | st.just([]) | st.just(["gamma", "gamma"])),
    (("explain", "layers"), st.lists(st.integers(0, 50).filter(lambda i: i not in (1, 3, 5)),
                                     min_size=1, max_size=3)
     | _not_in({"all", "last"})),
    (("explain", "n_samples"), st.lists(st.integers(5, 10**4), min_size=1, max_size=3)
     | st.lists(st.integers(-5, 0), min_size=1, max_size=2) | st.just([])),
    (("explain", "bayes"), st.just("avg_prediction") | _not_in({"mean", "per_sample_argmax",
                                                                 "avg_prediction"})),
    (("metrics", "k"), st.lists(st.floats(100.001, 1e4) | st.floats(-100, 0.0)
                                | st.sampled_from([0.5, 1.0]), min_size=1, max_size=2)),
    (("metrics", "ties"), _not_in({"nonzero", "index"})),
    (("compare", "baseline"), st.sampled_from(["nobody", ["det", "det"], ["det", "adv"]])),
    (("seed",), st.integers(max_value=-1) | st.integers(min_value=2**63)),
    (("device",), _not_in({"cpu", "auto", "mps"}).filter(
        lambda s: not s.startswith("cuda"))),
    (("name",), st.from_regex(r"[0-9 _.-][A-Za-z0-9 ]{0,8}", fullmatch=True)),
]

MISSING = [("data",), ("models",), ("attacks",), ("data", "dataset"), ("data", "n_points"),
           ("models", 0, "name"), ("models", 0, "arch"), ("models", 1, "method"),
           ("attacks", 0, "method")]

UNKNOWN_AT = [(), ("data",), ("models", 0), ("models", 3), ("attacks", 1), ("explain",),
              ("metrics",), ("compare",)]

BROKEN_YAML = ["data: {dataset: [", "models:\n\t- x", ": :\n  - [", "name: 'open",
               "data:\n  n_points: 20\n  n_points: 30\nmodels: []", "- just\n- a list",
               "42", "", "# only a comment\n"]


@st.composite
def bad_config_text(draw) -> str:
    kind = draw(st.sampled_from(["value", "value", "value", "missing", "unknown", "yaml",
                                 "duplicate_model"]))
    cfg = copy.deepcopy(BASE)
    if kind == "value":
        path, values = draw(st.sampled_from(BAD_VALUES))
        _set(cfg, path, draw(values))
    elif kind == "missing":
        _delete(cfg, draw(st.sampled_from(MISSING)))
    elif kind == "unknown":
        where = draw(st.sampled_from(UNKNOWN_AT))
        target = cfg
        for p in where:
            target = target[p]
        target[draw(NOT_NAMES)] = draw(st.integers() | st.text(max_size=4))
    elif kind == "duplicate_model":
        cfg["models"][1]["name"] = "det"
    else:
        return draw(st.sampled_from(BROKEN_YAML))
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=bad_config_text())
def test_bad_configs_give_one_line_exit_2_and_write_nothing(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bad.yaml"
        path.write_text(text, encoding="utf-8")
        run_dir = Path(tmp) / "run"
        code, out, err = _call(["run", str(path), "--run-dir", str(run_dir)])
        _assert_one_line_error(code, err)
        assert not run_dir.exists()
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["bad.yaml"]


def test_the_base_config_of_the_bad_configs_is_valid():
    from bayeslrp.experiment import runner

    plan = runner.plan_run(BASE, Path(tempfile.gettempdir()) / "never-created-by-this-test")
    assert len(plan.parts[0].grid) > 0


@pytest.mark.parametrize("content,expect", [
    (None, "config file not found"),
    ("data: {dataset: mnist, n_points: 25}\nmodels: []\nattacks: []\n", "config error at"),
])
def test_bad_configs_through_a_real_process(tmp_path, content, expect):
    path = tmp_path / "c.yaml"
    if content is not None:
        path.write_text(content)
    run_dir = tmp_path / "run"
    code = ("import sys; from bayeslrp.cli import main; "
            f"sys.exit(main(['run', {str(path)!r}, '--run-dir', {str(run_dir)!r}]))")
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    _assert_one_line_error(proc.returncode, proc.stderr)
    assert expect in proc.stderr
    assert not run_dir.exists()


@pytest.mark.slow
def test_demo_on_real_mnist_finishes_within_five_minutes(tmp_path):
    import json
    import time

    started = time.perf_counter()
    code, out, err = _call(["demo", "--run-dir", str(tmp_path / "demo"), "--quiet"])
    seconds = time.perf_counter() - started
    assert code == 0, err
    assert seconds <= 300, f"demo took {seconds:.0f} s"
    models = {m["name"]: m for m in json.loads((tmp_path / "demo" / "models.json").read_text())}
    assert set(models) == {"det", "adv", "vi", "hmc"}
    assert models["det"]["test_accuracy"] > 0.85 and models["vi"]["test_accuracy"] > 0.85
    assert models["hmc"]["diagnostics"]["divergences"] == 0
    assert (tmp_path / "demo" / "report.html").is_file()
