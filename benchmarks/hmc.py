"""HMC cost: time per iteration vs L × (one full-batch gradient), and vs Pyro's HMC kernel.

All times are measured in this same run, as CPU time of this process (``time.process_time``,
one thread) so that other processes on a shared machine distort them less; each number is the
best of ``--repeats`` interleaved measurements. The target is ``iteration / (L × gradient) <=
1.15``: the sampler adds little beyond its L gradient evaluations (it reuses the gradient at the
end of each trajectory).

Pyro is a benchmark-only dependency (``pip install --no-deps pyro-ppl pyro-api opt_einsum tqdm``);
without it that comparison is skipped.

Run: ``.venv/bin/python benchmarks/hmc.py [--hidden 128 --n-train 10000 --steps 10]``;
``--paper`` uses the paper's size (fc2 H=512 on 60k MNIST).
"""
from __future__ import annotations

import argparse
import time

import torch

import bayeslrp as bl
from _common import machine
from bayeslrp.train.hmc_potential import NetworkPotential

STEP_SIZE = 1e-4  # fixed and small: every proposal is a full, finite trajectory


def cpu_seconds(fn) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def ours_iteration(potential_fn, q, steps: int, iters: int, t_grad: float, seed: int) -> float:
    """CPU seconds of one iteration of bl.mcmc.sample (its initial gradient subtracted)."""
    total = cpu_seconds(lambda: bl.mcmc.sample(potential_fn, q, n_samples=iters, warmup=0,
                                               steps=steps, step_size=STEP_SIZE, seed=seed))
    return (total - t_grad) / iters


def pyro_kernel(scalar_fn, q, steps: int):
    try:
        from pyro.infer.mcmc import HMC
    except ImportError:
        return None
    kernel = HMC(potential_fn=lambda params: scalar_fn(params["w"]), step_size=STEP_SIZE,
                 num_steps=steps, adapt_step_size=False, adapt_mass_matrix=False)
    kernel.initial_params = {"w": q.clone()}
    kernel.setup(warmup_steps=0)  # evaluates the initial gradient (untimed)
    return kernel


def pyro_iteration(kernel, q, iters: int) -> float:
    params = {"w": q.clone()}

    def run():
        nonlocal params
        for _ in range(iters):
            params = kernel.sample(params)
    return cpu_seconds(run) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--iters", type=int, default=3, help="HMC iterations per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paper", action="store_true", help="fc2 H=512 on all 60k points")
    parser.add_argument("--no-pyro", action="store_true")
    args = parser.parse_args()
    if args.paper:
        args.hidden, args.n_train = 512, 60000
    torch.set_num_threads(1)
    x, y = bl.data.load("mnist", "train")
    x, y = x[:args.n_train], y[:args.n_train]
    net = bl.nets.build("fc2", hidden=args.hidden)
    potential = NetworkPotential(net, x, y, chunk_size=10000)
    q = potential.flatten(net)

    def scalar(w: torch.Tensor) -> torch.Tensor:  # the same potential as one autograd graph
        out = torch.func.functional_call(potential.net, (potential.unflatten(w), potential.buffers),
                                         (x,))
        nll = torch.nn.functional.cross_entropy(out, y, reduction="sum")
        return nll + 0.5 * (w ** 2).sum() / potential.prior_var

    auto = bl.mcmc.with_autograd(scalar)
    kernel = None if args.no_pyro else pyro_kernel(scalar, q, args.steps)
    potential(q)  # warm-up
    best = {"grad": float("inf"), "grad_auto": float("inf"), "ours": float("inf"),
            "ours_auto": float("inf"), "pyro": float("inf")}
    for r in range(args.repeats):
        best["grad"] = min(best["grad"], cpu_seconds(lambda: potential(q)))
        best["grad_auto"] = min(best["grad_auto"], cpu_seconds(lambda: auto(q)))
        best["ours"] = min(best["ours"], ours_iteration(potential, q, args.steps, args.iters,
                                                        best["grad"], r))
        if kernel is not None:
            best["ours_auto"] = min(best["ours_auto"], ours_iteration(
                auto, q, args.steps, args.iters, best["grad_auto"], r))
            best["pyro"] = min(best["pyro"], pyro_iteration(kernel, q, args.iters))

    print(f"machine: {machine()}; CPU seconds of this process, best of {args.repeats}")
    print(f"fc2 H={args.hidden}, N={args.n_train}, D={potential.dim}, L={args.steps}")
    print(f"one full-batch gradient (chunked potential)     {best['grad']:8.3f} s")
    print(f"one HMC iteration (ours)                        {best['ours']:8.3f} s")
    print(f"iteration / (L x gradient)                      "
          f"{best['ours'] / (args.steps * best['grad']):8.3f}   (target <= 1.15)")
    if args.no_pyro:
        return
    if kernel is None:
        print("Pyro is unavailable (pip install --no-deps pyro-ppl pyro-api opt_einsum tqdm): "
              "comparison skipped")
        return
    print(f"one full-batch gradient (autograd potential)    {best['grad_auto']:8.3f} s")
    print(f"one HMC iteration, ours, autograd potential     {best['ours_auto']:8.3f} s")
    print(f"one HMC iteration, Pyro HMC, same potential     {best['pyro']:8.3f} s")
    print(f"Pyro / ours (same potential)                    {best['pyro'] / best['ours_auto']:8.3f}")


if __name__ == "__main__":
    main()
