"""Bayesian networks by Hamiltonian Monte Carlo (SPEC §3; paper Table IV).

The potential is :class:`~bayeslrp.train.hmc_potential.NetworkPotential` (full-data negative
log-likelihood + Gaussian prior); the sampler is the generic :func:`bayeslrp.mcmc.sample`.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .. import mcmc, nets
from ..ensemble import Ensemble
from ..errors import BayesLRPError
from ..mcmc.seeds import derive_seed, generator as seeded_generator
from .deterministic import deterministic
from .hmc_potential import NetworkPotential
from .loop import check_training_data, training_arrays

MODES = ("full", "blocks", "subset")
INITS = ("map", "random")
DIAGNOSTIC_POINTS = 256
#: Default checkpoint interval of each chain: every 10 iterations or 60 s, whichever comes
#: first (a checkpoint writes O(D) bytes; on a GPU an iteration can take milliseconds).
CHECKPOINT_EVERY = 10
CHECKPOINT_SECONDS = 60.0

#: Paper settings (Table IV; SPEC §3) per dataset, for ``bayeslrp train --method hmc``.
#: ``step_size`` is the initial step size (the paper's 0.5), adapted by dual averaging in warmup.
PAPER_DEFAULTS = {
    "mnist": {"arch": "fc2", "hidden": 512, "n_samples": 100, "warmup": 100, "steps": 10,
              "step_size": 0.5, "prior_std": 1.0, "mode": "full", "init": "map",
              "map_epochs": 15, "mass": "identity", "target_accept": 0.8},
    "fashion_mnist": {"arch": "fc2", "hidden": 1024, "n_samples": 100, "warmup": 100, "steps": 10,
                      "step_size": 0.5, "prior_std": 1.0, "mode": "full", "init": "map",
                      "map_epochs": 15, "mass": "identity", "target_accept": 0.8},
}


def hmc(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, n_samples: int = 100,
        warmup: int = 100, steps: int = 10, step_size: float | None = None,
        prior_std: float = 1.0, mode: str = "full", subset: int | None = None,
        block_size: int = 4000, chains: int = 1, init: str = "map",
        init_params: Ensemble | nn.Module | None = None, map_epochs: int = 15,
        map_lr: float = 1e-3, mass: str = "identity", target_accept: float = 0.8,
        jitter: float = 0.1, seed: int = 0,
        checkpoint_dir: str | Path | None = None, chunk_size: int = 10000,
        diagnostic_x: torch.Tensor | None = None, progress: bool = True,
        device: str | torch.device | None = None, checkpoint_every: int = CHECKPOINT_EVERY,
        checkpoint_seconds: float | None = CHECKPOINT_SECONDS) -> Ensemble:
    """Sample a network's posterior with HMC and return the kept samples as an Ensemble.

    Parameters
    ----------
    net : nn.Module
        A network from :func:`bayeslrp.nets.build` (paper: ``fc2``).
    x, y : Tensor
        Training images ``[N, C, H, W]`` and labels ``[N]``; or a :class:`bayeslrp.data.Dataset` as ``x``.
    n_samples, warmup, steps : int
        Kept samples per chain, warmup iterations per chain, leapfrog steps L (paper: 100, 100,
        10). In ``blocks`` mode ``n_samples`` is the total, shared out over the blocks.
    step_size : float, optional
        Initial step size (paper: 0.5), adapted in warmup; ``None``: Hoffman & Gelman's heuristic.
    prior_std : float
        Prior N(0, prior_std²) on every weight and bias.
    mode : {"full", "blocks", "subset"}
        ``full``: the potential sums over all N points. ``blocks``: the original code's scheme, a
        separate chain on each consecutive block of ``block_size`` points (the last block may be
        shorter), ``n_samples`` shared out as evenly as possible (the first ``n_samples mod B``
        blocks get one more), samples pooled. ``subset``: a seeded random subset of ``subset``
        points.
    chains : int
        Independent chains (``full``/``subset`` only); their samples are pooled and R-hat/ESS of
        the predictive probabilities on ``diagnostic_x`` are reported when ``chains >= 2``.
    init : {"map", "random"}
        ``map``: start from :func:`bayeslrp.train.deterministic` trained ``map_epochs`` epochs on
        the chain's data (one MAP per chain, seeds differ), or from ``init_params`` if given.
        ``random``: chain 0 starts from ``net``'s weights, chain c ≥ 1 from a seeded
        re-initialisation of ``net``.
    mass : {"identity", "diag"}
        Mass matrix (see :func:`bayeslrp.mcmc.sample`).
    target_accept, jitter : float
        Dual-averaging target and step-size jitter (see :func:`bayeslrp.mcmc.sample`).
    seed : int
        Base seed: chain c uses ``derive_seed(seed, "chain", c)`` (block b: ``"block", b``).
    checkpoint_dir : path, optional
        Each chain checkpoints under ``chain-<c>/`` (``block-<b>/``), the MAP starts under
        ``map-<c>/``; rerunning with the same arguments resumes, bit-identically.
    checkpoint_every, checkpoint_seconds
        A chain's checkpoint is written every ``checkpoint_every`` iterations, once
        ``checkpoint_seconds`` have passed, and at its end (:func:`bayeslrp.mcmc.sample`).
    chunk_size : int
        Points per forward/backward chunk of the potential (bounds memory).
    diagnostic_x : Tensor, optional
        Images for R-hat/ESS of the predictive probabilities (default: 256 seeded training
        images).
    progress : bool
        Show progress bars.
    device : str, optional
        Where to compute (default: where ``x`` is).

    Returns
    -------
    Ensemble
        The pooled samples (interleaved: sample k of every chain/block before sample k + 1),
        ``meta["method"] == "hmc"`` with acceptance, divergences, step sizes, wall time and, for
        several chains, R-hat and ESS.
    """
    started = time.perf_counter()
    x, y = training_arrays(x, y)
    check_training_data(x, y)
    _check(mode, init, chains, subset, block_size, n_samples, x.shape[0], map_epochs)
    device = torch.device(device or x.device)
    x, y = x.to(device), y.to(device)
    template = copy.deepcopy(net).to(device).eval()
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None

    jobs = _jobs(mode, x, y, n_samples, chains, subset, block_size, seed)
    results, maps = [], {}
    for job in jobs:
        potential = NetworkPotential(template, job["x"], job["y"], prior_std, chunk_size)
        start = _start(template, potential, job, init, init_params, map_epochs, map_lr, seed,
                       directory, progress, device, maps)
        sub = None if directory is None else directory / job["name"]
        draws, diag = mcmc.sample(potential, start, job["n_samples"], warmup, steps=steps,
                                  step_size=step_size, target_accept=target_accept, mass=mass,
                                  jitter=jitter, seed=job["seed"], checkpoint=sub,
                                  progress=progress, checkpoint_every=checkpoint_every,
                                  checkpoint_seconds=checkpoint_seconds,
                                  description=f"hmc {job['name']}")
        results.append((job, draws, diag))

    potential = NetworkPotential(template, x[:1], y[:1], prior_std, chunk_size)
    pooled = _interleave([draws for _, draws, _ in results])
    states = [potential.state_dict(q) for q in pooled]
    params = {name: torch.stack([s[name] for s in states]) for name in states[0]}
    meta = _meta(results, mode, chains, n_samples, warmup, steps, step_size, prior_std, init,
                 map_epochs, mass, target_accept, jitter, seed, subset, block_size, x.shape[0],
                 chunk_size, time.perf_counter() - started)
    ens = Ensemble(nets.spec_of(net), params, meta=meta)
    if chains >= 2:
        xd = diagnostic_x if diagnostic_x is not None else _diagnostic_points(x, seed)
        ens.meta["diagnostics"] = predictive_diagnostics(
            [draws for _, draws, _ in results], potential, xd.to(device))
    return ens


def predictive_diagnostics(chain_draws: Sequence[torch.Tensor], potential: NetworkPotential,
                           x: torch.Tensor) -> dict:
    """R-hat (rank-normalised split) and bulk ESS of the predictive probabilities on ``x``.

    ``chain_draws``: one ``[n, D]`` tensor per chain (same n). Returns max/median R-hat and
    min/median ESS over all (image, class) probabilities.
    """
    n = min(d.shape[0] for d in chain_draws)
    probs = []
    with torch.no_grad():
        for draws in chain_draws:
            per_chain = [torch.func.functional_call(potential.net, (potential.unflatten(q),
                                                                    potential.buffers), (x,))
                         .softmax(-1) for q in draws[:n]]
            probs.append(torch.stack(per_chain))
    arr = torch.stack(probs).cpu().numpy()  # [chains, n, B, C]
    r = np.asarray(mcmc.rhat(arr), dtype=float)
    e = np.asarray(mcmc.ess_bulk(arr), dtype=float)

    def finite(values: np.ndarray, reduce) -> float:
        # Constant probabilities (or very short chains) give NaN for every entry: report NaN.
        values = values[np.isfinite(values)]
        return float(reduce(values)) if values.size else float("nan")

    return {"rhat_max": finite(r, np.max), "rhat_median": finite(r, np.median),
            "ess_bulk_min": finite(e, np.min), "ess_bulk_median": finite(e, np.median),
            "rhat_kind": "rank-normalised split-R-hat (Vehtari et al. 2021)",
            "n_points": int(x.shape[0]), "draws_per_chain": int(n), "chains": len(chain_draws)}


def _check(mode, init, chains, subset, block_size, n_samples, n_data, map_epochs) -> None:
    if mode not in MODES:
        raise BayesLRPError(f"unknown HMC mode {mode!r}; choose one of {', '.join(MODES)}")
    if init not in INITS:
        raise BayesLRPError(f"unknown HMC init {init!r}; choose one of {', '.join(INITS)}")
    if chains < 1:
        raise BayesLRPError(f"chains must be >= 1; got {chains}")
    if mode == "subset" and (subset is None or not 1 <= subset <= n_data):
        raise BayesLRPError(f"mode 'subset' needs subset between 1 and {n_data}; got {subset}")
    if mode == "blocks":
        if chains != 1:
            raise BayesLRPError("mode 'blocks' runs one chain per block: leave chains at 1")
        if block_size < 1:
            raise BayesLRPError(f"block_size must be >= 1; got {block_size}")
        n_blocks = -(-n_data // block_size)
        if n_samples < n_blocks:
            raise BayesLRPError(f"mode 'blocks' has {n_blocks} blocks: ask for at least that many "
                                f"samples (got n_samples={n_samples})")
    if init == "map" and map_epochs < 1:
        raise BayesLRPError(f"map_epochs must be >= 1; got {map_epochs}")


def _jobs(mode, x, y, n_samples, chains, subset, block_size, seed) -> list[dict]:
    if mode == "blocks":
        n_blocks = -(-x.shape[0] // block_size)
        base, extra = divmod(n_samples, n_blocks)
        return [{"name": f"block-{b}", "index": b, "seed": derive_seed(seed, "block", b),
                 "x": x[b * block_size:(b + 1) * block_size],
                 "y": y[b * block_size:(b + 1) * block_size],
                 "n_samples": base + (1 if b < extra else 0), "map_key": 0, "map_x": x,
                 "map_y": y} for b in range(n_blocks)]
    if mode == "subset":
        idx = torch.randperm(x.shape[0], generator=seeded_generator(seed, "subset"))[:subset]
        idx = idx.sort().values.to(x.device)
        xs, ys = x[idx], y[idx]
    else:
        xs, ys = x, y
    return [{"name": f"chain-{c}", "index": c, "seed": derive_seed(seed, "chain", c), "x": xs,
             "y": ys, "n_samples": n_samples, "map_key": c, "map_x": xs, "map_y": ys}
            for c in range(chains)]


def _start(template, potential, job, init, init_params, map_epochs, map_lr, seed, directory,
           progress, device, maps: dict) -> torch.Tensor:
    c = job["index"]
    if init_params is not None:
        module = init_params.sample_module(0) if isinstance(init_params, Ensemble) else init_params
        return potential.flatten(module)
    if init == "random":
        if c == 0:
            return potential.flatten(template)
        # drawn on the CPU from the CPU generator (fork_rng restores it): the same start on
        # every device, and no CUDA generator reseeded behind the caller's back
        module = copy.deepcopy(template).cpu()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(derive_seed(seed, "init", c))
            for m in module.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        return potential.flatten(module)
    key = job["map_key"]
    if key not in maps:
        maps[key] = _train_map(template, job["map_x"], job["map_y"], key, map_epochs, map_lr, seed,
                               directory, progress, device)
    return potential.flatten(maps[key].sample_module(0))


def _train_map(template, x, y, key, map_epochs, map_lr, seed, directory, progress, device):
    """The deterministic (MAP-like) start, cached under ``checkpoint_dir/map-<key>``."""
    map_seed = derive_seed(seed, "map", key) % 2**31
    cache = None if directory is None else directory / f"map-{key}"
    if cache is not None and (cache / "ensemble.json").is_file():
        ens = Ensemble.load(cache, device=device)
        if (ens.meta.get("epochs") != map_epochs or ens.meta.get("seed") != map_seed
                or ens.meta.get("lr") != map_lr):
            raise BayesLRPError(f"{cache} holds a MAP start made with other settings; use a new "
                                "checkpoint directory")
        return ens
    ens = deterministic(template, x, y, epochs=map_epochs, lr=map_lr, seed=map_seed,
                        progress=progress, device=device)
    if cache is not None:
        ens.save(cache)
    return ens


def _interleave(chains: list[torch.Tensor]) -> list[torch.Tensor]:
    longest = max(d.shape[0] for d in chains)
    return [d[k] for k in range(longest) for d in chains if k < d.shape[0]]


def _diagnostic_points(x: torch.Tensor, seed: int) -> torch.Tensor:
    n = min(DIAGNOSTIC_POINTS, x.shape[0])
    idx = torch.randperm(x.shape[0], generator=seeded_generator(seed, "diagnostic"))[:n]
    return x[idx.to(x.device)]


def _meta(results, mode, chains, n_samples, warmup, steps, step_size, prior_std, init, map_epochs,
          mass, target_accept, jitter, seed, subset, block_size, n_data, chunk_size, wall) -> dict:
    per_chain = [{
        "name": job["name"], "n_samples": int(draws.shape[0]), "n_data": int(job["x"].shape[0]),
        "acceptance_rate": diag["acceptance_rate"], "accept_fraction": diag["accept_fraction"],
        "divergences": diag["divergences"], "warmup_divergences": diag["warmup_divergences"],
        "warmup_acceptance_rate": diag["warmup_acceptance_rate"], "step_size": diag["step_size"],
        "n_grad": diag["n_grad"], "wall_seconds": diag["wall_seconds"],
        "ebfmi": mcmc.ebfmi(diag["energy"][warmup:]) if draws.shape[0] > 2 else None,
    } for job, draws, diag in results]
    kept = sum(c["n_samples"] for c in per_chain)
    return {
        "method": "hmc", "mode": mode, "chains": chains, "n_samples": n_samples,
        "warmup": warmup, "steps": steps, "initial_step_size": step_size, "prior_std": prior_std,
        "init": init, "map_epochs": map_epochs if init == "map" else None, "mass": mass,
        "target_accept": target_accept, "jitter": jitter, "seed": seed, "subset": subset,
        "block_size": block_size if mode == "blocks" else None, "n_train": n_data,
        "chunk_size": chunk_size,
        "acceptance_rate": sum(c["acceptance_rate"] * c["n_samples"] for c in per_chain) / kept,
        "divergences": sum(c["divergences"] for c in per_chain),
        "step_size": [c["step_size"] for c in per_chain],
        "wall_seconds": wall, "per_chain": per_chain,
    }
