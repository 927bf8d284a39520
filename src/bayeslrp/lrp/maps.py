"""Affine maps with one weight set per posterior sample, vectorised over samples and images.

Activations are ``[s, B, *features]`` tensors (s samples of the chunk, B images). A tensor whose
sample axis has stride 0 (``x.expand(s, ...)``) is *shared*: every sample sees the same values,
which lets the first layer run as one large GEMM / convolution with ``s·O`` output channels.

Convolutions over s weight sets run as one grouped convolution on the ``[B, s·C, H, W]`` layout
(``groups = s``); their transposes (the relevance backward) as one grouped transposed convolution
with the same stride, padding and dilation. That layout is kept in channels-last memory, which
oneDNN's convolutions and max-pooling run fastest on; ``[s, B, C, H, W]`` tensors are views of
it, so moving between the two layouts costs no copy.

First layer: when only the mean heatmap is wanted, the transpose of the layer that reads the
input also sums over the samples (:class:`SummedMap`).

Seeded layers: an inner-layer or output explanation seeds one unit (Linear) or one channel
(Conv) per sample and image, so the transposed map of the seeded layer sees a relevance ratio
with a single non-zero unit / channel per row. The engine marks that map (``single_seed``);
without an autograd graph its transpose is then computed from the one weight row / filter that
matters (a gather, or a per-(sample, image) grouped transposed convolution) instead of the dense
product. The result is identical (checked before use); with a graph the dense product is kept.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .rules import is_shared

SPARSE_SEEDS = True      # use the single-unit / single-channel shortcut where marked
_MIN_SPARSE_UNITS = 32   # below this many output units the dense product is as cheap
CHANNELS_LAST = torch.channels_last


def _no_graph(t: torch.Tensor) -> bool:
    return not (torch.is_grad_enabled() and t.requires_grad)


def to_grouped(a: torch.Tensor) -> torch.Tensor:
    """``[s, B, C, H, W]`` → ``[B, s·C, H, W]`` (free for :func:`from_grouped` views)."""
    s, b = a.shape[:2]
    return a.transpose(0, 1).reshape(b, s * a.shape[2], *a.shape[3:])


def from_grouped(t: torch.Tensor, s: int) -> torch.Tensor:
    """``[B, s·C, H, W]`` → ``[s, B, C, H, W]`` (a view; ``t`` contiguous or channels-last)."""
    b = t.shape[0]
    return t.view(b, s, t.shape[1] // s, *t.shape[2:]).transpose(0, 1)


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """``t`` in channels-last memory (no copy when it already is)."""
    return t.contiguous(memory_format=CHANNELS_LAST)


def grouped_channels_last(a: torch.Tensor) -> torch.Tensor:
    """:func:`to_grouped` in channels-last memory, with at most one copy."""
    s, b, c, h, w = a.shape
    t = a.transpose(0, 1)
    if t.stride(1) == c * t.stride(2):  # (s, C) merge into one channel axis without a copy
        g = t.reshape(b, s * c, h, w)
        if g.is_contiguous(memory_format=CHANNELS_LAST):
            return g
    out = torch.empty((b, s * c, h, w), dtype=a.dtype, device=a.device,
                      memory_format=CHANNELS_LAST)
    out.view(b, s, c, h, w).copy_(t)
    return out


def grouped_weight(weight: torch.Tensor) -> torch.Tensor:
    """Per-sample filters ``[s, O, C, kh, kw]`` as one channels-last ``[s·O, C, kh, kw]`` bank."""
    s, o = weight.shape[:2]
    return channels_last(weight.reshape(s * o, *weight.shape[2:]))


def flatten_features(a: torch.Tensor) -> torch.Tensor:
    """``[s, B, ...]`` → ``[s, B, F]`` in the order of ``nn.Flatten`` (C, H, W)."""
    s, b = a.shape[:2]
    if is_shared(a):
        return a[0].reshape(b, -1).unsqueeze(0).expand(s, b, -1)
    return a.transpose(0, 1).reshape(b, s, -1).transpose(0, 1)


class LinearMap:
    """``z = a Wᵀ + b`` per sample: ``a [s,B,I]``, ``W [s,O,I]``, ``b [s,O]``."""

    single_seed = False

    def forward(self, a, weight, bias):
        s, o, i = weight.shape
        if is_shared(a):
            w = weight.reshape(s * o, i).T  # one GEMM for every sample
            z = a[0] @ w if bias is None else torch.addmm(bias.reshape(s * o), a[0], w)
            return z.view(-1, s, o).transpose(0, 1)
        w = weight.transpose(1, 2)
        if bias is None:
            return torch.bmm(a, w)
        return torch.baddbmm(bias.unsqueeze(1), a, w)

    def backward(self, s, weight):
        if (self.single_seed and SPARSE_SEEDS and _no_graph(s)
                and s.shape[-1] >= _MIN_SPARSE_UNITS and int((s != 0).sum(-1).max()) <= 1):
            unit = s.abs().argmax(-1, keepdim=True)                         # [s, B, 1]
            rows = weight.gather(1, unit.expand(-1, -1, weight.shape[-1]))  # W[s, unit, :]
            return rows.mul_(s.gather(-1, unit))
        return torch.bmm(s, weight)

    def backward_sum(self, s, weight):
        """``Σ_samples W_sᵀ s_s`` as ``[1, B, I]``: one GEMM over the stacked samples."""
        if self.single_seed:
            return self.backward(s, weight).sum(0, keepdim=True)
        n, b, o = s.shape
        return (s.transpose(0, 1).reshape(b, n * o) @ weight.reshape(n * o, -1)).unsqueeze(0)


class ConvMap:
    """2-d convolution per sample (groups = 1 per sample) and its transpose.

    ``in_hw`` is the spatial size of the layer's input, needed to undo the rows and columns a
    strided convolution drops (the transposed convolution's ``output_padding``).
    """

    single_seed = False

    def __init__(self, stride, padding, dilation, in_hw):
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.in_hw = tuple(in_hw)

    def forward(self, a, weight, bias):
        s, o = weight.shape[:2]
        w = grouped_weight(weight)
        b = None if bias is None else bias.reshape(s * o)
        if is_shared(a):
            out = F.conv2d(a[0], w, b, self.stride, self.padding, self.dilation)
        else:
            out = F.conv2d(grouped_channels_last(a), w, b, self.stride, self.padding,
                           self.dilation, groups=s)
        return from_grouped(channels_last(out), s)

    def output_padding(self, out_hw, kernel):
        pads = []
        for n_in, n_out, k, st, p, d in zip(self.in_hw, out_hw, kernel, self.stride,
                                            self.padding, self.dilation):
            pads.append(n_in - ((n_out - 1) * st - 2 * p + d * (k - 1) + 1))
        return tuple(pads)

    def backward(self, s_rel, weight):
        s, o = weight.shape[:2]
        kernel = weight.shape[-2:]
        out_pad = self.output_padding(s_rel.shape[-2:], kernel)
        if self.single_seed and SPARSE_SEEDS and _no_graph(s_rel) and o > 1:
            active = (s_rel != 0).flatten(3).any(-1)                     # [s, B, O]
            if int(active.sum(-1).max()) <= 1:
                return self._single_channel_backward(s_rel, weight, active, out_pad)
        out = F.conv_transpose2d(grouped_channels_last(s_rel), grouped_weight(weight), None,
                                 self.stride, self.padding, out_pad, groups=s,
                                 dilation=self.dilation)
        return from_grouped(channels_last(out), s)

    def backward_sum(self, s_rel, weight):
        """``Σ_samples`` of the transposed convolutions as ``[1, B, C, H, W]``: one dense
        transposed convolution whose input channels are every sample's output channels."""
        if self.single_seed:
            return self.backward(s_rel, weight).sum(0, keepdim=True)
        out = F.conv_transpose2d(grouped_channels_last(s_rel), grouped_weight(weight), None,
                                 self.stride, self.padding,
                                 self.output_padding(s_rel.shape[-2:], weight.shape[-2:]),
                                 dilation=self.dilation)
        return out.unsqueeze(0)

    def _single_channel_backward(self, s_rel, weight, active, out_pad):
        """Transposed convolution when each (sample, image) has one non-zero channel."""
        s, b = s_rel.shape[:2]
        c_in, kh, kw = weight.shape[2:]
        channel = active.to(torch.uint8).argmax(-1)                     # [s, B]
        maps = s_rel.gather(2, channel[:, :, None, None, None].expand(
            -1, -1, 1, *s_rel.shape[-2:]))                              # [s, B, 1, H', W']
        filters = weight.gather(1, channel[:, :, None, None, None].expand(
            -1, -1, c_in, kh, kw))                                      # [s, B, C, kh, kw]
        out = F.conv_transpose2d(maps.transpose(0, 1).reshape(1, b * s, *s_rel.shape[-2:]),
                                 filters.transpose(0, 1).reshape(b * s, c_in, kh, kw), None,
                                 self.stride, self.padding, out_pad, groups=b * s,
                                 dilation=self.dilation)
        return from_grouped(channels_last(out.view(b, s * c_in, *out.shape[-2:])), s)


class SummedMap:
    """An affine map whose transpose also sums over the samples (``[1, B, ...]`` results).

    Used for the layer that reads the (sample-shared) input when only the mean heatmap is
    wanted: ``mean_s a ⊙ W_sᵀ s_s = a ⊙ (Σ_s W_sᵀ s_s) / S`` needs one large product
    instead of S small ones and never holds the per-sample input relevances.
    """

    def __init__(self, inner):
        self.inner = inner

    def forward(self, a, weight, bias):
        return self.inner.forward(a, weight, bias)

    def backward(self, s, weight):
        return self.inner.backward_sum(s, weight)


class DiagonalMap:
    """``z = a·w + b`` per feature (``[s,B,F]``) or channel (``[s,B,C,H,W]``) with
    ``w``, ``b`` of shape ``[s, C]``: a standalone BatchNorm. Its transpose is ``s·w``."""

    single_seed = False

    def __init__(self, ndim: int):
        self.ndim = ndim

    def _view(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], 1, t.shape[1], *([1] * (self.ndim - 3)))

    def forward(self, a, weight, bias):
        z = a * self._view(weight)
        return z if bias is None else z + self._view(bias)

    def backward(self, s, weight):
        return s * self._view(weight)
