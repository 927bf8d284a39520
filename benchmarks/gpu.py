"""Benchmark: Bayesian LRP and PGD-40 at S posterior samples on one device (default CUDA).

Times, after one warm-up call and with the device synchronised around each timing:

* ``bl.lrp.explain`` (ε rule, output layer, mean over S) for fc2-512 and conv (C = 32,
  H = 512) on ``--images`` MNIST-shaped images;
* ``bl.attacks.pgd`` (40 steps, ``expected_gradient``) against fc2-512.

The S networks have random weights and the images are seeded uniform noise of MNIST's shape:
the cost depends on neither, and the benchmark needs no dataset. Without CUDA (and the default
``--device cuda``) it prints one line and exits 0, so ``make bench`` stays CPU-friendly.

Usage: ``PYTHONPATH=src python benchmarks/gpu.py [--device cuda] [--samples 100]
[--images 500] [--json FILE]``
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import bayeslrp as bl
from bayeslrp.devices import configure_torch, resolve_device, torch_facts


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up: kernels, allocator
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def _ensemble(arch: str, samples: int, device: torch.device, **kwargs) -> bl.Ensemble:
    nets = [bl.nets.build(arch, seed=s, **kwargs) for s in range(samples)]
    return bl.Ensemble.from_modules(nets).to(device)


def run(device: torch.device, samples: int, images: int, repeats: int) -> dict:
    """Seconds of each timing (best of ``repeats``) and the facts of the device."""
    x = torch.rand(images, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
    y = (torch.arange(images) % 10).to(device)
    facts: dict = {"samples": samples, "images": images, **torch_facts(device)}
    for arch, kwargs in (("fc2", {"hidden": 512}), ("conv", {"hidden": 512, "channels": 32})):
        ens = _ensemble(arch, samples, device, **kwargs)
        facts[f"lrp_{arch}_epsilon_s"] = _timed(
            lambda: bl.lrp.explain(ens, x, rule="epsilon"), device, repeats)
    ens = _ensemble("fc2", samples, device, hidden=512)
    facts["pgd40_fc2_s"] = _timed(
        lambda: bl.attacks.pgd(ens, x, y, eps=0.2, steps=40, alpha=0.01, seed=0), device,
        repeats)
    if device.type == "cuda":
        facts["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", help="write the numbers to this file")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device on this machine; skipped")
        return
    device = resolve_device(args.device)
    configure_torch(device)
    facts = run(device, args.samples, args.images, args.repeats)
    for key, value in facts.items():
        print(f"{key:32s} {value:.4g}" if isinstance(value, float) else f"{key:32s} {value}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(facts, fh, indent=1)


if __name__ == "__main__":
    main()
