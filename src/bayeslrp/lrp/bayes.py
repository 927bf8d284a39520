"""Bayesian explanation: mean and standard deviation of heatmaps over posterior samples.

The mean over the first n samples is the Bayesian explanation (paper II-C / IV-A.b). The
per-pixel standard deviation is the spread of the per-sample heatmaps around that mean,
``sqrt(Σ_j (R_j − R̄)² / n)`` (population form: n, not n − 1, so one sample gives 0).
Heatmaps arrive in chunks of samples; the running mean and sum of squared deviations are merged
with Chan et al.'s pairwise update, which is exact and differentiable.
"""
from __future__ import annotations

import torch


class MeanStd:
    """Running mean and sum of squared deviations over the leading (sample) axis."""

    def __init__(self, with_std: bool = True):
        self.with_std = with_std
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, chunk: torch.Tensor) -> None:
        """Merge heatmaps ``[s, ...]`` of s further samples."""
        n_b = chunk.shape[0]
        mean_b = chunk.mean(0)
        m2_b = ((chunk - mean_b) ** 2).sum(0) if self.with_std else None
        if self.mean is None:
            self.count, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n_a = self.count
        total = n_a + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / total)
        if self.with_std:
            self.m2 = self.m2 + m2_b + delta ** 2 * (n_a * n_b / total)
        self.count = total

    def add_sum(self, total: torch.Tensor, count: int) -> None:
        """Merge the *sum* of ``count`` further heatmaps (mean only: no spread information)."""
        if self.with_std:
            raise ValueError("add_sum carries no spread; use add() when the std is wanted")
        if self.mean is None:
            self.count, self.mean = count, total / count
            return
        self.count += count
        self.mean = self.mean + (total - self.mean * count) / self.count

    def std(self) -> torch.Tensor:
        """Population standard deviation (divides by the sample count)."""
        if not self.with_std:
            raise ValueError("this accumulator was made with with_std=False")
        var = self.m2 / self.count
        # sqrt has an infinite derivative at 0; keep gradients finite where all samples agree
        return torch.where(var > 0, var.clamp(min=torch.finfo(var.dtype).tiny).sqrt(),
                           torch.zeros_like(var))


def mean_std(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std over the sample axis of ``[S, B, H, W]`` heatmaps."""
    acc = MeanStd()
    acc.add(heatmaps)
    return acc.mean, acc.std()
