"""The ``bayeslrp train`` command: VI options and one-line errors (exit 2)."""
from __future__ import annotations

import contextlib
import io

import pytest

import bayeslrp as bl
from bayeslrp.cli import main


def _call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


TINY_VI = ["train", "--dataset", "digits", "--arch", "fc2", "--hidden", "8", "--method", "vi",
           "--epochs", "1", "--n-samples", "2", "--lr", "0.01"]


def test_train_vi_passes_the_schedule_and_initial_scale(tmp_path):
    code, out, err = _call(TINY_VI + ["--vi-init-std", "0.01", "--vi-lr-schedule", "cosine",
                                      "--out", str(tmp_path / "vi")])
    assert code == 0, err
    meta = bl.Ensemble.load(tmp_path / "vi").meta
    assert (meta["init_std"], meta["lr_schedule"], meta["n_samples"]) == (0.01, "cosine", 2)


@pytest.mark.parametrize("extra, words", [
    (["--vi-lr-schedule", "linear"], "--vi-lr-schedule: Input should be 'constant' or 'cosine'"),
    (["--vi-init-std", "0"], "--vi-init-std: Input should be greater than 0"),
    (["--method", "mcmc"], "--method must be one of"),
])
def test_train_refuses_bad_values_in_one_line(tmp_path, extra, words):
    code, _, err = _call(TINY_VI + extra + ["--out", str(tmp_path / "m")])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and words in lines[0], err
    assert not (tmp_path / "m").exists()
