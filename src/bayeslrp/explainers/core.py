"""What the non-LRP explainers share: targets, the explained unit, per-sample input gradients.

Every explainer explains one scalar per (posterior sample, image), the *explained unit*, with
the target rules of LRP (SPEC §4):

- output layer: the logit of the explained class — the predictive mean's class over the
  samples used (``target_mode="predictive"``), each sample's own argmax
  (``"per_sample_argmax"``) or the ``target`` given;
- inner layer ``l`` (the network cut after the activation that follows ``l``): the most
  activated unit (Linear) or the sum over positions of the most activated channel (Conv),
  chosen per sample on its own activations of the explained images; ``inner="all"``: the sum
  of every activation; ``inner="original"``: the original code's unit, the activations
  weighted by :func:`bayeslrp.lrp.targets.original_weights` (weights held fixed).

The gradient of that unit is LRP-0's backward pass (so gradient × input equals LRP-0 on a
bias-free ReLU network). LRP's ``seed="one"`` (relevance 1 instead of the unit's value) has no
gradient counterpart and is refused. Targets are fixed on the images explained, so averaging
wrappers (SmoothGrad, integrated gradients) explain the same unit at every perturbed input.

Work is vectorised over images and samples: each chunk runs the truncated network on
``[s, b, ...]`` activations with per-sample weights (the nodes of :mod:`bayeslrp.lrp.layers`,
which also provide the softplus(β) surrogate) and differentiates the summed explained units
with respect to a per-sample copy of the input.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import BayesLRPError
from ..lrp import targets as tg
from ..lrp.handlers import compile_network
from ..lrp.layers import Context
from ..lrp.rules import Epsilon
from ..lrp.stack import ParamStack

__all__ = ["GradJob", "CHUNK_BYTES", "image_chunks", "resolve_targets"]

CHUNK_BYTES = 256 << 20  # bytes of activations and graph one chunk may hold (an estimate)
_ANY_RULE = Epsilon()     # the nodes' forward pass needs a rule object; it is never applied


def check_images(x) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise BayesLRPError("x must be an image tensor [B, C, H, W]")
    if x.shape[0] == 0:
        raise BayesLRPError("x holds no images")


def _float_params(stack: ParamStack) -> dict:
    params = {k: v for k, v in stack.params.items() if v.is_floating_point()}
    if not params:
        raise BayesLRPError("the network has no floating-point parameters")
    return params


def _forward(nodes, a: torch.Tensor, ctx: Context) -> torch.Tensor:
    for node in nodes:
        a, _ = node.forward(a, ctx)
    return a


def _unit_index(h: torch.Tensor, cut, inner: str) -> torch.Tensor | None:
    """The explained unit / channel / class per sample and image ``[s, b]`` (None: all)."""
    if cut.is_output:
        raise AssertionError("output classes come from resolve_targets")
    if inner == "all":
        return None
    if h.dim() == 3:
        return h.argmax(-1)
    return h.flatten(3).sum(-1).argmax(-1)


def resolve_targets(stack: ParamStack, x: torch.Tensor, explainer, target=None,
                    memory_budget: int = CHUNK_BYTES) -> torch.Tensor | None:
    """The explained unit per sample and image, ``[n, B]`` long (None: ``inner="all"``).

    ``target`` (``[B]`` or ``[n, B]``) overrides the rule; otherwise the classes / units are
    those LRP would explain for these images (true activations, no surrogate).
    """
    net, params, n = stack.module, _float_params(stack), stack.n
    cut = tg.resolve_layer(net, explainer.layer)
    device = next(iter(params.values())).device
    fixed = tg.explicit_target(target, x.shape[0], device, n_samples=n)
    if fixed is not None:
        if not cut.is_output and explainer.inner in ("all", "original"):
            raise BayesLRPError(f"target has no meaning with inner={explainer.inner!r} (the "
                                "seed is fixed by the rule)")
        return fixed if fixed.dim() == 2 else fixed.unsqueeze(0).expand(n, -1)
    if not cut.is_output and explainer.inner in ("all", "original"):
        return None
    nodes = compile_network(net, cut.stop)
    ctx = Context(params, _ANY_RULE, true_activations=True)
    xd = x.detach().to(device=device, dtype=stack.dtype)
    rows = []
    with torch.no_grad():
        for sl in image_chunks(stack, nodes, xd, 1, False, memory_budget, samples=n):
            h = _forward(nodes, xd[sl].unsqueeze(0).expand(n, *xd[sl].shape), ctx)
            rows.append(tg.classes_from_logits(h, explainer.target_mode) if cut.is_output
                        else _unit_index(h, cut, explainer.inner))
    return torch.cat(rows, dim=1)


def pair_bytes(nodes, x: torch.Tensor, params: dict, create_graph: bool) -> int:
    """Bytes one (sample, image) pair needs in a gradient pass (activations and graph)."""
    ctx = Context({k: v[:1] for k, v in params.items()}, _ANY_RULE)
    a, total = x[:1].unsqueeze(0), x[0].numel()
    with torch.no_grad():
        for node in nodes:
            a, _ = node.forward(a, ctx)
            total += a[0, 0].numel()
    return int(x.element_size() * total * (8 if create_graph else 4))


def image_chunks(stack, nodes, x, multiplicity: int, create_graph: bool,
                 memory_budget: int = CHUNK_BYTES, samples: int | None = None):
    """Slices of the image axis so that ``samples × images × multiplicity`` pairs fit."""
    s = stack.n if samples is None else samples
    per = pair_bytes(nodes, x, _float_params(stack), create_graph) * max(1, multiplicity) * s
    step = max(1, int(memory_budget) // max(per, 1))
    return [slice(b0, min(x.shape[0], b0 + step)) for b0 in range(0, x.shape[0], step)]


@dataclass
class GradJob:
    """Per-sample gradients of the explained unit for one model and explainer."""

    stack: ParamStack
    explainer: object
    surrogate_beta: float | None = None

    def __post_init__(self):
        if self.explainer.seed != "logit":
            raise BayesLRPError(f"explainer {self.explainer.method!r} explains the unit's value; "
                                "seed='one' is an LRP relevance initialisation (use 'logit')")
        net = self.stack.module
        self.params = _float_params(self.stack)
        self.cut = tg.resolve_layer(net, self.explainer.layer)
        self.nodes = compile_network(net, self.cut.stop)
        if self.surrogate_beta is not None and not float(self.surrogate_beta) > 0:
            raise BayesLRPError(f"surrogate_beta must be > 0 (got {self.surrogate_beta})")
        # On CPUs grouped convolutions over many samples run slower than one sample at a
        # time (as LRP found, benchmarks/lrp.py): conv networks there take one sample per
        # pass; dense networks and GPUs take every sample at once.
        has_conv = any(getattr(node, "is_conv", False) or hasattr(node, "conv1")
                       for node in self.nodes)
        step = 1 if has_conv and self.stack.device.type == "cpu" else self.n
        self.contexts = [(slice(s0, min(self.n, s0 + step)),
                          Context({k: v[s0:s0 + step] for k, v in self.params.items()},
                                  _ANY_RULE, surrogate_beta=self.surrogate_beta))
                         for s0 in range(0, self.n, step)]

    @property
    def n(self) -> int:
        return self.stack.n

    def chunks(self, x: torch.Tensor, multiplicity: int, create_graph: bool):
        s = self.contexts[0][0].stop - self.contexts[0][0].start
        return image_chunks(self.stack, self.nodes, x, multiplicity, create_graph, samples=s)

    def gradients(self, x: torch.Tensor, index: torch.Tensor | None, create_graph: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(∇_x u, u)``: gradients ``[n, b, C, H, W]`` and values ``[n, b]`` of the explained
        units ``index`` (``[n, b]``; None: every activation) at images ``x`` ``[b, C, H, W]``."""
        x = x.to(device=self.stack.device, dtype=self.stack.dtype)
        grads, values = [], []
        for sl, ctx in self.contexts:
            s = sl.stop - sl.start
            with torch.enable_grad():
                # one copy of the input per sample: the gradient of the summed units w.r.t. it
                # is every sample's own gradient (a shared, expanded input would sum them)
                inp = x.unsqueeze(0).repeat(s, *([1] * x.dim()))
                if not create_graph:
                    inp = inp.detach()
                if not inp.requires_grad:
                    inp.requires_grad_(True)
                h = _forward(self.nodes, inp, ctx)
                units = self._units(h, None if index is None else index[sl])
                (grad,) = torch.autograd.grad(units.sum(), inp, create_graph=create_graph)
            grads.append(grad if create_graph else grad.detach())
            values.append(units if create_graph else units.detach())
        if len(grads) == 1:
            return grads[0], values[0]
        return torch.cat(grads), torch.cat(values)

    def _units(self, h: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        if index is None and self.explainer.inner == "original" and not self.cut.is_output:
            weighted = tg.original_seed(h.detach()) * h  # its gradient is the original's seed
            return weighted.flatten(2).sum(-1)
        if index is None:
            return h.flatten(2).sum(-1)
        if int(index.min()) < 0 or int(index.max()) >= h.shape[2]:
            raise BayesLRPError(f"target index out of range: this layer has {h.shape[2]} "
                                "units / channels / classes")
        picked = h.gather(2, index.view(*index.shape, 1, *([1] * (h.dim() - 3)))
                          .expand(*index.shape, 1, *h.shape[3:]))
        return picked.flatten(2).sum(-1)
