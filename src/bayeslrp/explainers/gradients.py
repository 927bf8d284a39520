"""Gradient explainers: ``gradient``, ``grad_x_input``, ``integrated_gradients``.

Each explains the unit of :mod:`bayeslrp.explainers.core` (the class logit at the output
layer, the most active unit / channel at an inner layer), per posterior sample, and sums the
attribution over input channels (as LRP does).

- ``gradient``: ``∂u/∂x`` (signed; ``absolute=True``: ``Σ_c |∂u/∂x_c|``, the saliency map of
  Simonyan et al. 2014).
- ``grad_x_input``: ``x ⊙ ∂u/∂x`` (equals LRP-0 on a bias-free ReLU network).
- ``integrated_gradients`` (Sundararajan et al. 2017): ``(x − x₀) ⊙ ∫₀¹ ∂u/∂x(x₀ + α(x − x₀)) dα``
  with the integral as a Riemann midpoint sum over ``steps`` = m points ``α = (k − ½)/m``
  (default) or the trapezoid rule on ``α = k/m``, k = 0 … m. Baseline ``x₀``: ``"zero"``, the
  data's lower bound (``"lower"``: ``bounds[0]``), a constant, or a tensor (library calls).
  The explained unit is the one of ``x`` at every point of the path. Completeness:
  ``Σ_p IG_p ≈ u(x) − u(x₀)``.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from ..errors import BayesLRPError
from ..plugins.spec import PosInt, StrictSpec
from .base import StackMethod, validated
from .registry import EXPLAINERS

__all__ = ["Gradient", "GradTimesInput", "IntegratedGradients", "path_points"]

Bounds = Annotated[tuple[float, float], Field(strict=False)]


class GradientParams(StrictSpec):
    absolute: bool = False


class IGParams(StrictSpec):
    baseline: Union[Literal["zero", "lower"], float] = "zero"
    steps: PosInt = 50
    method: Literal["riemann_midpoint", "trapezoid"] = "riemann_midpoint"
    bounds: Bounds = (0.0, 1.0)


def _sliced(index, sl):
    return None if index is None else index[:, sl]


def _refuse_seed_one(name: str, seed: str) -> None:
    if seed == "one":
        raise ValueError(f"explainer {name!r} explains the unit's value; output_seed 'one' is "
                         "an LRP relevance initialisation (use 'logit')")


class _GradientBase(StackMethod):
    def check_settings(self, params, seed):
        _refuse_seed_one(self.name, seed)

    def _attribution(self, grad, x, spec):
        raise NotImplementedError

    def stack_heatmaps(self, stack, x, explainer, index, *, create_graph, surrogate_beta):
        import torch

        from .core import GradJob

        spec, _ = validated(type(self), explainer.params)
        job = GradJob(stack, explainer, surrogate_beta)
        out = []
        for sl in job.chunks(x, 1, create_graph):
            grad, _ = job.gradients(x[sl], _sliced(index, sl), create_graph)
            out.append(self._attribution(grad, x[sl].to(grad.dtype), spec).sum(2))
        return torch.cat(out, dim=1)


@EXPLAINERS.register
class Gradient(_GradientBase):
    """The gradient of the explained unit (signed, or ``absolute=True``)."""

    name = "gradient"
    Params = GradientParams

    def _attribution(self, grad, x, spec):
        return grad.abs() if spec.absolute else grad


@EXPLAINERS.register
class GradTimesInput(_GradientBase):
    """Gradient × input."""

    name = "grad_x_input"

    def _attribution(self, grad, x, spec):
        return grad * x


def path_points(steps: int, method: str, dtype=None):
    """``(α, w)``: the points on [0, 1] and weights of the path integral's quadrature."""
    import torch

    dtype = torch.float64 if dtype is None else dtype
    m = int(steps)
    if method == "riemann_midpoint":
        alpha = (torch.arange(m, dtype=torch.float64) + 0.5) / m
        weight = torch.full((m,), 1.0 / m, dtype=torch.float64)
    elif method == "trapezoid":
        alpha = torch.arange(m + 1, dtype=torch.float64) / m
        weight = torch.full((m + 1,), 1.0 / m, dtype=torch.float64)
        weight[0] = weight[-1] = 0.5 / m
    else:
        raise BayesLRPError(f"unknown integration method {method!r}; choose riemann_midpoint "
                            "or trapezoid")
    return alpha.to(dtype), weight.to(dtype)


def _baseline(spec, tensors, x):
    import torch

    if "baseline" in tensors:
        b = tensors["baseline"].to(device=x.device, dtype=x.dtype)
        try:
            return torch.broadcast_to(b, x.shape)
        except RuntimeError:
            raise BayesLRPError(f"baseline of shape {tuple(b.shape)} does not fit images "
                                f"{tuple(x.shape)}") from None
    if spec.baseline == "zero":
        return torch.zeros_like(x)
    value = spec.bounds[0] if spec.baseline == "lower" else float(spec.baseline)
    return torch.full_like(x, value)


@EXPLAINERS.register
class IntegratedGradients(StackMethod):
    """Integrated gradients along the straight path from a baseline."""

    name = "integrated_gradients"
    Params = IGParams

    def check_settings(self, params, seed):
        _refuse_seed_one(self.name, seed)

    def stack_heatmaps(self, stack, x, explainer, index, *, create_graph, surrogate_beta):
        import torch

        from .core import CHUNK_BYTES, GradJob, pair_bytes

        spec, tensors = validated(type(self), explainer.params, ("baseline",))
        job = GradJob(stack, explainer, surrogate_beta)
        x = x.to(device=stack.device, dtype=stack.dtype)
        x0 = _baseline(spec, tensors, x)
        alpha, weight = path_points(spec.steps, spec.method, x.dtype)
        alpha, weight = alpha.to(x.device), weight.to(x.device)
        k_all = alpha.numel()
        s_pass = job.contexts[0][0].stop - job.contexts[0][0].start  # samples per pass
        pairs = max(1, CHUNK_BYTES // max(1, pair_bytes(job.nodes, x, job.params, create_graph)
                                          * s_pass))
        b_step, k_step = (max(1, pairs // k_all), k_all) if k_all <= pairs else (1, pairs)
        out = []
        for b0 in range(0, x.shape[0], b_step):
            sl = slice(b0, min(x.shape[0], b0 + b_step))
            delta = x[sl] - x0[sl]
            total = None
            for k0 in range(0, k_all, k_step):
                a, w = alpha[k0:k0 + k_step], weight[k0:k0 + k_step]
                k, b = a.numel(), delta.shape[0]
                points = (x0[sl].unsqueeze(0) + a.view(-1, 1, 1, 1, 1) * delta.unsqueeze(0))
                idx = None if index is None else index[:, sl].repeat(1, k)
                grad, _ = job.gradients(points.reshape(k * b, *x.shape[1:]), idx, create_graph)
                part = (grad.view(job.n, k, b, *x.shape[1:])
                        * w.view(1, k, 1, 1, 1, 1)).sum(1)
                total = part if total is None else total + part
            out.append((delta.unsqueeze(0) * total).sum(2))
        return torch.cat(out, dim=1)
