"""Affine maps with one weight set per posterior sample, vectorised over samples and images.

Activations are ``[s, B, *features]`` tensors (s samples of the chunk, B images). A tensor whose
sample axis has stride 0 (``x.expand(s, ...)``) is *shared*: every sample sees the same values,
which lets the first layer run as one large GEMM / convolution with ``s·O`` output channels.

Convolutions over s weight sets run as one grouped convolution on the ``[B, s·C, H, W]`` layout
(``groups = s``); their transposes (the relevance backward) as one grouped transposed convolution
with the same stride, padding and dilation. Convolution outputs are returned as
``[s, B, ...]`` views of ``[B, s, ...]`` memory, so the next convolution needs no copy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .rules import is_shared


def to_grouped(a: torch.Tensor) -> torch.Tensor:
    """``[s, B, C, H, W]`` → ``[B, s·C, H, W]`` (free when ``a`` is a view of ``[B, s, ...]``)."""
    s, b = a.shape[:2]
    return a.transpose(0, 1).reshape(b, s * a.shape[2], *a.shape[3:])


def from_grouped(t: torch.Tensor, s: int) -> torch.Tensor:
    """``[B, s·C, H, W]`` → ``[s, B, C, H, W]`` (a view)."""
    b = t.shape[0]
    return t.view(b, s, t.shape[1] // s, *t.shape[2:]).transpose(0, 1)


def flatten_features(a: torch.Tensor) -> torch.Tensor:
    """``[s, B, ...]`` → ``[s, B, F]``, keeping ``[B, s, ...]`` memory without a copy."""
    s, b = a.shape[:2]
    if is_shared(a):
        return a[0].reshape(b, -1).unsqueeze(0).expand(s, b, -1)
    return a.transpose(0, 1).reshape(b, s, -1).transpose(0, 1)


class LinearMap:
    """``z = a Wᵀ + b`` per sample: ``a [s,B,I]``, ``W [s,O,I]``, ``b [s,O]``."""

    def forward(self, a, weight, bias):
        s, o, i = weight.shape
        if is_shared(a):
            z = a[0] @ weight.reshape(s * o, i).T  # one GEMM for every sample
            if bias is not None:
                z = z + bias.reshape(s * o)
            return z.view(-1, s, o).transpose(0, 1)
        z = torch.bmm(a, weight.transpose(1, 2))
        if bias is not None:
            z = z + bias.unsqueeze(1)
        return z

    def backward(self, s, weight):
        return torch.bmm(s, weight)


class ConvMap:
    """2-d convolution per sample (groups = 1 per sample) and its transpose.

    ``in_hw`` is the spatial size of the layer's input, needed to undo the rows and columns a
    strided convolution drops (the transposed convolution's ``output_padding``).
    """

    def __init__(self, stride, padding, dilation, in_hw):
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.in_hw = tuple(in_hw)

    def forward(self, a, weight, bias):
        s, o = weight.shape[:2]
        w = weight.reshape(s * o, *weight.shape[2:])
        b = None if bias is None else bias.reshape(s * o)
        if is_shared(a):
            out = F.conv2d(a[0], w, b, self.stride, self.padding, self.dilation)
        else:
            out = F.conv2d(to_grouped(a), w, b, self.stride, self.padding, self.dilation, groups=s)
        return from_grouped(out, s)

    def output_padding(self, out_hw, kernel):
        pads = []
        for n_in, n_out, k, st, p, d in zip(self.in_hw, out_hw, kernel, self.stride,
                                            self.padding, self.dilation):
            pads.append(n_in - ((n_out - 1) * st - 2 * p + d * (k - 1) + 1))
        return tuple(pads)

    def backward(self, s_rel, weight):
        s, o = weight.shape[:2]
        kernel = weight.shape[-2:]
        w = weight.reshape(s * o, *weight.shape[2:])
        out = F.conv_transpose2d(to_grouped(s_rel), w, None, self.stride, self.padding,
                                 self.output_padding(s_rel.shape[-2:], kernel), groups=s,
                                 dilation=self.dilation)
        return from_grouped(out, s)
