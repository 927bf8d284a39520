"""Benchmark: Bayesian ε-LRP against a Zennit 0.5.1 loop over posterior samples.

The alternative is what a user of Zennit writes for a Bayesian heatmap: for every member, the
ε composite (ε on Linear and Conv2d, activations passed through, max-pooling by its gradient)
applied to the member, one modified backward pass seeded with the logit of the explained class
(the class of the Bayesian mean prediction, as ours), channels summed, the S heatmaps averaged.
Ours: ``bl.lrp.explain(ens, x, rule="epsilon", n_samples=S)`` at the output layer.

Printed per architecture: CPU seconds of both (best of ``--repeats`` interleaved rounds), speed ratio (Zennit ÷ ours, > 1 means ours is
faster), our ratio to the FLOP bound (forward + relevance backward = 2 × forward FLOPs per image
and sample, at the matmul rate measured in this run) and the largest difference between the two
maps relative to the largest |relevance|. In float32 that difference is rounding made visible by
max-pooling: where two pooled values tie up to rounding, the two implementations' convolutions
(summed in different orders) can pick different winners, which moves that unit's relevance. The
column ``f64_rel_diff`` repeats the comparison in float64 on the first 4 members and 50 images,
where no near-ties flip: it shows that the two compute the same maps.

Usage: ``PYTHONPATH=src python benchmarks/lrp_vs_zennit.py [--archs fc2 conv] [--samples 100]
[--images 500] [--threads 1] [--repeats 2]``
"""
from __future__ import annotations

import copy

import torch

import bayeslrp as bl

from _common import (comparison_setup, forward_flops, matmul_flops_per_second, print_rows, race,
                     random_ensemble)
from _thirdparty import require


def zennit_loop(zennit, members, x, classes, epsilon=0.1):
    """Mean over members of the Zennit ε-LRP heatmap of ``classes``, ``[B, H, W]``."""
    from zennit.composites import LayerMapComposite, layer_map_base
    from zennit.rules import Epsilon
    from zennit.types import Convolution

    composite = LayerMapComposite(layer_map=layer_map_base() + [
        (Convolution, Epsilon(epsilon=epsilon)), (torch.nn.Linear, Epsilon(epsilon=epsilon))])
    total = None
    for member in members:
        inp = x.clone().requires_grad_(True)
        with composite.context(member) as modified:
            out = modified(inp)
            seed = torch.zeros_like(out).scatter_(1, classes[:, None],
                                                  out.detach().gather(1, classes[:, None]))
            (relevance,) = torch.autograd.grad(out, inp, grad_outputs=seed)
        heat = relevance.sum(1)
        total = heat if total is None else total + heat
    return total / len(members)


def float64_difference(zennit, ens, members, x, classes, n_members=4, n_images=50):
    """Largest relative difference of the two maps in float64 on a subset."""
    n_members = min(n_members, len(members))
    sub = copy.copy(ens)
    sub.params = {k: v[:n_members].double() for k, v in ens.params.items()}
    x64, cls = x[:n_images].double(), classes[:n_images]
    theirs = zennit_loop(zennit, [copy.deepcopy(m).double().eval() for m in members[:n_members]],
                         x64, cls)
    mine = bl.lrp.explain(sub, x64, rule="epsilon", n_samples=n_members, target=cls)
    return float((mine - theirs).abs().max() / theirs.abs().max())


def main() -> None:
    args, x, rate = comparison_setup(__doc__.splitlines()[0], repeats=2)
    zennit = require("zennit")
    rows = []
    for arch in args.archs:
        ens, members = random_ensemble(arch, args.samples)
        classes = ens.predict(x)
        members = [m.eval() for m in members]
        out, times = race({
            "zennit": lambda: zennit_loop(zennit, members, x, classes),
            "ours": lambda: bl.lrp.explain(ens, x, rule="epsilon", n_samples=args.samples)},
            repeats=args.repeats)
        theirs, mine, t_alt, t_ours = out["zennit"], out["ours"], times["zennit"], times["ours"]
        rate = max(rate, matmul_flops_per_second())
        bound = 2 * forward_flops(arch) * args.images * args.samples / rate
        rows.append({"arch": arch, "ours_s": t_ours, "zennit_s": t_alt,
                     "speed_vs_zennit": t_alt / t_ours, "ours_vs_bound": t_ours / bound,
                     "max_rel_diff": float((mine - theirs).abs().max() / theirs.abs().max()),
                     "f64_rel_diff": float64_difference(zennit, ens, members, x, classes)})
    print_rows(rows)


if __name__ == "__main__":
    main()
