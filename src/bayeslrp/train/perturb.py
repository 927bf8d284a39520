"""Single-network FGSM and PGD used to make adversarial training batches.

The general attacks on ensembles live in :mod:`bayeslrp.attacks`; these are the plain versions
adversarial training needs on its current model.
"""
from __future__ import annotations

import torch
from torch import nn


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
              bounds: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """``clamp(x + eps * sign(grad_x CE), lo, hi)`` (``bounds``, default [0, 1])."""
    lo, hi = bounds
    return (x + eps * _input_gradient(model, x, y).sign()).clamp(lo, hi).detach()


def pgd_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
              alpha: float, generator: torch.Generator,
              bounds: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Madry's PGD: uniform start in the eps-ball, signed steps, projection, clamp to
    ``bounds`` (default [0, 1])."""
    lo, hi = bounds
    noise = torch.rand(x.shape, generator=generator).to(x.device) * 2 - 1
    x_adv = (x + eps * noise).clamp(lo, hi)
    for _ in range(steps):
        x_adv = x_adv + alpha * _input_gradient(model, x_adv, y).sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(lo, hi)
    return x_adv.detach()
