"""Benchmark: Bayesian LRP and Bayesian PGD-40 on ResNet-20 (S posterior samples, CIFAR-shaped).

Prints, measured in the same run (only ratios are comparable across machines):

* seconds of ``bl.lrp.explain`` (ε rule, ``reduce="mean"``, S samples × N images) at the
  output layer and, with ``--layers all``, at every learnable layer;
* seconds of ``bl.attacks.pgd`` (ε = 0.03, ``expected_gradient`` mode, ``--steps`` steps);
* the FLOP bound of each: FLOPs of the Conv2d / Linear layers
  (:func:`bayeslrp.experiment.costs.count_flops`, 2·MACs) — LRP: forward + dense relevance
  backward up to the explained layer (2 forwards); PGD: steps × 3 forwards (forward and the
  two halves of the backward) — over the float32 FLOP/s of a 2048² matmul measured before and
  after (the better one), and the ratio seconds / bound. BatchNorm, ReLU, the residual adds
  and the rule's divisions are not counted, so 1.0 is out of reach.

The S networks are untrained (one initialisation seed each, BatchNorm at its initial
statistics): the cost does not depend on the weights' values. The images are ``cifar_synthetic``
test images (no CIFAR-10 copy is needed).

Usage: ``PYTHONPATH=src python benchmarks/resnet.py [--samples 10 --images 100 --steps 40
--threads 1 --layers output|all --json FILE]``
"""
from __future__ import annotations

import argparse
import time

import torch

import bayeslrp as bl
from bayeslrp.experiment.costs import count_flops

from _common import machine, matmul_flops_per_second, print_rows

SHAPE = (3, 32, 32)


def cut_flops(net, layer) -> int:
    """Forward FLOPs of one image up to (and including) learnable layer ``layer``."""
    from bayeslrp.lrp.targets import resolve_layer

    stop = resolve_layer(net, layer).stop
    return count_flops(net[:stop + 1], SHAPE)


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--layers", choices=["output", "all"], default="output")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's choice)")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    nets = [bl.nets.build("resnet20", seed=s) for s in range(args.samples)]
    ens = bl.Ensemble.from_modules(nets, meta={"method": "random-init"})
    x, y = bl.data.load("cifar_synthetic", "test", n=args.images)
    net = ens.module
    layers = bl.nets.learnable_layers(net) if args.layers == "all" else [None]
    work = args.samples * args.images
    bl.lrp.explain(ens, x[:2], rule="epsilon")  # warm-up: first-call costs are not timed
    rate = matmul_flops_per_second()
    rows = []
    for layer in layers:
        seconds, _ = timed(lambda: bl.lrp.explain(ens, x, rule="epsilon", layer=layer))
        flops = 2.0 * cut_flops(net, layer) * work
        rows.append({"task": f"LRP eps layer {layer if layer is not None else 'output'}",
                     "seconds": seconds, "gflop": flops / 1e9, "flops": flops})
    seconds, _ = timed(lambda: bl.attacks.pgd(ens, x, y, eps=0.03, steps=args.steps,
                                               alpha=0.01, seed=0))
    flops = args.steps * 3.0 * count_flops(net, SHAPE) * work
    rows.append({"task": f"PGD-{args.steps}", "seconds": seconds, "gflop": flops / 1e9,
                 "flops": flops})
    rate = max(rate, matmul_flops_per_second())  # the bound is never flattered by a slow spell
    for row in rows:
        row["bound_s"] = row.pop("flops") / rate
        row["x_bound"] = row["seconds"] / row["bound_s"]
    print(f"{machine()}; ResNet-20, S = {args.samples}, {args.images} cifar_synthetic images; "
          f"matmul {rate / 1e9:.1f} GFLOP/s; forward {count_flops(net, SHAPE) / 1e6:.1f} "
          f"MFLOP per image")
    print_rows(rows)
    if args.json:
        bl.fileio.atomic_write_json(args.json, {"rows": rows, "matmul_flops_per_s": rate,
                                                "samples": args.samples, "images": args.images,
                                                "steps": args.steps, "machine": machine()})


if __name__ == "__main__":
    main()
