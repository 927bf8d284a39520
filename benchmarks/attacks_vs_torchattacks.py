"""Benchmark: Bayesian FGSM / PGD against torchattacks 3.5.1 on a member-looping wrapper.

For each ensemble mode, ours and the code a user would write today, measured in the same run on
the same real MNIST points (random-init fc2-512 or conv-512 members: cost does not depend on the
weights), PGD without random start so that both follow the same path:

* ``predictive``: torchattacks on a module returning ``log mean_s softmax(f_s(x))`` (its
  cross-entropy is the predictive loss ``−log p̄_y``);
* ``expected_gradient``: a hand-written loop stepping along ``sign(∇ Σ_s CE(f_s(x), y))``
  (torchattacks has no summed-loss form);
* ``per_sample_average``: torchattacks on every member separately, the S points averaged.

Printed per row: CPU seconds (best of ``--repeats`` interleaved rounds) of ours and of the alternative, speed ratio (alternative ÷ ours, > 1
means ours is faster), our ratio to the FLOP bound (steps × 2 × forward FLOPs × images × S at the
matmul rate measured in this run: a forward and an input-gradient backward per step), and how
equal the points are (max |Δ| and the share of pixels that differ by more than 1e-6; sign flips
of near-zero gradient components are rounding, not method differences).

Usage: ``PYTHONPATH=src python benchmarks/attacks_vs_torchattacks.py [--arch fc2] [--samples 100]
[--images 500] [--steps 10] [--threads 1]``
"""
from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.nn import functional as F

import bayeslrp as bl
from bayeslrp.attacks._common import project

from _common import (forward_flops, machine, matmul_flops_per_second, mnist_points, print_rows,
                     race, random_ensemble)
from _thirdparty import require


class MeanSoftmaxLog(nn.Module):
    """``log`` of the members' mean softmax: the predictive a user would wrap for torchattacks."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        probs = torch.stack([m(x).softmax(-1) for m in self.members]).mean(0)
        return probs.log()


def expected_gradient_loop(members, x, y, eps, steps, alpha):
    """The loop a user writes for the paper's expected-gradient attack."""
    x0, xa = x, x.clone()
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = sum(F.cross_entropy(m(xa), y, reduction="sum") for m in members)
        (grad,) = torch.autograd.grad(loss, xa)
        xa = project(xa.detach() + alpha * grad.sign(), x0, eps)
    return xa


def torchattacks_attack(ta, model, attack, eps, steps, alpha):
    if attack == "fgsm":
        return ta.FGSM(model, eps=eps)
    return ta.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)


def alternative(ta, members, x, y, attack, mode, eps, steps, alpha):
    steps = 1 if attack == "fgsm" else steps
    alpha = eps if attack == "fgsm" else alpha
    if mode == "predictive":
        return torchattacks_attack(ta, MeanSoftmaxLog(members).eval(), attack, eps, steps,
                                   alpha)(x, y)
    if mode == "expected_gradient":
        return expected_gradient_loop(members, x, y, eps, steps, alpha)
    return torch.stack([torchattacks_attack(ta, m.eval(), attack, eps, steps, alpha)(x, y)
                        for m in members]).mean(0)


def ours(ens, x, y, attack, mode, eps, steps, alpha):
    if attack == "fgsm":
        return bl.attacks.fgsm(ens, x, y, eps=eps, mode=mode)
    return bl.attacks.pgd(ens, x, y, eps=eps, steps=steps, alpha=alpha, mode=mode,
                          random_start=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("fc2", "conv"), default="fc2")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds, best counts")
    parser.add_argument("--modes", default="predictive,expected_gradient,per_sample_average")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ta = require("torchattacks")
    x, y = mnist_points(args.images)
    ens, members = random_ensemble(args.arch, args.samples)
    eps, alpha = 0.2, 0.01
    rate = matmul_flops_per_second()
    print(f"{machine()}; {args.arch}-512, S = {args.samples}, {args.images} MNIST images, "
          f"PGD {args.steps} steps; matmul {rate / 1e9:.1f} GFLOP/s")
    rows = []
    for attack in ("fgsm", "pgd"):
        steps = 1 if attack == "fgsm" else args.steps
        for mode in args.modes.split(","):
            out, times = race({
                "alt": lambda: alternative(ta, members, x, y, attack, mode, eps, args.steps,
                                           alpha),
                "ours": lambda: ours(ens, x, y, attack, mode, eps, args.steps, alpha)},
                repeats=args.repeats)
            theirs, mine, t_alt, t_ours = out["alt"], out["ours"], times["alt"], times["ours"]
            rate = max(rate, matmul_flops_per_second())
            bound = steps * 2 * forward_flops(args.arch) * args.images * args.samples / rate
            delta = (mine - theirs).abs()
            rows.append({"attack": attack, "mode": mode, "ours_s": t_ours, "alt_s": t_alt,
                         "speed_vs_alt": t_alt / t_ours, "ours_vs_bound": t_ours / bound,
                         "max_abs_diff": float(delta.max()),
                         "pixels_differ": float((delta > 1e-6).float().mean())})
    print_rows(rows)


if __name__ == "__main__":
    main()
