"""Benchmark: one training epoch, ours against the plain PyTorch loop a user would write.

* ``det``: ``bl.train.deterministic(net, x, y, epochs=1)`` against Adam (lr 1e-3, batch 128,
  shuffled) on the same network in a plain loop.
* ``vi``: our mean-field fit (local reparameterisation, one epoch) against a plain loop of
  hand-written Bayes-by-backprop layers doing the same arithmetic per step (mean and variance
  of each affine output from μ and softplus(ρ)², one noise draw per output, cross-entropy +
  KL / N, Adam lr 1e-3) — what a user of bayesian-torch-style layers runs.

Printed per (arch, method): CPU seconds of both (best of ``--repeats`` interleaved rounds), speed ratio (loop ÷ ours), our ratio to the FLOP
bound (det: 3 × forward FLOPs per image — forward, input and weight gradients; vi: twice that,
for the variance pass). The two runs start from the same weights on the same data; their
batch orders and noise draws differ, so their weights are not compared.

Usage: ``PYTHONPATH=src python benchmarks/train_vs_loop.py [--archs fc2 conv] [--methods det vi]
[--images 10000] [--threads 1]``
"""
from __future__ import annotations

import argparse
import math

import torch
from torch import nn
from torch.nn import functional as F

import bayeslrp as bl
from bayeslrp.train.vi_meanfield import fit as vi_fit

from _common import ARCHS, forward_flops, machine, matmul_flops_per_second, print_rows, race


def plain_det_epoch(net, x, y, batch_size=128, seed=0):
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for idx in torch.randperm(x.shape[0], generator=generator).split(batch_size):
        loss = F.cross_entropy(net(x[idx]), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


class BayesAffine(nn.Module):
    """A mean-field Gaussian Linear or Conv2d layer with the local reparameterisation trick."""

    def __init__(self, layer: nn.Module, init_std: float = 1e-3):
        super().__init__()
        self.layer = layer
        rho = math.log(math.expm1(init_std))
        self.mu_w, self.mu_b = nn.Parameter(layer.weight.detach().clone()), nn.Parameter(
            layer.bias.detach().clone())
        self.rho_w = nn.Parameter(torch.full_like(layer.weight, rho))
        self.rho_b = nn.Parameter(torch.full_like(layer.bias, rho))

    def _affine(self, x, w, b):
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, b)
        return F.conv2d(x, w, b, self.layer.stride, self.layer.padding)

    def forward(self, x):
        mean = self._affine(x, self.mu_w, self.mu_b)
        var = self._affine(x * x, F.softplus(self.rho_w) ** 2, F.softplus(self.rho_b) ** 2)
        return mean + var.clamp_min(1e-16).sqrt() * torch.randn_like(mean)

    def kl(self):
        total = 0.0
        for mu, rho in ((self.mu_w, self.rho_w), (self.mu_b, self.rho_b)):
            sigma = F.softplus(rho)
            total = total + (-torch.log(sigma) + (sigma ** 2 + mu ** 2) / 2 - 0.5).sum()
        return total


def plain_vi_epoch(net, x, y, batch_size=128, seed=0):
    layers = [BayesAffine(m) if isinstance(m, (nn.Linear, nn.Conv2d)) else m for m in net]
    model = nn.Sequential(*layers)
    bayes = [m for m in layers if isinstance(m, BayesAffine)]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for idx in torch.randperm(x.shape[0], generator=generator).split(batch_size):
        loss = F.cross_entropy(model(x[idx]), y[idx]) + sum(m.kl() for m in bayes) / x.shape[0]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def ours(method, net, x, y):
    if method == "det":
        bl.train.deterministic(net, x, y, epochs=1, progress=False)
    else:
        vi_fit(net, x, y, epochs=1, lr=1e-3, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["fc2", "conv"])
    parser.add_argument("--methods", nargs="+", default=["det", "vi"])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds, best counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = bl.data.load("mnist", "train")
    x, y = x[:args.images], y[:args.images]
    rate = matmul_flops_per_second()
    print(f"{machine()}; one epoch on {args.images} MNIST training images; "
          f"matmul {rate / 1e9:.1f} GFLOP/s")
    rows = []
    for arch in args.archs:
        for method in args.methods:
            plain = plain_det_epoch if method == "det" else plain_vi_epoch
            _, times = race({
                "loop": lambda: plain(bl.nets.build(arch, seed=0, **ARCHS[arch]), x, y),
                "ours": lambda: ours(method, bl.nets.build(arch, seed=0, **ARCHS[arch]), x, y)},
                repeats=args.repeats)
            t_alt, t_ours = times["loop"], times["ours"]
            rate = max(rate, matmul_flops_per_second())
            passes = 3 if method == "det" else 6
            bound = passes * forward_flops(arch) * args.images / rate
            rows.append({"arch": arch, "method": method, "ours_s": t_ours, "loop_s": t_alt,
                         "speed_vs_loop": t_alt / t_ours, "ours_vs_bound": t_ours / bound})
    print_rows(rows)


if __name__ == "__main__":
    main()
