"""The HMC driver: warmup adaptation, sampling, checkpoints and resume around the kernel."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..errors import BayesLRPError
from ..fileio import sha256_bytes
from ..progress import progress_bar
from . import checkpoint as ckpt
from .adaptation import DualAveraging, Welford, mass_windows
from .kernel import (MAX_ENERGY_ERROR, PotentialFn, evaluate, find_reasonable_step_size, hmc_step,
                     is_finite)
from .seeds import generator as seeded_generator

MASS_KINDS = ("identity", "diag")


def sample(potential_fn: PotentialFn, init: torch.Tensor, n_samples: int, warmup: int, *,
           steps: int = 10, step_size: float | None = None, target_accept: float = 0.8,
           mass: str = "identity", seed: int = 0, checkpoint: str | Path | None = None,
           progress: bool = False, adapt_step_size: bool = True,
           max_energy_error: float = MAX_ENERGY_ERROR, jitter: float = 0.1,
           description: str = "hmc", checkpoint_every: int = 1,
           checkpoint_seconds: float | None = None) -> tuple[torch.Tensor, dict]:
    """Draw ``n_samples`` HMC samples of a flat parameter vector after ``warmup`` iterations.

    Parameters
    ----------
    potential_fn : callable
        ``potential_fn(q) -> (U, grad)``: the potential energy U(q) = -log density (up to a
        constant; a float or 0-d tensor) and its gradient, shaped like ``q``. Wrap a function that
        returns only a differentiable ``U`` with :func:`bayeslrp.mcmc.with_autograd`.
    init : Tensor
        Initial position, 1-D. Its dtype and device are those of the chain.
    n_samples, warmup : int
        Kept samples, and warmup iterations (adaptation; their positions are discarded).
    steps : int
        Leapfrog steps per iteration, L. Each iteration evaluates exactly L gradients.
    step_size : float, optional
        Initial step size; ``None`` runs Hoffman & Gelman's heuristic (Algorithm 4) from ε = 1.
    target_accept : float
        Target mean acceptance statistic of dual averaging.
    mass : {"identity", "diag"}
        Mass matrix: identity, or diagonal adapted in warmup windows (see
        :mod:`bayeslrp.mcmc.adaptation`).
    seed : int
        Seed of the chain's random stream (momenta, Metropolis uniforms).
    checkpoint : path, optional
        Directory for checkpoints, written after every ``checkpoint_every``-th iteration, when
        ``checkpoint_seconds`` have passed since the last one, and after the last iteration.
        If it already holds a checkpoint made with the same settings, the chain continues from
        it and the result is bit-identical to an uninterrupted run (the iterations since the
        checkpoint are replayed from its saved random state).
    progress : bool
        Show a progress bar on stderr.
    adapt_step_size : bool
        Adapt the step size by dual averaging during warmup (otherwise keep ``step_size``).
    max_energy_error : float
        A trajectory whose energy error exceeds this (or is non-finite) is divergent: rejected
        and counted.
    jitter : float
        Each iteration uses ``ε·(1 + jitter·(2u − 1))``, u ~ U(0, 1) (0 disables): breaks the
        periodic trajectories a fixed ``ε·L`` can fall into in some directions.
    description : str
        Label of the progress bar.
    checkpoint_every : int
        Iterations between checkpoints (0: by time only). Not part of the settings: a chain
        may resume with another interval.
    checkpoint_seconds : float, optional
        Also checkpoint once this many seconds have passed since the last checkpoint.

    Returns
    -------
    samples : Tensor
        ``[n_samples, D]``, on ``init``'s device.
    diagnostics : dict
        ``acceptance_rate`` (mean acceptance statistic over the kept iterations),
        ``accept_fraction``, ``divergences`` / ``warmup_divergences``, ``step_size`` (final),
        ``inv_mass`` (Tensor ``[D]``), ``energy``, ``energy_error``, ``accept_stat``,
        ``step_size_trace`` (Tensors over all iterations, warmup first), ``n_grad``,
        ``wall_seconds``, ``warmup_acceptance_rate``.
    """
    init = _check_arguments(init, n_samples, warmup, steps, step_size, target_accept, mass, jitter)
    if checkpoint_every < 0 or (checkpoint_seconds is not None and not checkpoint_seconds > 0):
        raise BayesLRPError(f"checkpoint_every must be >= 0 and checkpoint_seconds > 0; got "
                            f"{checkpoint_every} and {checkpoint_seconds}")
    settings = {
        "dim": int(init.numel()), "dtype": str(init.dtype), "n_samples": int(n_samples),
        "warmup": int(warmup), "steps": int(steps),
        "step_size": None if step_size is None else float(step_size),
        "target_accept": float(target_accept), "mass": mass, "seed": int(seed),
        "adapt_step_size": bool(adapt_step_size), "max_energy_error": float(max_energy_error),
        "jitter": float(jitter),
        "init_sha256": sha256_bytes(init.detach().cpu().contiguous().numpy().tobytes()),
    }
    directory = Path(checkpoint) if checkpoint is not None else None
    if directory is not None and ckpt.exists(directory):
        state = ckpt.load(directory, settings, init.device)
    else:
        state = _initial_state(potential_fn, init, step_size, target_accept, seed)

    total = warmup + n_samples
    windows = mass_windows(warmup) if mass == "diag" else []
    last_save = time.monotonic()
    with progress_bar(description, total, enabled=progress) as bar:
        bar.advance(state.iteration)
        while state.iteration < total:
            started = time.perf_counter()
            i = state.iteration
            in_warmup = i < warmup
            point, info, n_grad = hmc_step(potential_fn, state.point, state.step_size, steps,
                                           state.inv_mass, state.generator, max_energy_error,
                                           jitter)
            state.point = point
            state.n_grad += n_grad
            for key in ("accept_stat", "accepted", "divergent", "energy", "energy_error"):
                state.trace[key].append(getattr(info, key))
            state.trace["step_size"].append(state.step_size)
            if in_warmup:
                _adapt(state, potential_fn, info.accept_stat, i, warmup, windows,
                       adapt_step_size)
            kept = None if in_warmup else point.q.detach().clone()
            if kept is not None:
                state.samples.append(kept)
            state.iteration += 1
            state.wall_seconds += time.perf_counter() - started
            if directory is not None and _checkpoint_due(state.iteration, total, checkpoint_every,
                                                         checkpoint_seconds, last_save):
                ckpt.save(directory, state, settings)
                last_save = time.monotonic()
            if bar.enabled:
                bar.advance(1, acc=_mean(state.trace["accept_stat"][-20:]), eps=state.step_size,
                            div=sum(state.trace["divergent"]))
    return _result(state, warmup, init)


def _checkpoint_due(iteration: int, total: int, every: int, seconds: float | None,
                    last_save: float) -> bool:
    if iteration == total or (every and iteration % every == 0):
        return True
    return seconds is not None and time.monotonic() - last_save >= seconds


def _adapt(state: ckpt.ChainState, potential_fn, accept_stat: float, i: int, warmup: int,
           windows: list[tuple[int, int]], adapt_step_size: bool) -> None:
    """Warmup iteration ``i`` done: update the step size and, in a window, the mass matrix."""
    if adapt_step_size:
        state.step_size = state.dual.update(accept_stat)
    if any(start <= i < end for start, end in windows):
        state.welford.add(state.point.q)
    if any(i + 1 == end for _, end in windows):
        state.inv_mass = state.welford.regularized_variance().to(state.point.q.dtype)
        state.welford.reset()
        if adapt_step_size:
            state.step_size, spent = find_reasonable_step_size(
                potential_fn, state.point, state.inv_mass, state.generator, state.step_size)
            state.n_grad += spent
            state.dual.restart(state.step_size)
    if i + 1 == warmup and adapt_step_size:
        state.step_size = state.dual.final_step_size


def _check_arguments(init, n_samples, warmup, steps, step_size, target_accept, mass,
                     jitter) -> torch.Tensor:
    if not isinstance(init, torch.Tensor) or init.ndim != 1 or init.numel() == 0:
        raise BayesLRPError("init must be a non-empty 1-D tensor (a flat parameter vector)")
    if not init.is_floating_point():
        raise BayesLRPError(f"init must be floating point; got {init.dtype}")
    if n_samples < 1 or warmup < 0 or steps < 1:
        raise BayesLRPError("n_samples and steps must be >= 1 and warmup >= 0")
    if step_size is not None and not (math.isfinite(step_size) and step_size > 0):
        raise BayesLRPError(f"step_size must be a positive number or None; got {step_size}")
    if not 0 < target_accept < 1:
        raise BayesLRPError(f"target_accept must be in (0, 1); got {target_accept}")
    if not 0 <= jitter < 1:
        raise BayesLRPError(f"jitter must be in [0, 1); got {jitter}")
    if mass not in MASS_KINDS:
        raise BayesLRPError(f"unknown mass matrix {mass!r}; choose one of {', '.join(MASS_KINDS)}")
    return init.detach().clone()


def _initial_state(potential_fn, init, step_size, target_accept, seed) -> ckpt.ChainState:
    generator = seeded_generator(seed, "hmc")
    point = evaluate(potential_fn, init)
    if not is_finite(point):
        raise BayesLRPError("the potential or its gradient is not finite at the initial position; "
                            "start the chain somewhere else")
    inv_mass = torch.ones_like(init)
    n_grad = 1
    if step_size is None:
        step_size, spent = find_reasonable_step_size(potential_fn, point, inv_mass, generator, 1.0)
        n_grad += spent
    return ckpt.ChainState(iteration=0, point=point, step_size=float(step_size), inv_mass=inv_mass,
                           dual=DualAveraging(step_size, target_accept),
                           welford=Welford(init.numel(), device=init.device),
                           generator=generator, n_grad=n_grad)


def _mean(values) -> float:
    return sum(values) / len(values) if values else float("nan")


def _result(state: ckpt.ChainState, warmup: int, init: torch.Tensor) -> tuple[torch.Tensor, dict]:
    trace = state.trace
    kept = slice(warmup, None)
    diagnostics = {
        "acceptance_rate": _mean(trace["accept_stat"][kept]),
        "accept_fraction": _mean([float(a) for a in trace["accepted"][kept]]),
        "divergences": int(sum(trace["divergent"][kept])),
        "warmup_acceptance_rate": _mean(trace["accept_stat"][:warmup]),
        "warmup_divergences": int(sum(trace["divergent"][:warmup])),
        "step_size": float(state.step_size),
        "inv_mass": state.inv_mass.detach().clone(),
        "accept_stat": torch.tensor(trace["accept_stat"], dtype=torch.float64),
        "energy": torch.tensor(trace["energy"], dtype=torch.float64),
        "energy_error": torch.tensor(trace["energy_error"], dtype=torch.float64),
        "step_size_trace": torch.tensor(trace["step_size"], dtype=torch.float64),
        "n_grad": int(state.n_grad),
        "wall_seconds": float(state.wall_seconds),
    }
    samples = torch.stack(state.samples).to(init.device)
    return samples, diagnostics
