"""The HMC transition: leapfrog integration and a Metropolis correction (no adaptation here).

A potential function maps a flat position ``q`` (1-D tensor) to ``(U, grad U)``. The kernel keeps
the gradient at the end of each trajectory, so one iteration of ``L`` leapfrog steps costs exactly
``L`` gradient evaluations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import BayesLRPError

PotentialFn = Callable[[torch.Tensor], "tuple[torch.Tensor | float, torch.Tensor]"]
MAX_ENERGY_ERROR = 1000.0


@dataclass
class Point:
    """A position with its potential energy and gradient."""

    q: torch.Tensor
    potential: float
    grad: torch.Tensor


@dataclass
class StepInfo:
    """What one HMC iteration did."""

    accept_stat: float   # min(1, exp(-ΔH)); 0 for a divergent trajectory
    accepted: bool
    divergent: bool
    energy: float        # Hamiltonian of the state kept (proposal if accepted, else start)
    energy_error: float  # H(proposal) - H(start); inf when the trajectory diverged to non-finite


def with_autograd(potential: Callable[[torch.Tensor], torch.Tensor]) -> PotentialFn:
    """Turn a potential that returns only ``U(q)`` (a differentiable scalar) into ``(U, grad)``.

    Examples
    --------
    >>> fn = with_autograd(lambda q: 0.5 * (q ** 2).sum())
    >>> u, g = fn(torch.ones(3))
    """
    def potential_and_grad(q: torch.Tensor):
        leaf = q.detach().requires_grad_(True)
        with torch.enable_grad():
            u = potential(leaf)
            (grad,) = torch.autograd.grad(u, leaf)
        return u.detach(), grad

    return potential_and_grad


def evaluate(potential_fn: PotentialFn, q: torch.Tensor) -> Point:
    """Call ``potential_fn`` at ``q`` and check its answer's shape."""
    answer = potential_fn(q)
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        got = (f"a tensor of shape {tuple(answer.shape)}" if isinstance(answer, torch.Tensor)
               else type(answer).__name__)
        raise BayesLRPError(f"potential_fn must return (U, grad U); it returned {got}. For a "
                            f"function returning only U, pass bl.mcmc.with_autograd(fn)")
    u, grad = answer
    if not isinstance(grad, torch.Tensor):
        raise BayesLRPError(f"potential_fn returned a gradient of type {type(grad).__name__}; "
                            f"it must return (U, grad U) with grad a tensor shaped like q")
    grad = grad.detach()
    if grad.shape != q.shape:
        raise BayesLRPError(
            f"potential_fn returned a gradient of shape {tuple(grad.shape)} for a position of "
            f"shape {tuple(q.shape)}; it must return (U, grad U) with grad shaped like q")
    return Point(q.detach(), float(u), grad)


def is_finite(point: Point) -> bool:
    return math.isfinite(point.potential) and bool(torch.isfinite(point.grad).all())


def draw_momentum(inv_mass: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """p ~ N(0, M) with M = diag(1 / inv_mass); drawn on the CPU so results do not depend on device."""
    z = torch.randn(inv_mass.shape, generator=generator, dtype=inv_mass.dtype)
    return z.to(inv_mass.device) / inv_mass.sqrt()


def kinetic(p: torch.Tensor, inv_mass: torch.Tensor) -> float:
    return 0.5 * float((inv_mass * p * p).sum())


def leapfrog(potential_fn: PotentialFn, start: Point, p: torch.Tensor, step_size: float,
             steps: int, inv_mass: torch.Tensor) -> tuple[Point, torch.Tensor, int, bool]:
    """Integrate ``steps`` leapfrog steps from ``(start, p)``.

    Returns the end point, end momentum, the number of gradients evaluated, and whether the
    trajectory stopped early on a non-finite potential or gradient.
    """
    p = p - 0.5 * step_size * start.grad
    point = start
    for i in range(steps):
        q = point.q + step_size * inv_mass * p
        point = evaluate(potential_fn, q)
        if not is_finite(point):
            return point, p, i + 1, True
        p = p - (step_size if i < steps - 1 else 0.5 * step_size) * point.grad
    return point, p, steps, False


def hmc_step(potential_fn: PotentialFn, current: Point, step_size: float, steps: int,
             inv_mass: torch.Tensor, generator: torch.Generator,
             max_energy_error: float = MAX_ENERGY_ERROR,
             jitter: float = 0.0) -> tuple[Point, StepInfo, int]:
    """One HMC iteration: fresh momentum, ``steps`` leapfrog steps, Metropolis accept/reject.

    With ``jitter`` > 0 the iteration's step size is ``step_size·(1 + jitter·(2u − 1))``, u uniform
    (Neal 2011, §5.4.2.2): a random step size independent of the state keeps detailed balance and
    breaks the periodic trajectories a fixed ``ε·L`` can fall into.

    A trajectory whose potential or gradient becomes non-finite, or whose energy error exceeds
    ``max_energy_error``, is divergent: it is rejected and reported. The uniform for the
    Metropolis test is always drawn, so the random stream does not depend on the outcome.

    Returns the next point, the step's info and the number of gradients evaluated.
    """
    if jitter > 0:
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        step_size = step_size * (1.0 + jitter * (2.0 * u - 1.0))
    p0 = draw_momentum(inv_mass, generator)
    h0 = current.potential + kinetic(p0, inv_mass)
    end, p1, n_grad, stopped = leapfrog(potential_fn, current, p0, step_size, steps, inv_mass)
    h1 = math.inf if stopped else end.potential + kinetic(p1, inv_mass)
    energy_error = h1 - h0 if math.isfinite(h1) else math.inf
    divergent = stopped or not math.isfinite(energy_error) or energy_error > max_energy_error
    accept_stat = 0.0 if divergent else min(1.0, math.exp(-energy_error))
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    accepted = (not divergent) and u < accept_stat
    nxt = end if accepted else current
    info = StepInfo(accept_stat=accept_stat, accepted=accepted, divergent=divergent,
                    energy=h1 if accepted else h0, energy_error=energy_error)
    return nxt, info, n_grad


def find_reasonable_step_size(potential_fn: PotentialFn, current: Point, inv_mass: torch.Tensor,
                              generator: torch.Generator, step_size: float = 1.0,
                              max_doublings: int = 100) -> tuple[float, int]:
    """Hoffman & Gelman (2014), Algorithm 4: double or halve ε until the one-step acceptance
    probability crosses 1/2.

    Returns the step size and the number of gradients spent.
    """
    p0 = draw_momentum(inv_mass, generator)
    h0 = current.potential + kinetic(p0, inv_mass)

    def log_accept(eps: float) -> float:
        end, p1, _, stopped = leapfrog(potential_fn, current, p0, eps, 1, inv_mass)
        if stopped:
            return -math.inf
        delta = h0 - (end.potential + kinetic(p1, inv_mass))
        return delta if math.isfinite(delta) else -math.inf

    log_half = math.log(0.5)
    n_grad = 1
    la = log_accept(step_size)
    direction = 1 if la > log_half else -1
    for _ in range(max_doublings):
        if (direction == 1 and not la > log_half) or (direction == -1 and not la < log_half):
            return step_size, n_grad
        step_size *= 2.0 ** direction
        la = log_accept(step_size)
        n_grad += 1
    if direction == -1:
        raise BayesLRPError(
            f"no usable HMC step size: the acceptance stays below 1/2 down to ε={step_size:.3g}; "
            "check that the potential is smooth and finite near the initial position")
    return step_size, n_grad
