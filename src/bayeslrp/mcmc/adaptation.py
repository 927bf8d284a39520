"""Warmup adaptation: dual-averaging step size and a windowed diagonal mass matrix.

Step size: Nesterov dual averaging as in Hoffman & Gelman (2014), §3.2, with their constants
γ = 0.05, t0 = 10, κ = 0.75 and μ = log(10 ε0). The final step size is the averaged iterate ε̄.

Mass matrix (``mass="diag"``): Stan's windowed scheme. The warmup is split into an initial fast
interval (75 iterations, step size only), slow windows that start at 25 iterations and double in
length (the variance of the positions visited in a window becomes the new inverse mass, shrunk
towards 1e-3 as ``n/(n+5)·var + 1e-3·5/(n+5)``; the step size is re-initialised and dual averaging
restarts after each), and a terminal fast interval (50 iterations). Warmups shorter than
75 + 25 + 50 use 15 % / 75 % / 10 % instead; under 20 iterations the mass is not adapted.
"""
from __future__ import annotations

import math

import torch

GAMMA, T0, KAPPA = 0.05, 10.0, 0.75
INIT_BUFFER, TERM_BUFFER, BASE_WINDOW = 75, 50, 25


class DualAveraging:
    """Step-size adaptation towards a target mean acceptance statistic."""

    def __init__(self, step_size: float, target: float = 0.8):
        self.target = float(target)
        self.restart(step_size)

    def restart(self, step_size: float) -> None:
        self.mu = math.log(10.0 * step_size)
        self.t = 0
        self.h_bar = 0.0
        self.log_step = math.log(step_size)
        self.log_step_bar = 0.0

    def update(self, accept_stat: float) -> float:
        """Record one iteration's acceptance statistic; return the next step size to use."""
        self.t += 1
        w = 1.0 / (self.t + T0)
        self.h_bar = (1.0 - w) * self.h_bar + w * (self.target - accept_stat)
        self.log_step = self.mu - math.sqrt(self.t) / GAMMA * self.h_bar
        eta = self.t ** (-KAPPA)
        self.log_step_bar = eta * self.log_step + (1.0 - eta) * self.log_step_bar
        return math.exp(self.log_step)

    @property
    def final_step_size(self) -> float:
        """The averaged step size ε̄ used after warmup."""
        return math.exp(self.log_step_bar) if self.t else math.exp(self.log_step)

    def state_dict(self) -> dict:
        return {"target": self.target, "mu": self.mu, "t": self.t, "h_bar": self.h_bar,
                "log_step": self.log_step, "log_step_bar": self.log_step_bar}

    def load_state_dict(self, state: dict) -> None:
        self.target, self.mu, self.t = float(state["target"]), float(state["mu"]), int(state["t"])
        self.h_bar, self.log_step = float(state["h_bar"]), float(state["log_step"])
        self.log_step_bar = float(state["log_step_bar"])


class Welford:
    """Running mean and variance of vectors (Welford's algorithm), in float64."""

    def __init__(self, dim: int, device: torch.device | str = "cpu"):
        self.n = 0
        self.mean = torch.zeros(dim, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(dim, dtype=torch.float64, device=device)

    def reset(self) -> None:
        self.n = 0
        self.mean.zero_()
        self.m2.zero_()

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().to(self.mean)
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def regularized_variance(self) -> torch.Tensor:
        """Stan's shrunk sample variance: ``n/(n+5)·var + 1e-3·5/(n+5)``."""
        n = self.n
        var = self.m2 / max(n - 1, 1)
        return (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))


def mass_windows(warmup: int) -> list[tuple[int, int]]:
    """Slow adaptation windows ``[(start, end), …]`` (warmup iteration indices, end exclusive)."""
    if warmup < 20:
        return []
    init, term, base = INIT_BUFFER, TERM_BUFFER, BASE_WINDOW
    if init + term + base > warmup:
        init, term = int(0.15 * warmup), int(0.1 * warmup)
        base = warmup - init - term
    windows = []
    start, size, stop = init, base, warmup - term
    while start < stop:
        end = start + size
        if end + 2 * size > stop:  # the next window would not fit: stretch this one to the end
            end = stop
        windows.append((start, end))
        start, size = end, 2 * size
    return windows
