"""Benchmark: tangent spaces of the data manifold (``bl.analysis.tangent_spaces``) on MNIST.

The nearest-neighbour search of B test points against N training images and the local PCA of
their K neighbours, timed against its FLOP bound in the same run:

- distances: ``2·B·N·D`` (one matrix product per chunk of training images);
- local PCA: the K×K Gram matrices ``2·B·K²·D`` and the basis ``2·B·D·K·d``;

divided by the float32 matmul FLOP/s measured now (the Gram and basis products run in
float64, counted at the float32 rate, so the bound is optimistic for them). The issue's target
is ≤ 1.5× the bound at B = 500, N = 60000. It also prints the ratio to the obvious
alternative a user would write, ``torch.cdist`` + ``topk`` + a batched SVD.

Usage: ``python benchmarks/manifold.py [--points 500] [--k 50] [--dim 10] [--threads T]``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bayeslrp as bl  # noqa: E402
from bayeslrp.analysis import manifold as mf  # noqa: E402

from _common import best_time, machine, matmul_flops_per_second  # noqa: E402


def alternative(x, x_train, k, dim):
    """What a user would write: cdist, topk and a batched SVD of the centred neighbours."""
    q, t = x.flatten(1), x_train.flatten(1)
    idx = torch.cdist(q, t).topk(k, dim=1, largest=False).indices
    nb = t[idx].double()
    centred = nb - nb.mean(1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return vh[:, :dim].transpose(1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x_train, _ = bl.data.load("mnist", "train")
    x_test, y_test = bl.data.load("mnist", "test")
    x = x_test[bl.data.balanced_subset(y_test, args.points, seed=0)]
    b, n, d = x.shape[0], x_train.shape[0], x[0].numel()
    flops = 2 * b * n * d + 2 * b * args.k ** 2 * d + 2 * b * d * args.k * args.dim
    rate = matmul_flops_per_second()
    ours = best_time(lambda: mf.tangent_spaces(x, x_train, k=args.k, dim=args.dim), repeats=3)
    theirs = best_time(lambda: alternative(x, x_train, args.k, args.dim), repeats=1)
    same = mf.largest_principal_angle(mf.tangent_spaces(x, x_train, k=args.k, dim=args.dim),
                                      alternative(x, x_train, args.k, args.dim))
    bound = flops / rate
    print(f"machine: {machine()}; matmul {rate / 1e9:.1f} GFLOP/s")
    print(f"tangent_spaces B={b} N={n} D={d} K={args.k} d={args.dim}: {ours:.3f} s, "
          f"bound {bound:.3f} s ({flops / 1e9:.1f} GFLOP), ratio to bound {ours / bound:.2f}")
    print(f"cdist + topk + batched SVD: {theirs:.3f} s; speed-up {theirs / ours:.2f}x; "
          f"largest principal angle between the two bases {float(same.max()):.2e} rad")


if __name__ == "__main__":
    main()
