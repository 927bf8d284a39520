"""Explainers that work on a :class:`~bayeslrp.lrp.stack.ParamStack` with fixed targets.

:class:`StackMethod` turns the registry's ``per_sample(ens, x, explainer, target=…)`` into
``stack_heatmaps(stack, x, explainer, index)``: the model becomes a stack of its first
``n_samples`` weight sets and the explained unit of every (sample, image) is fixed first
(:func:`~bayeslrp.explainers.core.resolve_targets`). Wrappers (SmoothGrad, NoiseGrad,
FusionGrad) call their base explainer the same way through :func:`base_heatmaps`, on noisy
images or on perturbed weight stacks, with the targets of the clean ones.
"""
from __future__ import annotations

from typing import Any

from ..errors import BayesLRPError
from .registry import EXPLAINERS, ExplainerMethod

__all__ = ["StackMethod", "base_heatmaps", "validated"]


def validated(cls, params: dict, tensor_keys: tuple[str, ...] = ()) -> tuple[Any, dict]:
    """``(spec, tensors)``: ``params`` validated by ``cls.Params``, with the entries named in
    ``tensor_keys`` that hold tensors set aside (library calls may pass tensors)."""
    import torch

    params = dict(params)
    tensors = {k: params.pop(k) for k in tensor_keys if isinstance(params.get(k), torch.Tensor)}
    try:
        spec = cls.Params.model_validate(params)
    except ValueError as exc:
        raise BayesLRPError(f"{cls.name}: " + " ".join(str(exc).split())[:300]) from None
    return spec, tensors


class StackMethod(ExplainerMethod):
    """An explainer computed on a weight stack with the explained unit fixed per sample."""

    def stack_heatmaps(self, stack, x, explainer, index, *, create_graph: bool,
                       surrogate_beta: float | None):
        """Heatmaps ``[n, B, H, W]`` of the stack's samples; ``index`` ``[n, B]`` (or None
        for ``inner="all"``) is the explained class / unit of each sample and image."""
        raise NotImplementedError

    def per_sample(self, ens, x, explainer, *, target, create_graph, surrogate_beta):
        from ..lrp.stack import as_stack
        from .core import check_images, resolve_targets

        check_images(x)
        stack = as_stack(ens, explainer.n_samples)
        x = x.to(device=stack.device, dtype=stack.dtype)
        if not create_graph:
            x = x.detach()
        index = resolve_targets(stack, x, explainer, target)
        return self.stack_heatmaps(stack, x, explainer, index, create_graph=create_graph,
                                   surrogate_beta=surrogate_beta)


def base_heatmaps(explainer, stack, x, index, *, create_graph: bool,
                  surrogate_beta: float | None):
    """Per-sample heatmaps ``[n, B, H, W]`` of ``explainer`` (any built-in method) on a stack."""
    from .lrp_rules import LRPMethod

    cls = EXPLAINERS.get(explainer.method)
    if issubclass(cls, StackMethod):
        return cls().stack_heatmaps(stack, x, explainer, index, create_graph=create_graph,
                                    surrogate_beta=surrogate_beta)
    if issubclass(cls, LRPMethod):
        from .. import lrp

        return lrp.explain(stack, x, rule=cls().rule(explainer), layer=explainer.layer,
                           reduce=None, target=index, create_graph=create_graph,
                           seed=explainer.seed, target_mode=explainer.target_mode,
                           inner=explainer.inner, surrogate_beta=surrogate_beta)
    raise BayesLRPError(f"explainer {explainer.method!r} cannot be the base of a wrapper "
                        "(only the built-in explainers can)")


def check_base(name: str, params: dict, own: str) -> dict:
    """Validate a wrapper's ``base`` explainer and its parameters (at config load time)."""
    if name not in EXPLAINERS:
        raise ValueError(f"unknown base explainer {name!r}; registered: "
                         f"{', '.join(EXPLAINERS.names())}")
    cls = EXPLAINERS.get(name)
    from .lrp_rules import LRPMethod

    if not issubclass(cls, (StackMethod, LRPMethod)):
        raise ValueError(f"explainer {name!r} cannot be the base of {own}")
    if issubclass(cls, LRPMethod):
        return cls.check_params(params)
    return cls.Params.model_validate(params).model_dump(mode="json")
