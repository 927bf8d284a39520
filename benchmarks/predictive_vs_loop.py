"""Benchmark: ``Ensemble.predict_proba`` against the plain member loop a user would write.

The loop: ``torch.no_grad()``, image batches of 2048 (as ours), ``mean_s softmax(member_s(x))``.
Printed per architecture: CPU seconds of both (best of ``--repeats`` interleaved rounds), speed ratio (loop ÷ ours), our ratio to the FLOP bound
(forward FLOPs × images × S at the matmul rate measured in this run) and the largest difference
of the predictive probabilities.

Usage: ``PYTHONPATH=src python benchmarks/predictive_vs_loop.py [--archs fc2 conv] [--samples 100]
[--images 500] [--threads 1]``
"""
from __future__ import annotations

import argparse

import torch

from _common import (forward_flops, machine, matmul_flops_per_second, mnist_points, print_rows,
                     race, random_ensemble)


def member_loop(members, x, batch_size=2048):
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            out.append(torch.stack([m(xb).softmax(-1) for m in members]).mean(0))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["fc2", "conv"])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds, best counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, _ = mnist_points(args.images)
    rate = matmul_flops_per_second()
    print(f"{machine()}; S = {args.samples}, {args.images} MNIST images; "
          f"matmul {rate / 1e9:.1f} GFLOP/s")
    rows = []
    for arch in args.archs:
        ens, members = random_ensemble(arch, args.samples)
        members = [m.eval() for m in members]
        out, times = race({"loop": lambda: member_loop(members, x),
                           "ours": lambda: ens.predict_proba(x)}, repeats=args.repeats)
        theirs, mine, t_alt, t_ours = out["loop"], out["ours"], times["loop"], times["ours"]
        rate = max(rate, matmul_flops_per_second())
        bound = forward_flops(arch) * args.images * args.samples / rate
        rows.append({"arch": arch, "ours_s": t_ours, "loop_s": t_alt,
                     "speed_vs_loop": t_alt / t_ours, "ours_vs_bound": t_ours / bound,
                     "max_abs_diff": float((mine - theirs).abs().max())})
    print_rows(rows)


if __name__ == "__main__":
    main()
