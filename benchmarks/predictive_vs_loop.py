"""Benchmark: ``Ensemble.predict_proba`` against the plain member loop a user would write.

The loop: ``torch.no_grad()``, image batches of 2048 (as ours), ``mean_s softmax(member_s(x))``.
Printed per architecture: CPU seconds of both (best of ``--repeats`` interleaved rounds), speed ratio (loop ÷ ours), our ratio to the FLOP bound
(forward FLOPs × images × S at the matmul rate measured in this run) and the largest difference
of the predictive probabilities.

Usage: ``PYTHONPATH=src python benchmarks/predictive_vs_loop.py [--archs fc2 conv] [--samples 100]
[--images 500] [--threads 1] [--repeats 3]``
"""
from __future__ import annotations

import torch

from _common import (comparison_setup, forward_flops, matmul_flops_per_second, print_rows, race,
                     random_ensemble)


def member_loop(members, x, batch_size=2048):
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            out.append(torch.stack([m(xb).softmax(-1) for m in members]).mean(0))
    return torch.cat(out)


def main() -> None:
    args, x, rate = comparison_setup(__doc__.splitlines()[0])
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
