"""Run every benchmark at a small size, one after another, for ``make bench``.

Each benchmark still prints its own table (seconds, ratio to the alternative measured in the same
run, ratio to the FLOP bound, equality of the outputs); the sizes here are small so that the whole
set finishes in about ten minutes on a two-core CPU. The numbers in ``docs/results.md`` come from
the defaults of each script (paper sizes), run one at a time.

Usage: ``PYTHONPATH=src:benchmarks python benchmarks/run_all.py [--only NAME ...]``
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# script -> its small-size arguments
SMALL = {
    "attacks.py": ["--images", "50", "--samples", "10", "--steps", "5", "--slice-images", "2",
                   "--slice-samples", "5"],
    "attacks_vs_torchattacks.py": ["--samples", "20", "--images", "200", "--steps", "5"],
    "explainers.py": ["--arch", "fc2", "--n-images", "10", "--samples", "4"],
    "gpu.py": [],  # one line and exit 0 without CUDA
    "hmc.py": ["--hidden", "64", "--n-train", "2000", "--iters", "2", "--repeats", "1"],
    "lrp.py": ["--arch", "fc2", "--n-images", "50", "--samples", "20"],
    "lrp_vs_zennit.py": ["--samples", "20", "--images", "50"],
    "manifold.py": ["--points", "200"],
    "predictive_vs_loop.py": ["--samples", "20", "--images", "500"],
    "resnet.py": ["--samples", "2", "--images", "10", "--steps", "5", "--layers", "all"],
    "store.py": ["--tasks", "200"],
    "train.py": ["--batches", "20"],
    "train_vs_loop.py": ["--images", "1000"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SMALL), help="run just these")
    args = parser.parse_args()
    scripts = sorted(p.name for p in HERE.glob("*.py")
                     if not p.name.startswith("_") and p.name != "run_all.py")
    missing = sorted(set(scripts) - set(SMALL))
    if missing:  # a new benchmark must say its small size here
        print(f"error: no small-size arguments for {', '.join(missing)} in run_all.SMALL")
        return 2
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE.parent / "src"), str(HERE), os.environ.get("PYTHONPATH", "")]))
    started = time.perf_counter()
    for name in args.only or scripts:
        print(f"== {name} {' '.join(SMALL[name])}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / name), *SMALL[name]], env=env)
        print(f"-- {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        if code != 0:
            print(f"error: {name} exited with {code}")
            return code
    print(f"all benchmarks: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
