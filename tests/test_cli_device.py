"""``--device`` on every command: one validator, one ``error:`` line, exit code 2, nothing
written, before any data or model is read."""
from __future__ import annotations

import contextlib
import io

import pytest
import torch

from bayeslrp.cli import main

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")


def _call(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _one_line(code, err):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err


def _commands(tmp_path):
    """Every command that computes, with arguments that would otherwise start work (the
    model directories do not exist: the device must be refused before they are read)."""
    config = tmp_path / "c.yaml"
    config.write_text("name: x\n")
    missing = str(tmp_path / "no-model")
    return {
        "run": ["run", str(config), "--run-dir", str(tmp_path / "r")],
        "demo": ["demo", "--run-dir", str(tmp_path / "r")],
        "reproduce": ["reproduce", "--profile", "quick", "--run-dir", str(tmp_path / "r")],
        "train": ["train", "--dataset", "synthetic", "--out", str(tmp_path / "m")],
        "evaluate": ["evaluate", "--model", missing],
        "attack": ["attack", "--model", missing, "--out", str(tmp_path / "a")],
    }


COMMANDS = ["run", "demo", "reproduce", "train", "evaluate", "attack"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("device, words", [("gpu", "unknown device"),
                                           ("cuda:99", "cuda:99"),
                                           ("mps", "mps is not supported")])
def test_device_is_validated_on_every_command(tmp_path, command, device, words):
    code, _, err = _call(_commands(tmp_path)[command] + ["--device", device])
    _one_line(code, err)
    assert words in err
    assert not any(p.exists() for p in (tmp_path / "r", tmp_path / "m", tmp_path / "a"))


def test_plan_takes_the_device_of_the_run(tmp_path):
    code, _, err = _call(["plan", "--profile", "quick", "--device", "gpu"])
    _one_line(code, err)
    code, out, err = _call(["plan", "--profile", "quick", "--device", "cuda"])
    assert code == 0, err  # a GPU run may be planned on a machine without one
    assert "train" in out


@NO_CUDA
def test_train_device_cuda_without_cuda_is_one_line(tmp_path):
    code, _, err = _call(_commands(tmp_path)["train"] + ["--device", "cuda:7"])
    _one_line(code, err)
    assert "CUDA is not available" in err
    assert not (tmp_path / "m").exists()


@NO_CUDA
@pytest.mark.parametrize("command", ["evaluate", "attack"])
def test_evaluate_and_attack_refuse_cuda_without_cuda(tmp_path, command):
    code, _, err = _call(_commands(tmp_path)[command] + ["--device", "cuda"])
    _one_line(code, err)
    assert "CUDA is not available" in err


def test_evaluate_and_attack_run_with_device_cpu(tmp_path):
    # the option reaches the work: a tiny model evaluated and attacked on --device cpu/auto
    from bayeslrp import data, nets, train

    x, y = data.load("synthetic", "train", shape=(1, 8, 8), seed=0)
    net = nets.build("fc2", hidden=8, in_shape=[1, 8, 8], n_classes=10)
    ens = train.deterministic(net, x[:200], y[:200], epochs=1, progress=False)
    ens.meta["dataset"] = "synthetic"
    ens.save(tmp_path / "m")
    code, out, err = _call(["evaluate", "--model", str(tmp_path / "m"), "--device", "auto"])
    assert code == 0, err
    assert "synthetic test accuracy" in out
    code, out, err = _call(["attack", "--model", str(tmp_path / "m"), "--out",
                            str(tmp_path / "a"), "--n-points", "20", "--device", "cpu"])
    assert code == 0, err
    assert (tmp_path / "a" / "attack.parquet").is_file()
