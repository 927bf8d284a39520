"""Every code block of docs/own_model.md runs (issue 13, item 6).

The blocks are read from the page itself and run in order in a scratch directory: the
``my_models.py`` and ``grid.yaml`` blocks are written as those files, the Python blocks are
executed with their size constants lowered (the test fails if the constants' lines change),
the bash block's command is run with ``bayeslrp`` as this checkout's CLI. The fast test does
the same steps on synthetic 28×28 data (``bl.data.load`` answered by the synthetic dataset)
and checks the YAML grid plans; the slow test uses a Fashion-MNIST subset and runs the grid to
a report.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import bayeslrp as bl

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "own_model.md"
BLOCK = re.compile(r"^```(\w+)(?: file=(\S+))?\n(.*?)^```$", re.S | re.M)
TINY = {
    "N_TRAIN, N_TEST = ": "N_TRAIN, N_TEST = 300, 100",
    "EPOCHS, N_SAMPLES, HMC_WARMUP, N_ATTACKED = ": "EPOCHS, N_SAMPLES, HMC_WARMUP, N_ATTACKED = 1, 2, 2, 10",
}


def blocks() -> list[tuple[str, str | None, str]]:
    """``(language, file name or None, text)`` of every fenced block, in page order."""
    return [(m.group(1), m.group(2), m.group(3)) for m in BLOCK.finditer(DOC.read_text())]


def _shrink(code: str) -> str:
    lines = code.splitlines()
    for prefix, replacement in TINY.items():
        hits = [i for i, line in enumerate(lines) if line.startswith(prefix)]
        if hits:
            lines[hits[0]] = replacement
    return "\n".join(lines) + "\n"


def _tiny_grid(text: str) -> dict:
    cfg = yaml.safe_load(text)
    cfg["data"]["n_points"] = 20
    for m in cfg["models"]:
        m.update({k: v for k, v in {"epochs": 1, "n_samples": 2, "warmup": 2, "steps": 2}.items()
                  if k in m})
    for a in cfg["attacks"]:
        if "steps" in a:
            a["steps"] = 2
    cfg["explain"]["n_samples"] = [2]
    return cfg


def _run_doc(tmp_path, monkeypatch) -> dict:
    """Write the file blocks, execute the Python blocks; the namespace of the last one."""
    found = blocks()
    assert [lang for lang, _, _ in found] == ["python", "python", "python", "yaml", "bash"]
    python = [code for lang, name, code in found if lang == "python" and name is None]
    assert all(any(line.startswith(p) for line in c.splitlines())
               for p, c in zip(TINY, python)), "the size constants of the doc changed"
    for _, name, code in found:
        if name is not None:
            (tmp_path / name).write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    namespace: dict = {}
    for code in python:
        exec(compile(_shrink(code), str(DOC), "exec"), namespace)  # noqa: S102 - the doc's code
    return namespace


@pytest.fixture
def synthetic_fashion(monkeypatch):
    """``bl.data.load("fashion_mnist", ...)`` answered by 28×28 synthetic data, 10 classes."""
    real = bl.data.load

    def load(name, split="test", **kw):
        assert name == "fashion_mnist"
        return real("synthetic", split, shape=(1, 28, 28), n_classes=10, seed=0)

    monkeypatch.setattr(bl.data, "load", load)


def test_doc_example_on_synthetic_data(tmp_path, monkeypatch, synthetic_fashion):
    ns = _run_doc(tmp_path, monkeypatch)
    assert ns["det"].spec["factory"] == "my_models:lenet5" and ns["vi"].n_samples == 2
    assert sorted(p.name for p in (tmp_path / "models" / "det").iterdir()) == \
        ["ensemble.json", "params.safetensors"]
    assert bl.nets.learnable_layers(ns["hmc"].module) == [0, 4, 10, 12, 14]
    from bayeslrp.experiment import expand_grid, load_config

    cfg = load_config(_tiny_grid((tmp_path / "grid.yaml").read_text()))
    layers = {t.coords.get("layer") for t in expand_grid(cfg).tasks if t.stage == "explain"}
    assert layers == {0, 4, 10, 12, 14}


@pytest.mark.slow
def test_doc_example_on_fashion_mnist(tmp_path, monkeypatch):
    ns = _run_doc(tmp_path, monkeypatch)
    assert ns["train"].shape == (1, 28, 28) and ns["train"].x.min() < 0
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(_tiny_grid(
        (tmp_path / "grid.yaml").read_text())))
    command = shlex.split(blocks()[-1][2].strip())
    assert command[:2] == ["PYTHONPATH=.", "bayeslrp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])}
    done = subprocess.run([sys.executable, "-c",
                           "from bayeslrp.cli import main; raise SystemExit(main())",
                           *command[2:]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs" / "own-model" / "report.html").is_file()
