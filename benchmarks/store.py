"""Benchmark: recording reused tasks in the run manifest (the resume path of a big grid).

A rerun of a grid reuses every finished task and records each one in ``manifest.json``.
Saving the whole manifest per record made this quadratic in the number of tasks; reuse records
are now saved at most every ``MANIFEST_REUSE_SAVE_INTERVAL`` seconds. The baseline, measured
in the same run, is the old behaviour (interval 0: save per record). Prints seconds for N
reuse records after a first run of N computed records, and the ratio.

Usage: ``python benchmarks/store.py [--tasks N]`` (default 1000, about 30 s on 2 cores).
"""
from __future__ import annotations

import argparse
import tempfile
import time

from _common import machine

from bayeslrp.experiment import store as store_module
from bayeslrp.experiment.store import Store, artifact_key


def rerun_seconds(n_tasks: int, interval: float) -> float:
    """Seconds to record ``n_tasks`` reuse records in a second run over a fresh run dir."""
    store_module.MANIFEST_REUSE_SAVE_INTERVAL = interval
    keys = [artifact_key("data", {"n": i}) for i in range(n_tasks)]
    with tempfile.TemporaryDirectory() as run_dir:
        first = Store(run_dir)
        first.begin_run()
        for i, key in enumerate(keys):  # the first run: every task computed (saved at once)
            first.record_stage(f"task{i}", "data", key, computed=True, seconds=1.0)
        first.end_run()
        again = Store(run_dir)
        started = time.perf_counter()
        again.begin_run()
        for i, key in enumerate(keys):
            again.record_stage(f"task{i}", "data", key, computed=False, seconds=0.0)
        again.end_run()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description="manifest bookkeeping of a resumed grid")
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    batched = rerun_seconds(args.tasks, 1.0)
    per_record = rerun_seconds(args.tasks, 0.0)
    print(f"{args.tasks} reused tasks recorded: batched saves {batched:.3f} s, "
          f"save per record (old) {per_record:.3f} s, speed-up {per_record / batched:.0f}x")


if __name__ == "__main__":
    main()
