"""Benchmark: Bayesian PGD-40 against fc2-512 with S posterior samples on MNIST test images.

Prints, all measured in the same run (machine noise is large, so only ratios are comparable):

* seconds of ``bl.attacks.pgd`` (default ``expected_gradient`` mode; optionally the vectorised
  ``per_sample_average`` mode too);
* the FLOP bound: FLOPs of PGD = steps × 3 × 2 × params × images × samples (forward + backward
  ≈ 3 forwards of 2·params FLOPs per image and sample) divided by the matmul FLOP/s of a large
  ``torch.matmul`` measured in this run, and the ratio seconds / bound;
* the original code's loop (per image, per sample, a deterministic PGD on a batch of one image)
  run on a slice of images × samples, scaled to the full problem, and the speed-up;
* the speed-up ceiling: the loop's time divided by the FLOP bound. No implementation that does
  the same arithmetic can beat the loop by more than this on this machine (on a CPU the
  per-image loop is matrix-vector work, a few times slower per FLOP than a large matmul, not
  fifty times).

The S networks have random (untrained) weights, one initialisation seed each: the cost of PGD
does not depend on the weights' values.

Usage: ``PYTHONPATH=src python benchmarks/attacks.py [--images 500 --samples 100 --steps 40
[--threads 1]]``
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

import bayeslrp as bl
from bayeslrp.attacks._common import project

from _common import matmul_flops_per_second


def original_loop(modules, x, y, eps, steps, alpha, seed=0):
    """The original code's Bayesian PGD: every image, every sample, its own deterministic attack;
    the sample attacks are averaged."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(x.shape[0]):
        xi, yi = x[i:i + 1], y[i:i + 1]
        advs = []
        for module in modules:
            xa = project(xi + eps * (torch.rand(xi.shape, generator=generator) * 2 - 1), xi, eps)
            for _ in range(steps):
                xa.requires_grad_(True)
                loss = torch.nn.functional.cross_entropy(module(xa), yi)
                (grad,) = torch.autograd.grad(loss, xa)
                xa = project(xa.detach() + alpha * grad.sign(), xi, eps)
            advs.append(xa)
        out.append(torch.stack(advs).mean(0))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--slice-images", type=int, default=4)
    parser.add_argument("--slice-samples", type=int, default=25)
    parser.add_argument("--per-sample-mode", action="store_true",
                        help="also time the vectorised per_sample_average mode")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for every timing, the FLOP bound included (default 1, "
                             "as benchmarks/lrp.py; 0 = torch's choice)")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    x_all, y_all = bl.data.load("mnist", "test")
    idx = bl.data.balanced_subset(y_all, n=args.images, seed=0)
    x, y = x_all[idx], y_all[idx]
    nets = [bl.nets.build("fc2", seed=s, hidden=args.hidden) for s in range(args.samples)]
    ens = bl.Ensemble.from_modules(nets, meta={"method": "random-init"})
    n_params = sum(p.numel() for p in nets[0].parameters())

    flops_before = matmul_flops_per_second()
    start = time.perf_counter()
    xa = bl.attacks.pgd(ens, x, y, eps=0.2, steps=args.steps, alpha=0.01, seed=0)
    seconds = time.perf_counter() - start
    # the best rate seen before or after the attack: the bound is never flattered by a slow spell
    flops_per_s = max(flops_before, matmul_flops_per_second())
    flops = args.steps * 3 * 2 * n_params * args.images * args.samples
    bound = flops / flops_per_s
    facts = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
             "threads": torch.get_num_threads(), "params": n_params, "images": args.images,
             "samples": args.samples, "steps": args.steps,
             "matmul_gflops": flops_per_s / 1e9, "pgd_tflop": flops / 1e12,
             "flop_bound_s": bound}
    facts["pgd_expected_gradient_s"] = seconds
    facts["ratio_to_flop_bound"] = facts["pgd_expected_gradient_s"] / bound
    facts["pgd_expected_gradient_accuracy"] = ens.accuracy(xa, y)

    if args.per_sample_mode:
        start = time.perf_counter()
        bl.attacks.pgd(ens, x, y, eps=0.2, steps=args.steps, alpha=0.01, seed=0,
                       mode="per_sample_average")
        facts["pgd_per_sample_average_s"] = time.perf_counter() - start
        facts["per_sample_ratio_to_flop_bound"] = facts["pgd_per_sample_average_s"] / bound

    modules = [ens.sample_module(j) for j in range(args.slice_samples)]
    start = time.perf_counter()
    original_loop(modules, x[:args.slice_images], y[:args.slice_images], 0.2, args.steps, 0.01)
    sliced = time.perf_counter() - start
    scale = (args.images / args.slice_images) * (args.samples / args.slice_samples)
    facts["original_loop_slice_s"] = sliced
    facts["original_loop_slice"] = f"{args.slice_images} images x {args.slice_samples} samples"
    facts["original_loop_scaled_s"] = sliced * scale
    facts["speedup_vs_original"] = sliced * scale / facts["pgd_expected_gradient_s"]
    facts["speedup_ceiling_vs_original"] = sliced * scale / bound
    if args.per_sample_mode:
        facts["speedup_per_sample_mode_vs_original"] = (sliced * scale
                                                         / facts["pgd_per_sample_average_s"])

    for key, value in facts.items():
        print(f"{key:40s} {value:.4g}" if isinstance(value, float) else f"{key:40s} {value}")
    if args.json:
        bl.fileio.atomic_write_json(args.json, facts)


if __name__ == "__main__":
    main()
