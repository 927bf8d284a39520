"""``bayeslrp plan``: FLOPs from the architecture, tasks per stage, what a run dir has done."""
from __future__ import annotations

import pytest

from bayeslrp.cli import main
from bayeslrp.experiment import runner
from bayeslrp.experiment.config import load_config
from bayeslrp.experiment.costs import forward_flops, machine_rate
from bayeslrp.experiment.grid import expand_grid
from bayeslrp.experiment.plan_summary import format_plan, plan_summary

TINY = {
    "name": "plan", "seed": 1,
    "data": {"dataset": "synthetic", "n_points": 20, "shape": [1, 8, 8]},
    "models": [{"name": "det", "method": "det", "arch": "fc2", "hidden": 8, "epochs": 1,
                "batch_size": 64},
               {"name": "vi", "method": "vi", "arch": "fc2", "hidden": 8, "epochs": 1,
                "lr": 0.01, "batch_size": 64, "n_samples": 3}],
    "attacks": [{"method": "fgsm"}],
    "explain": {"rules": ["epsilon"], "layers": "last", "n_samples": [3]},
    "compare": {"baseline": "det"},
}


def test_forward_flops_by_hand():
    assert forward_flops("fc2", {"hidden": 512}, (1, 28, 28)) == \
        2 * (784 * 512 + 512 * 512 + 512 * 10)
    # conv C=2, H=3 on 28×28: conv5 → 24², pool → 12², conv5 → 8², pool(2,1) → 7², linear
    assert forward_flops("conv", {"hidden": 3, "channels": 2}, (1, 28, 28)) == \
        2 * (1 * 25 * 2 * 24 * 24) + 2 * (2 * 25 * 3 * 8 * 8) + 2 * (49 * 3 * 10)


def test_machine_rate_is_plausible():
    assert 1e8 < machine_rate() < 1e15


def test_plan_counts_every_task_of_the_grid():
    summary = plan_summary(TINY)
    grid = expand_grid(load_config(TINY))
    assert int(summary.table["tasks"].sum()) == len(grid)
    by_stage = dict(zip(summary.table["stage"], summary.table["tasks"]))
    assert by_stage["train"] == 2 and by_stage["explain"] == 4 and by_stage["compare"] == 1
    assert summary.total_seconds > 0 and summary.left_seconds == summary.total_seconds


def test_plan_of_the_demo_lists_every_stage_of_its_grid():
    from collections import Counter

    from bayeslrp.cli.run_cmd import packaged_config
    from bayeslrp.experiment.stages import STAGES

    text = packaged_config("demo")
    grid = expand_grid(load_config(text))
    summary = plan_summary(text)
    assert list(summary.table["stage"]) == [s for s in STAGES.names()
                                            if s in {t.stage for t in grid.tasks}]
    assert dict(zip(summary.table["stage"], summary.table["tasks"])) == \
        dict(Counter(t.stage for t in grid.tasks))
    assert (summary.table["estimate_s"] > 0).all()
    # seconds, not hours (measured: estimate 16.6 s, 24.8 s wall on the 2-core dev machine)
    assert 1 < summary.total_seconds < 3600


def test_plan_of_a_run_directory_says_what_is_left(tmp_path):
    run = runner.run_experiment(TINY, tmp_path / "run")
    summary = plan_summary(TINY, run.run_dir)
    assert int(summary.table["left"].sum()) == 0 and summary.left_seconds == 0
    assert summary.measured_seconds is not None
    changed = {**TINY, "attacks": [{"method": "fgsm"}, {"method": "pgd", "steps": 2}]}
    summary = plan_summary(changed, run.run_dir)
    left = dict(zip(summary.table["stage"], summary.table["left"]))
    assert left["attack"] == 2 and left["train"] == 0
    assert "measured in this run directory" in format_plan(summary)


def test_cli_plan(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    import yaml

    path.write_text(yaml.safe_dump(TINY))
    assert main(["plan", str(path)]) == 0
    assert "total" in capsys.readouterr().out
    assert main(["plan", "--profile", "quick"]) == 0
    assert " h" in capsys.readouterr().out  # the quick profile takes hours on a CPU


@pytest.mark.parametrize("argv", [["plan"], ["plan", "--profile", "nope"],
                                  ["plan", "missing.yaml"]])
def test_cli_plan_errors_are_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
