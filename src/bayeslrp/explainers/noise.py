"""Noise-averaging explainers: ``smoothgrad``, ``noisegrad``, ``fusiongrad``.

Each wraps a ``base`` explainer (any built-in one: gradient, integrated gradients, an LRP rule
or composite …; default ``gradient``) and averages it over random draws *within* every
posterior sample; the Bayesian explanation then averages over the samples as usual
(SPEC §9). The base explains, at every draw, the unit / class the clean image and unperturbed
weights select (the targets of :mod:`~bayeslrp.explainers.core`).

- ``smoothgrad`` (Smilkov et al. 2017): ``n`` draws ``x + η_i``, ``η_i ~ N(0, (σ·(high −
  low))²)`` — ``sigma`` is a fraction of the data range ``bounds``. Defaults n = 50,
  σ = 0.15 (the paper's recommended 10–20 % of the range).
- ``noisegrad`` (Bykov et al. 2022): ``n`` weight draws ``Wᵢ = W ⊙ ηᵢ``, ``ηᵢ ~ N(1, σ²)``
  elementwise on every learnable weight and bias (not on buffers such as BatchNorm statistics).
- ``fusiongrad`` (Bykov et al. 2022): NoiseGrad whose base is SmoothGrad of ``base`` — ``n``
  weight draws × ``m`` input draws with ``sigma_x`` as a fraction of the data range.

NoiseGrad / FusionGrad defaults are those of the authors' reference implementation
(github.com/understandable-machine-intelligence-lab/NoiseGrad): σ = 0.2, n = 10; FusionGrad
(“NoiseGrad++” there) m = 10 and input noise 0.4, here read as 0.4 of the data range (the same
absolute value for pixels in [0, 1]).

Reproducibility: every draw comes from a ``torch.Generator`` seeded by ``noise_seed`` and is
shared — one input noise pattern ``η_i`` (shape ``[C, H, W]``) for every image, and one weight
noise ``ηᵢ`` for every posterior sample. An image's explanation therefore does not depend on
which other images share its batch or chunk, and the explanation of an S-sample ensemble is
exactly the mean of its samples' explanations. With FusionGrad the ``m`` input draws are the
same for every weight draw (an unbiased estimate of the same double expectation).
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from ..plugins.spec import PosInt, Seed, StrictSpec
from .base import StackMethod, base_heatmaps, check_base, validated
from .registry import EXPLAINERS

__all__ = ["SmoothGrad", "NoiseGrad", "FusionGrad", "weight_noise", "noisy_stack"]

NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Bounds = Annotated[tuple[float, float], Field(strict=False)]
OUT_BYTES = 256 << 20  # bytes of base heatmaps (or perturbed weights) held at once


class _WrapperParams(StrictSpec):
    base: str = "gradient"
    base_params: dict[str, Any] = {}
    noise_seed: Seed = 0

    @model_validator(mode="after")
    def _base_ok(self):
        check_base(self.base, self.base_params, "a noise wrapper")
        return self


class SmoothGradParams(_WrapperParams):
    n: PosInt = 50
    sigma: NonNegFloat = 0.15
    bounds: Bounds = (0.0, 1.0)


class NoiseGradParams(_WrapperParams):
    n: PosInt = 10
    sigma: NonNegFloat = 0.2


class FusionGradParams(NoiseGradParams):
    m: PosInt = 10
    sigma_x: NonNegFloat = 0.4
    bounds: Bounds = (0.0, 1.0)


def _check_base_settings(params: dict, seed: str) -> None:
    base = params.get("base", "gradient")
    EXPLAINERS.get(base)().check_settings(params.get("base_params", {}), seed)


def _base(explainer, spec):
    return explainer.replace(method=spec.base, params=dict(spec.base_params))


def _input_noise(n: int, shape, seed: int, like):
    import torch

    from ..mcmc.seeds import derive_seed

    gen = torch.Generator().manual_seed(derive_seed(seed, "smoothgrad-input"))
    noise = torch.randn((n, *shape), generator=gen, dtype=torch.float64)
    return noise.to(device=like.device, dtype=like.dtype)


def smooth(base, stack, x, index, *, n, sigma_abs, seed, create_graph, surrogate_beta):
    """Mean of ``base`` over ``n`` input draws ``x + sigma_abs·η_i`` (``[stack.n, B, H, W]``)."""
    b, (h, w) = x.shape[0], x.shape[-2:]
    noise = _input_noise(n, x.shape[1:], seed, x)
    step = max(1, OUT_BYTES // max(1, stack.n * b * h * w * x.element_size()))
    total = None
    for d0 in range(0, n, step):
        eta = noise[d0:d0 + step]
        d = eta.shape[0]
        xn = (x.unsqueeze(0) + sigma_abs * eta.unsqueeze(1)).reshape(d * b, *x.shape[1:])
        idx = None if index is None else index.repeat(1, d)
        R = base_heatmaps(base, stack, xn, idx, create_graph=create_graph,
                          surrogate_beta=surrogate_beta)
        part = R.reshape(stack.n, d, b, h, w).sum(1)
        total = part if total is None else total + part
    return total / n


def weight_noise(stack, n: int, sigma: float, seed: int) -> dict:
    """Multiplicative noise ``η ~ N(1, σ²)``, ``[n, *shape]`` per learnable entry."""
    import torch

    from ..mcmc.seeds import derive_seed

    gen = torch.Generator().manual_seed(derive_seed(seed, "noisegrad-weights"))
    out = {}
    for name in stack.learnable_names():
        shape = stack.params[name].shape[1:]
        eta = 1.0 + sigma * torch.randn((n, *shape), generator=gen, dtype=torch.float64)
        out[name] = eta.to(device=stack.device, dtype=stack.params[name].dtype)
    return out


def noisy_stack(stack, eta: dict):
    """Every sample × every draw: entry ``j·n + i`` holds ``W_j ⊙ η_i`` (buffers copied)."""
    from ..lrp.stack import ParamStack

    n = next(iter(eta.values())).shape[0]
    s = stack.n
    params = {}
    for name, value in stack.params.items():
        rep = value.repeat_interleave(n, dim=0)
        if name in eta:
            rep = rep * eta[name].repeat(s, *([1] * (value.dim() - 1)))
        params[name] = rep
    return ParamStack(stack.module, params)


def _param_bytes(stack) -> int:
    return sum(v[0].numel() * v.element_size() for v in stack.params.values())


def noise_weights(base, stack, x, index, *, n, sigma, seed, create_graph, surrogate_beta):
    """Mean of ``base`` over ``n`` weight draws per sample (``[stack.n, B, H, W]``)."""
    import torch

    eta = weight_noise(stack, n, sigma, seed)
    per_sample = n * max(_param_bytes(stack), x.shape[0] * x[0, 0].numel() * x.element_size())
    step = max(1, OUT_BYTES // max(1, per_sample))
    out = []
    for s0 in range(0, stack.n, step):
        sub = stack.rows(slice(s0, s0 + step))
        idx = None if index is None else index[s0:s0 + step].repeat_interleave(n, dim=0)
        R = base_heatmaps(base, noisy_stack(sub, eta), x, idx, create_graph=create_graph,
                          surrogate_beta=surrogate_beta)
        out.append(R.reshape(sub.n, n, *R.shape[1:]).mean(1))
    return torch.cat(out)


class _NoiseWrapper(StackMethod):
    """A wrapper of a base explainer: its settings are checked as the base's."""

    def check_settings(self, params, seed):
        _check_base_settings(params, seed)


@EXPLAINERS.register
class SmoothGrad(_NoiseWrapper):
    """SmoothGrad of any base explainer."""

    name = "smoothgrad"
    Params = SmoothGradParams

    def stack_heatmaps(self, stack, x, explainer, index, *, create_graph, surrogate_beta):
        spec, _ = validated(type(self), explainer.params)
        lo, hi = spec.bounds
        return smooth(_base(explainer, spec), stack, x, index, n=spec.n,
                      sigma_abs=spec.sigma * (hi - lo), seed=spec.noise_seed,
                      create_graph=create_graph, surrogate_beta=surrogate_beta)


@EXPLAINERS.register
class NoiseGrad(_NoiseWrapper):
    """NoiseGrad: the base explainer averaged over multiplicative weight noise."""

    name = "noisegrad"
    Params = NoiseGradParams

    def stack_heatmaps(self, stack, x, explainer, index, *, create_graph, surrogate_beta):
        spec, _ = validated(type(self), explainer.params)
        return noise_weights(_base(explainer, spec), stack, x, index, n=spec.n, sigma=spec.sigma,
                             seed=spec.noise_seed, create_graph=create_graph,
                             surrogate_beta=surrogate_beta)


@EXPLAINERS.register
class FusionGrad(_NoiseWrapper):
    """FusionGrad: NoiseGrad of SmoothGrad of the base explainer."""

    name = "fusiongrad"
    Params = FusionGradParams

    def stack_heatmaps(self, stack, x, explainer, index, *, create_graph, surrogate_beta):
        spec, _ = validated(type(self), explainer.params)
        smooth_params = {"n": spec.m, "sigma": spec.sigma_x, "bounds": spec.bounds,
                         "base": spec.base, "base_params": dict(spec.base_params),
                         "noise_seed": spec.noise_seed}
        inner = explainer.replace(method="smoothgrad", params=smooth_params)
        return noise_weights(inner, stack, x, index, n=spec.n, sigma=spec.sigma,
                             seed=spec.noise_seed, create_graph=create_graph,
                             surrogate_beta=surrogate_beta)
