"""``bayeslrp plan``: what a grid will compute, how long it should take, what is left.

Each stage estimates its own tasks (:meth:`Stage.estimate`); a run directory's store says
which tasks are done, and its manifest how long the last run's tasks took.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bayeslrp.experiment.runner import load_configs
from bayeslrp.experiment.grid import expand_grid
from bayeslrp.experiment.stages import STAGES

__all__ = ["PlanSummary", "format_plan", "plan_summary"]


@dataclass
class PlanSummary:
    """Per stage: tasks, unique tasks, done, left and the estimated seconds of what is left."""

    table: pd.DataFrame
    total_seconds: float
    left_seconds: float
    measured_seconds: float | None


def _measured(run_dir: Path | None) -> float | None:
    path = None if run_dir is None else run_dir / "manifest.json"
    if path is None or not path.is_file():
        return None
    runs = json.loads(path.read_text()).get("runs") or []
    times = [sum(float(s.get("seconds") or 0) for s in r.get("stages") or []) for r in runs]
    return max(times) if times else None


def plan_summary(config: Any, run_dir: str | Path | None = None,
                 device: str | None = None) -> PlanSummary:
    """Estimate every task of ``config`` (path, text, mapping or Config; several documents).

    ``device`` (default: each config's) decides the device type in the keys, so a run
    directory of a CUDA run is matched with CUDA keys.
    """
    from bayeslrp.devices import device_type

    from bayeslrp.experiment.store import Store

    store = Store(run_dir) if run_dir is not None and Path(run_dir).is_dir() else None
    rows: dict[str, dict[str, Any]] = {s.name: {"stage": s.name, "tasks": 0, "unique": 0,
                                                "done": 0, "left": 0, "estimate_s": 0.0,
                                                "left_s": 0.0} for s in STAGES}
    seen: set[str] = set()
    for cfg in load_configs(config):
        kind = device_type(device if device is not None else cfg.device)
        for task in expand_grid(cfg, device_type=kind).tasks:
            row = rows[task.stage]
            row["tasks"] += 1
            if task.key in seen:
                continue
            seen.add(task.key)
            row["unique"] += 1
            seconds = float(STAGES.get(task.stage)().estimate(task, cfg))
            row["estimate_s"] += seconds
            if store is not None and store.has(task.key):
                row["done"] += 1
            else:
                row["left"] += 1
                row["left_s"] += seconds
    table = pd.DataFrame([r for r in rows.values() if r["tasks"]])
    return PlanSummary(table, float(table["estimate_s"].sum()), float(table["left_s"].sum()),
                       _measured(None if run_dir is None else Path(run_dir)))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_plan(summary: PlanSummary) -> str:
    """The plan as plain text: one line per stage and the totals."""
    lines = [f"{'stage':<9}{'tasks':>7}{'unique':>8}{'done':>7}{'left':>7}{'estimate':>12}"
             f"{'left':>12}"]
    for r in summary.table.itertuples(index=False):
        lines.append(f"{r.stage:<9}{r.tasks:>7}{r.unique:>8}{r.done:>7}{r.left:>7}"
                     f"{_duration(r.estimate_s):>12}{_duration(r.left_s):>12}")
    t = summary.table
    lines.append(f"{'total':<9}{t['tasks'].sum():>7}{t['unique'].sum():>8}{t['done'].sum():>7}"
                 f"{t['left'].sum():>7}{_duration(summary.total_seconds):>12}"
                 f"{_duration(summary.left_seconds):>12}")
    if summary.measured_seconds is not None:
        lines.append(f"measured in this run directory (longest run, stage time): "
                     f"{_duration(summary.measured_seconds)}")
    lines.append("estimates: FLOPs of each task from the architecture at this machine's "
                 "measured matmul rate (bayeslrp.experiment.costs)")
    return "\n".join(lines)
