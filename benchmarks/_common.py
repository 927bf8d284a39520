"""Helpers shared by the benchmarks: the machine's matmul rate, measured in the same run."""
from __future__ import annotations

import platform
import resource
import time

import torch


def matmul_flops_per_second(size: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` float32 FLOP/s of a ``size``×``size`` matmul on this machine, now."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()  # CPU time, as race(): another process's load does not count
        a @ b
        best = min(best, time.process_time() - started)
    return 2 * size**3 / best


def best_time(fn, repeats: int = 3) -> float:
    """Best wall time of ``fn()`` over ``repeats`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def race(contenders: dict, repeats: int = 3) -> tuple[dict, dict]:
    """Time the ``contenders`` (name -> function) in turn, ``repeats`` rounds, interleaved.

    Returns each one's output (of its last call) and its best CPU time of this process
    (``time.process_time``): on a shared machine another process's load then slows a round of
    both instead of only one of them, and the best round is the least disturbed one. With one
    thread, CPU time is the compute time.
    """
    outputs, times = {}, {name: float("inf") for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            started = time.process_time()
            outputs[name] = fn()
            times[name] = min(times[name], time.process_time() - started)
    return outputs, times


def comparison_setup(description: str, repeats: int = 3):
    """Parse the options every ours-against-theirs benchmark shares (``--archs --samples
    --images --threads --repeats``), set the thread count, load the MNIST points, measure the
    matmul rate and print the machine line; return ``(args, x, rate)``."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--archs", nargs="+", default=["fc2", "conv"], choices=list(ARCHS))
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=repeats,
                        help="interleaved rounds, best counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, _ = mnist_points(args.images)
    rate = matmul_flops_per_second()
    print(f"{machine()}; S = {args.samples}, {args.images} MNIST images; "
          f"matmul {rate / 1e9:.1f} GFLOP/s")
    return args, x, rate


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def machine() -> str:
    """One line naming the machine the numbers were measured on."""
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


ARCHS = {"fc2": {"hidden": 512}, "conv": {"channels": 32, "hidden": 512}}


def random_ensemble(arch: str, samples: int):
    """An Ensemble of ``samples`` randomly initialised ``arch``-512 nets (seeds 0..S-1) and the
    nets themselves; the cost of every stage does not depend on the weights' values."""
    import bayeslrp as bl

    nets = [bl.nets.build(arch, seed=s, **ARCHS[arch]) for s in range(samples)]
    return bl.Ensemble.from_modules(nets, meta={"method": "random-init"}), nets


def mnist_points(n: int):
    """``n`` balanced real MNIST test images and labels (seed 0)."""
    import bayeslrp as bl

    x, y = bl.data.load("mnist", "test")
    idx = bl.data.balanced_subset(y, n=n, seed=0)
    return x[idx], y[idx]


def forward_flops(arch: str) -> int:
    """FLOPs of one MNIST image's forward pass through ``arch``-512."""
    from bayeslrp.experiment.costs import forward_flops as flops

    return flops(arch, ARCHS[arch], (1, 28, 28))


def print_rows(rows: list[dict]) -> None:
    """Print benchmark rows as an aligned table."""
    if not rows:
        return
    keys = list(rows[0])
    cells = [[f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)), flush=True)
