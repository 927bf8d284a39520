"""Per-module forward record and relevance propagation (SPEC §4 "layer handling").

Each node runs its module's forward pass on ``[s, B, ...]`` activations with per-sample
parameters (from the chunk's parameter dict, keyed by the module's ``state_dict`` names) and
returns a record; its ``relevance`` method maps the relevance of its output to the relevance of
its input. Which node serves which module: :mod:`~bayeslrp.lrp.handlers`.

- ``Linear`` / ``Conv2d`` (any stride, padding, dilation; groups = 1): the rule. A
  ``BatchNorm1d`` right after a ``Linear`` or a ``BatchNorm2d`` right after a ``Conv2d`` is
  folded into it (eval-mode running statistics).
- A ``BatchNorm1d`` / ``BatchNorm2d`` not preceded by its layer: a per-feature / per-channel
  affine map under the rule (:class:`BatchNormAffine`).
- Activations (ReLU, LeakyReLU, Softplus, ELU, GELU, SiLU, Tanh, Sigmoid), ``Flatten``,
  ``Identity``, ``Dropout``, ``Normalize``: relevance passes unchanged (reshaped back for
  ``Flatten``).
- Pooling: :mod:`~bayeslrp.lrp.pooling`; residual blocks: :mod:`~bayeslrp.lrp.residual`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BayesLRPError
from .maps import ConvMap, DiagonalMap, LinearMap, SummedMap, flatten_features, grouped_weight
from .rules import Rule, elementwise, is_shared


@dataclass
class Context:
    """What the nodes need besides the activations: this chunk's parameters and options."""

    params: dict[str, torch.Tensor]
    rule: Rule
    surrogate_beta: float | None = None
    true_activations: bool = False  # ignore the surrogate (used for the target pre-pass)
    cache: dict = field(default_factory=dict)  # folded weights, reused across image chunks


class Node:
    """One step of the network; ``first``..``last`` are the Sequential positions it covers."""

    first: int
    last: int

    def forward(self, a: torch.Tensor, ctx: Context) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def relevance(self, r: torch.Tensor, record: Any, ctx: Context) -> torch.Tensor:
        raise NotImplementedError


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0)
        totals = [d * (k - 1) for d, k in zip(_pair(conv.dilation), _pair(conv.kernel_size))]
        if any(t % 2 for t in totals):
            raise BayesLRPError(f"{conv}: asymmetric 'same' padding is not supported by LRP; "
                                "use an explicit symmetric padding")
        return tuple(t // 2 for t in totals)
    return _pair(conv.padding)


def _check_running_stats(bn: nn.Module, where: str) -> None:
    if not bn.track_running_stats or bn.running_mean is None:
        raise BayesLRPError(f"{bn} at position {where}: BatchNorm without running "
                            "statistics cannot be explained by LRP")


def batchnorm_affine(p: dict, prefix: str, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(scale, shift)`` ``[s, C]`` of an eval-mode BatchNorm: ``scale·x + shift``."""
    scale = torch.rsqrt(p[f"{prefix}.running_var"] + bn.eps)
    if bn.affine:
        scale = scale * p[f"{prefix}.weight"]
    shift = -p[f"{prefix}.running_mean"] * scale
    if bn.affine:
        shift = shift + p[f"{prefix}.bias"]
    return scale, shift


class Dense(Node):
    """Linear or Conv2d (optionally with the following BatchNorm folded in)."""

    def __init__(self, module: nn.Module, prefix: str, position: int,
                 bn: nn.Module | None = None, bn_prefix: str | None = None,
                 last: int | None = None):
        if isinstance(module, nn.Conv2d):
            if module.groups != 1:
                raise BayesLRPError(f"{module} at position {prefix}: grouped convolutions "
                                    "(groups != 1) are not supported by LRP")
            if module.padding_mode != "zeros":
                raise BayesLRPError(f"{module} at position {prefix}: padding_mode "
                                    f"{module.padding_mode!r} is not supported by LRP (use zeros)")
            self.geometry = (_pair(module.stride), _conv_padding(module), _pair(module.dilation))
        if bn is not None:
            _check_running_stats(bn, bn_prefix)
        self.module, self.prefix, self.bn, self.bn_prefix = module, prefix, bn, bn_prefix
        self.first = position
        self.last = position if last is None else last
        self.is_conv = isinstance(module, nn.Conv2d)
        self.kind = "conv" if self.is_conv else "dense"

    def weights(self, ctx: Context) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) of this chunk's samples, BatchNorm folded, convolutions in the
        channels-last layout of the grouped convolution; computed once per context."""
        if self.prefix not in ctx.cache:
            weight, bias = self._fold(ctx)
            if self.is_conv:
                s, o = weight.shape[:2]
                weight = grouped_weight(weight).view(s, o, *weight.shape[2:])
            ctx.cache[self.prefix] = (weight, bias)
        return ctx.cache[self.prefix]

    def _fold(self, ctx: Context) -> tuple[torch.Tensor, torch.Tensor | None]:
        p = ctx.params
        weight = p[f"{self.prefix}.weight"]
        bias = p.get(f"{self.prefix}.bias") if self.module.bias is not None else None
        if self.bn is None:
            return weight, bias
        scale, shift = batchnorm_affine(p, self.bn_prefix, self.bn)
        if bias is not None:
            shift = shift + bias * scale
        return weight * scale.reshape(*scale.shape, *([1] * (weight.dim() - 2))), shift

    def affine_map(self, a: torch.Tensor):
        if self.is_conv:
            return ConvMap(*self.geometry, in_hw=a.shape[-2:])
        return LinearMap()

    def forward(self, a, ctx):
        weight, bias = self.weights(ctx)
        if self.is_conv and a.dim() != 5:
            raise BayesLRPError(f"{self.module} at position {self.prefix} needs image inputs "
                                f"[B, C, H, W]; got features of shape {tuple(a.shape[1:])}")
        amap = self.affine_map(a)
        z = amap.forward(a, weight, bias)
        return z, (a, z, weight, bias, amap)

    @staticmethod
    def affine_of(record):
        """The affine map a forward pass recorded (for marks the engine sets on it)."""
        return record[4]

    @staticmethod
    def input_of(record):
        return record[0]

    def relevance(self, r, record, ctx):
        a, z, weight, bias, amap = record
        rule = ctx.rule.rule_for(self.prefix)
        if getattr(amap, "sum_samples", False):
            # shared input, mean wanted: relevance summed over the samples, [1, B, ...]
            return rule.relevance(SummedMap(amap), a[:1], z, weight, bias, r)
        return rule.relevance(amap, a, z, weight, bias, r)


#: Element-wise activations other than ReLU / LeakyReLU, as functions of the module.
_SMOOTH = {
    nn.Softplus: lambda m: (lambda t: F.softplus(t, m.beta, m.threshold)),
    nn.ELU: lambda m: (lambda t: F.elu(t, m.alpha)),
    nn.GELU: lambda m: (lambda t: F.gelu(t, approximate=m.approximate)),
    nn.SiLU: lambda m: F.silu,
    nn.Tanh: lambda m: torch.tanh,
    nn.Sigmoid: lambda m: torch.sigmoid,
}
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, *_SMOOTH)


class Activation(Node):
    """An element-wise activation (:data:`ACTIVATIONS`); relevance passes through unchanged.

    With ``surrogate_beta`` β, ReLU runs as ``softplus_β`` and LeakyReLU(slope) as
    ``slope·x + (1 − slope)·softplus_β(x)`` (Dombrowski et al.), so the explanation is smooth
    in the input; the other activations are smooth already and run as they are.
    """

    def __init__(self, module: nn.Module, position: int):
        self.module, self.first, self.last = module, position, position
        self.smooth = None
        if isinstance(module, nn.LeakyReLU):
            self.slope = float(module.negative_slope)
        elif isinstance(module, nn.ReLU):
            self.slope = 0.0
        else:
            self.slope = None
            self.smooth = next(make(module) for kind, make in _SMOOTH.items()
                               if isinstance(module, kind))

    def forward(self, a, ctx):
        beta = None if ctx.true_activations else ctx.surrogate_beta
        if self.slope is None:
            fn = self.smooth
        elif beta is not None:
            slope = self.slope
            if slope == 0.0:
                fn = lambda t: F.softplus(t, beta)  # noqa: E731
            else:
                fn = lambda t: slope * t + (1.0 - slope) * F.softplus(t, beta)  # noqa: E731
        elif self.slope == 0.0:
            fn = F.relu
        else:
            slope = self.slope
            fn = lambda t: F.leaky_relu(t, slope)  # noqa: E731
        return elementwise(fn, a), None

    def relevance(self, r, record, ctx):
        return r


class Flatten(Node):
    def __init__(self, module: nn.Flatten, position: int):
        if module.start_dim != 1 or module.end_dim != -1:
            raise BayesLRPError(f"{module} at position {position}: only Flatten(start_dim=1, "
                                "end_dim=-1) is supported by LRP")
        self.first = self.last = position

    def forward(self, a, ctx):
        return flatten_features(a), a.shape

    def relevance(self, r, record, ctx):
        return r.reshape(*r.shape[:2], *record[2:])


class Passthrough(Node):
    """Identity-like modules (Identity, Dropout in eval mode)."""

    def __init__(self, position: int):
        self.first = self.last = position

    def forward(self, a, ctx):
        return a, None

    def relevance(self, r, record, ctx):
        return r


class Normalize(Node):
    """``(x − mean) / std`` in the forward pass; relevance passes to the raw pixels unchanged."""

    def __init__(self, prefix: str, position: int):
        self.prefix, self.first, self.last = prefix, position, position

    def forward(self, a, ctx):
        mean, std = ctx.params[f"{self.prefix}.mean"], ctx.params[f"{self.prefix}.std"]
        if is_shared(a) and bool((mean == mean[:1]).all()) and bool((std == std[:1]).all()):
            return elementwise(lambda t: (t - mean[0]) / std[0], a), None
        return (a - mean) / std, None

    def relevance(self, r, record, ctx):
        return r


class BatchNormAffine(Node):
    """A BatchNorm with no layer to fold into: ``y = scale·x + shift`` per feature / channel,
    explained by the rule as an affine layer with a diagonal weight."""

    def __init__(self, module: nn.Module, prefix: str, position: int):
        _check_running_stats(module, prefix)
        self.module, self.prefix, self.first, self.last = module, prefix, position, position
        # composites select it as a convolution (BatchNorm2d) or a dense layer (BatchNorm1d)
        self.is_conv = False
        self.kind = "conv" if isinstance(module, nn.BatchNorm2d) else "dense"

    def weights(self, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
        if self.prefix not in ctx.cache:
            ctx.cache[self.prefix] = batchnorm_affine(ctx.params, self.prefix, self.module)
        return ctx.cache[self.prefix]

    def forward(self, a, ctx):
        scale, shift = self.weights(ctx)
        if a.shape[2] != scale.shape[-1]:
            raise BayesLRPError(f"{self.module} at position {self.prefix} got {a.shape[2]} "
                                f"features / channels, expected {scale.shape[-1]}")
        amap = DiagonalMap(a.dim())
        z = amap.forward(a, scale, shift)
        return z, (a, z, scale, shift, amap)

    def relevance(self, r, record, ctx):
        a, z, scale, shift, amap = record
        return ctx.rule.rule_for(self.prefix).relevance(amap, a, z, scale, shift, r)
