"""Per-module forward record and relevance propagation (SPEC §4 "layer handling").

:func:`compile_network` turns an ``nn.Sequential`` into a list of nodes. Each node runs its
module's forward pass on ``[s, B, ...]`` activations with per-sample parameters (from the chunk's
parameter dict, keyed by the module's ``state_dict`` names) and returns a record; its
``relevance`` method maps the relevance of its output to the relevance of its input.

- ``Linear`` / ``Conv2d`` (any stride, padding, dilation; groups = 1): the rule. A
  ``BatchNorm2d`` right after a ``Conv2d`` is folded into it (eval-mode running statistics).
- ``ReLU`` / ``LeakyReLU`` / ``Softplus`` / ``Flatten`` / ``Identity`` / ``Dropout`` /
  ``Normalize``: relevance passes unchanged (reshaped back for ``Flatten``).
- ``MaxPool2d``: winner-take-all, relevance goes to the input that won the max (overlapping
  windows accumulate).
- ``AvgPool2d`` / ``AdaptiveAvgPool2d``: proportional, ``R_j = Σ_k a_j w_jk / z_k R_k``.
- ``BasicBlock`` (``bayeslrp.nets``): the residual add splits relevance in proportion to the
  main-path and shortcut summands; each path is then explained by its own layers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import nets
from ..errors import BayesLRPError
from .maps import (CHANNELS_LAST, ConvMap, LinearMap, SummedMap, flatten_features, from_grouped,
                   grouped_channels_last, grouped_weight, to_grouped)
from .rules import Rule, elementwise, is_shared, stabilize


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


class Dense(Node):
    """Linear or Conv2d (optionally with the following BatchNorm2d folded in)."""

    def __init__(self, module: nn.Module, prefix: str, position: int,
                 bn: nn.BatchNorm2d | None = None, bn_prefix: str | None = None,
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
            if not bn.track_running_stats or bn.running_mean is None:
                raise BayesLRPError(f"{bn} at position {bn_prefix}: BatchNorm without running "
                                    "statistics cannot be folded for LRP")
        self.module, self.prefix, self.bn, self.bn_prefix = module, prefix, bn, bn_prefix
        self.first = position
        self.last = position if last is None else last
        self.is_conv = isinstance(module, nn.Conv2d)

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
        q = self.bn_prefix
        scale = torch.rsqrt(p[f"{q}.running_var"] + self.bn.eps)
        if self.bn.affine:
            scale = scale * p[f"{q}.weight"]
        shift = -p[f"{q}.running_mean"] * scale
        if bias is not None:
            shift = shift + bias * scale
        if self.bn.affine:
            shift = shift + p[f"{q}.bias"]
        return weight * scale[:, :, None, None, None], shift

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


class Activation(Node):
    """ReLU / LeakyReLU / Softplus; relevance passes through unchanged.

    With ``surrogate_beta`` β, ReLU runs as ``softplus_β`` and LeakyReLU(slope) as
    ``slope·x + (1 − slope)·softplus_β(x)`` (Dombrowski et al.), so the explanation is smooth
    in the input.
    """

    def __init__(self, module: nn.Module, position: int):
        self.module, self.first, self.last = module, position, position
        if isinstance(module, nn.LeakyReLU):
            self.slope = float(module.negative_slope)
        elif isinstance(module, nn.ReLU):
            self.slope = 0.0
        else:
            self.slope = None  # Softplus

    def forward(self, a, ctx):
        beta = None if ctx.true_activations else ctx.surrogate_beta
        m = self.module
        if self.slope is None:
            fn = lambda t: F.softplus(t, m.beta, m.threshold)  # noqa: E731
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


class MaxPool(Node):
    """Winner-take-all: each output's relevance goes to the input position that was its max."""

    def __init__(self, module: nn.MaxPool2d, position: int):
        self.module, self.first, self.last = module, position, position

    def forward(self, a, ctx):
        m, s = self.module, a.shape[0]
        if a.dim() != 5:
            raise BayesLRPError(f"{m} at position {self.first} needs image-shaped inputs")
        shared = is_shared(a)
        x = a[0] if shared else grouped_channels_last(a)
        out, idx = F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation,
                                ceil_mode=m.ceil_mode, return_indices=True)
        if shared:
            return out.unsqueeze(0).expand(s, *out.shape), (idx, a.shape, True)
        return from_grouped(out, s), (idx, a.shape, False)

    def relevance(self, r, record, ctx):
        idx, in_shape, shared = record
        s, b, c, h, w = in_shape
        m = self.module
        if shared:
            idx = idx.repeat(1, s, 1, 1)
        channels_last = (idx.is_contiguous(memory_format=CHANNELS_LAST)
                         and not idx.is_contiguous())
        fmt = CHANNELS_LAST if channels_last else torch.contiguous_format
        grad = grouped_channels_last(r) if channels_last else to_grouped(r).contiguous()
        # routing each output's relevance to its recorded winner (accumulating where windows
        # overlap) is exactly max-pooling's backward; it is differentiable in `r`. The input
        # argument only conveys the input's size and memory layout.
        like = torch.empty((b, s * c, h, w), dtype=r.dtype, device=r.device, memory_format=fmt)
        out = torch.ops.aten.max_pool2d_with_indices_backward(
            grad, like, _pair(m.kernel_size),
            _pair(m.stride if m.stride is not None else m.kernel_size), _pair(m.padding),
            _pair(m.dilation), m.ceil_mode, idx)
        return from_grouped(out, s)


class AvgPool(Node):
    """AvgPool2d / AdaptiveAvgPool2d: relevance in proportion to each input's share."""

    def __init__(self, module: nn.Module, position: int):
        self.module, self.first, self.last = module, position, position

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def forward(self, a, ctx):
        s = a.shape[0]
        if a.dim() != 5:
            raise BayesLRPError(f"{self.module} at position {self.first} needs image-shaped inputs")
        if is_shared(a):
            out = self._pool(a[0])
            z = out.unsqueeze(0).expand(s, *out.shape)
        else:
            z = from_grouped(self._pool(to_grouped(a)), s)
        return z, (a, z)

    def relevance(self, r, record, ctx):
        a, z = record
        s = a.shape[0]
        ratio = to_grouped(r / stabilize(z, ctx.rule.stabilizer))
        if isinstance(self.module, nn.AdaptiveAvgPool2d):
            return a * from_grouped(adaptive_avg_pool_transpose(ratio, a.shape[-2:]), s)
        # the pool is linear: its transpose applied to `ratio` is its vector-Jacobian product
        # (avg_pool2d's CUDA backward is deterministic)
        with torch.enable_grad():
            probe = torch.zeros(ratio.shape[0], ratio.shape[1], *a.shape[-2:], dtype=ratio.dtype,
                                device=ratio.device, requires_grad=True)
            (c,) = torch.autograd.grad(self._pool(probe), probe, ratio,
                                       create_graph=ratio.requires_grad)
        return a * from_grouped(c, s)


def adaptive_avg_pool_transpose(ratio: torch.Tensor, size) -> torch.Tensor:
    """The transpose of adaptive average pooling to ``size`` (H, W) applied to ``ratio``.

    Written out rather than taken from autograd: adaptive pooling's CUDA backward has no
    deterministic kernel. Output 1 x 1 (ResNet-20) is ``ratio / (H·W)`` spread over the input,
    the same bits as the CPU backward; other sizes use the separable window-averaging matrices
    ``P_h``, ``P_w`` (window ``i`` of ``n`` inputs to ``o`` outputs covers
    ``floor(i·n/o) .. ceil((i+1)·n/o)``): ``c = P_hᵀ · ratio · P_w``.
    """
    h, w = (int(v) for v in size)
    oh, ow = ratio.shape[-2:]
    if (oh, ow) == (1, 1):
        return (ratio / (h * w)).expand(*ratio.shape[:-2], h, w)
    ph, pw = _window_matrix(h, oh, ratio), _window_matrix(w, ow, ratio)
    return torch.einsum("ih,...ij,jw->...hw", ph, ratio, pw)


def _window_matrix(n: int, o: int, like: torch.Tensor) -> torch.Tensor:
    starts = [(i * n) // o for i in range(o)]
    ends = [-(-((i + 1) * n) // o) for i in range(o)]
    m = torch.zeros(o, n, dtype=like.dtype, device=like.device)
    for i, (lo, hi) in enumerate(zip(starts, ends)):
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


class ChannelPadShortcut(Node):
    """Option-A shortcut: stride subsampling and zero channel padding (a selection)."""

    def __init__(self, module: nets.ChannelPadShortcut, position: int):
        self.module, self.first, self.last = module, position, position

    def forward(self, a, ctx):
        st, pad = self.module.stride, self.module.pad
        out = a[..., ::st, ::st] if st != 1 else a
        if pad:
            out = F.pad(out, (0, 0, 0, 0, pad // 2, pad // 2))
        return out, a.shape

    def relevance(self, r, record, ctx):
        st, pad = self.module.stride, self.module.pad
        c_in = record[2]
        sel = r[:, :, pad // 2: pad // 2 + c_in]
        if st == 1:
            return sel
        out = r.new_zeros(record)
        out[..., ::st, ::st] = sel
        return out


class Block(Node):
    """``BasicBlock``: ``relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, block: nets.BasicBlock, position: int):
        p = str(position)
        self.first = self.last = position
        self.conv1 = Dense(_check_conv(block.conv1, f"{p}.conv1"), f"{p}.conv1", position,
                           _check_bn(block.bn1, f"{p}.bn1"), f"{p}.bn1")
        self.act1 = Activation(_check_act(block.relu1, f"{p}.relu1"), position)
        self.conv2 = Dense(_check_conv(block.conv2, f"{p}.conv2"), f"{p}.conv2", position,
                           _check_bn(block.bn2, f"{p}.bn2"), f"{p}.bn2")
        self.act2 = Activation(_check_act(block.relu2, f"{p}.relu2"), position)
        sc = block.shortcut
        if isinstance(sc, nn.Identity):
            self.shortcut: Node = Passthrough(position)
        elif isinstance(sc, nets.ChannelPadShortcut):
            self.shortcut = ChannelPadShortcut(sc, position)
        else:
            raise BayesLRPError(f"unsupported module {type(sc).__name__} at position {p}.shortcut "
                                "for LRP; supported shortcuts: Identity, ChannelPadShortcut")

    def forward(self, a, ctx):
        z1, rec1 = self.conv1.forward(a, ctx)
        h1, _ = self.act1.forward(z1, ctx)
        main, rec2 = self.conv2.forward(h1, ctx)
        short, rec_sc = self.shortcut.forward(a, ctx)
        total = main + short
        out, _ = self.act2.forward(total, ctx)
        return out, (rec1, rec2, rec_sc, main, short)

    def relevance(self, r, record, ctx):
        rec1, rec2, rec_sc, main, short = record
        r_main, r_short = ctx.rule.proportional([main, short], r)
        r_a = self.conv1.relevance(self.conv2.relevance(r_main, rec2, ctx), rec1, ctx)
        return r_a + self.shortcut.relevance(r_short, rec_sc, ctx)


def _check_conv(m: nn.Module, where: str) -> nn.Conv2d:
    if not isinstance(m, nn.Conv2d):
        raise BayesLRPError(f"unsupported module {type(m).__name__} at position {where} for LRP")
    return m


def _check_bn(m: nn.Module, where: str) -> nn.BatchNorm2d | None:
    if isinstance(m, nn.Identity):
        return None
    if not isinstance(m, nn.BatchNorm2d):
        raise BayesLRPError(f"unsupported module {type(m).__name__} at position {where} for LRP")
    return m


def _check_act(m: nn.Module, where: str) -> nn.Module:
    if not isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.Softplus)):
        raise BayesLRPError(f"unsupported module {type(m).__name__} at position {where} for LRP")
    return m


ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Softplus)
SUPPORTED = ("Linear, Conv2d, BatchNorm2d (after Conv2d), ReLU, LeakyReLU, Softplus, Flatten, "
             "Identity, Dropout, Normalize, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BasicBlock")


def compile_network(net: nn.Module, stop: int | None = None) -> list[Node]:
    """Nodes for the Sequential positions ``0..stop`` (all when ``stop`` is None).

    Raises
    ------
    BayesLRPError
        For a module LRP cannot explain, naming it and its position.
    """
    if not isinstance(net, nn.Sequential):
        raise BayesLRPError(f"LRP needs an nn.Sequential network (got {type(net).__name__}); "
                            "build it with bayeslrp.nets.build")
    modules = list(net)
    stop = len(modules) - 1 if stop is None else stop
    nodes: list[Node] = []
    i = 0
    while i <= stop:
        m, p = modules[i], str(i)
        if isinstance(m, nn.Conv2d):
            nxt = modules[i + 1] if i + 1 < len(modules) else None
            if isinstance(nxt, nn.BatchNorm2d):
                nodes.append(Dense(m, p, i, nxt, str(i + 1), last=i + 1))
                i += 2
                continue
            nodes.append(Dense(m, p, i))
        elif isinstance(m, nn.Linear):
            nodes.append(Dense(m, p, i))
        elif isinstance(m, ACTIVATIONS):
            nodes.append(Activation(m, i))
        elif isinstance(m, nn.Flatten):
            nodes.append(Flatten(m, i))
        elif isinstance(m, (nn.Identity, nn.Dropout)):
            nodes.append(Passthrough(i))
        elif isinstance(m, nets.Normalize):
            nodes.append(Normalize(p, i))
        elif isinstance(m, nn.MaxPool2d):
            nodes.append(MaxPool(m, i))
        elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            nodes.append(AvgPool(m, i))
        elif isinstance(m, nets.BasicBlock):
            nodes.append(Block(m, i))
        elif isinstance(m, nn.BatchNorm2d):
            raise BayesLRPError(f"BatchNorm2d at position {i} does not directly follow a Conv2d, "
                                "so it cannot be folded for LRP")
        else:
            raise BayesLRPError(f"unsupported module {type(m).__name__} at position {i} for LRP; "
                                f"supported: {SUPPORTED}")
        i += 1
    return nodes
