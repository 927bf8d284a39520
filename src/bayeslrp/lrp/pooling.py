"""Pooling nodes: winner-take-all max pooling, proportional average pooling (SPEC §4).

- ``MaxPool2d`` / ``AdaptiveMaxPool2d``: relevance goes to the input that won the max
  (overlapping windows accumulate).
- ``AvgPool2d`` / ``AdaptiveAvgPool2d``: proportional, ``R_j = Σ_k a_j w_jk / z_k R_k``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BayesLRPError
from .layers import Node, _pair
from .maps import CHANNELS_LAST, from_grouped, grouped_channels_last, to_grouped
from .rules import is_shared, stabilize


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


class AdaptiveMaxPool(Node):
    """AdaptiveMaxPool2d, winner-take-all; the relevance is scattered back to the recorded
    winners (``scatter_add`` is deterministic on CUDA, adaptive max pooling's backward not)."""

    def __init__(self, module: nn.AdaptiveMaxPool2d, position: int):
        self.module, self.first, self.last = module, position, position

    def forward(self, a, ctx):
        s = a.shape[0]
        if a.dim() != 5:
            raise BayesLRPError(f"{self.module} at position {self.first} needs image-shaped "
                                "inputs")
        out, idx = F.adaptive_max_pool2d(to_grouped(a), self.module.output_size,
                                         return_indices=True)
        return from_grouped(out, s), (idx, a.shape)

    def relevance(self, r, record, ctx):
        idx, in_shape = record
        s, b, c, h, w = in_shape
        g = to_grouped(r)
        flat = g.new_zeros(b, s * c, h * w)
        flat = flat.scatter_add(2, idx.flatten(2), g.flatten(2))
        return from_grouped(flat.view(b, s * c, h, w), s)
