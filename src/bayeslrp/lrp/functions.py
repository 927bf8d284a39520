"""The functional calls of a traced ``forward`` as the modules LRP handles.

``torch.fx`` records ``F.relu(x)``, ``torch.flatten(x, 1)``, ``x.view(x.size(0), -1)``,
``F.max_pool2d(x, 2)``, ... as function or method calls. :func:`module_for_call` turns each into
the equivalent module (``nn.ReLU()``, ``nn.Flatten()``, ``nn.MaxPool2d(2)``, ...) so that one
table of module handlers serves ``nn.Sequential`` networks and custom ``forward`` methods.
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

#: Shape queries: ``getattr(x, "shape")`` and its ``[0]``.
AUXILIARY = (getattr, operator.getitem)


def _arg(node: fx.Node, i: int, name: str, default):
    """Positional argument ``i`` (counting the input as 0) or keyword ``name`` of a call."""
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _flatten(node: fx.Node) -> nn.Module | None:
    start = _arg(node, 1, "start_dim", 0)
    end = _arg(node, 2, "end_dim", -1)
    return nn.Flatten() if (start, end) == (1, -1) else None


def _reshape(node: fx.Node) -> nn.Module | None:
    """``x.view(B, -1)`` / ``x.reshape(x.size(0), -1)``: a flatten that keeps the batch."""
    sizes = node.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    if len(sizes) != 2:
        return None
    batch, rest = sizes
    if isinstance(batch, fx.Node) and isinstance(rest, int):  # x.size(0) / x.shape[0]
        return nn.Flatten()
    if batch == -1 and isinstance(rest, int) and rest > 0:
        return nn.Flatten()  # a wrong feature count fails in the next layer, as in torch
    return None


def _max_pool(node: fx.Node) -> nn.Module:
    return nn.MaxPool2d(_arg(node, 1, "kernel_size", None), _arg(node, 2, "stride", None),
                        _arg(node, 3, "padding", 0), _arg(node, 4, "dilation", 1),
                        ceil_mode=_arg(node, 5, "ceil_mode", False))


def _avg_pool(node: fx.Node) -> nn.Module:
    return nn.AvgPool2d(_arg(node, 1, "kernel_size", None), _arg(node, 2, "stride", None),
                        _arg(node, 3, "padding", 0), _arg(node, 4, "ceil_mode", False),
                        _arg(node, 5, "count_include_pad", True),
                        _arg(node, 6, "divisor_override", None))


def _identity(node: fx.Node) -> nn.Module:
    return nn.Identity()


_FUNCTIONS = {
    F.relu: lambda n: nn.ReLU(),
    torch.relu: lambda n: nn.ReLU(),
    F.leaky_relu: lambda n: nn.LeakyReLU(_arg(n, 1, "negative_slope", 0.01)),
    F.elu: lambda n: nn.ELU(_arg(n, 1, "alpha", 1.0)),
    F.gelu: lambda n: nn.GELU(_arg(n, 1, "approximate", "none")),
    F.silu: lambda n: nn.SiLU(),
    F.softplus: lambda n: nn.Softplus(_arg(n, 1, "beta", 1.0), _arg(n, 2, "threshold", 20.0)),
    torch.tanh: lambda n: nn.Tanh(),
    F.tanh: lambda n: nn.Tanh(),
    torch.sigmoid: lambda n: nn.Sigmoid(),
    F.sigmoid: lambda n: nn.Sigmoid(),
    F.dropout: _identity,  # LRP explains the network in eval mode
    F.max_pool2d: _max_pool,
    F.avg_pool2d: _avg_pool,
    F.adaptive_avg_pool2d: lambda n: nn.AdaptiveAvgPool2d(_arg(n, 1, "output_size", None)),
    F.adaptive_max_pool2d: lambda n: nn.AdaptiveMaxPool2d(_arg(n, 1, "output_size", None)),
    torch.flatten: _flatten,
}

_METHODS = {
    "relu": lambda n: nn.ReLU(),
    "tanh": lambda n: nn.Tanh(),
    "sigmoid": lambda n: nn.Sigmoid(),
    "flatten": _flatten,
    "view": _reshape,
    "reshape": _reshape,
    "contiguous": _identity,
}


def module_for_call(node: fx.Node) -> nn.Module | None:
    """The module equivalent to a traced ``call_function`` / ``call_method`` node, or None."""
    if node.op == "call_function":
        make = _FUNCTIONS.get(node.target)
    elif node.op == "call_method":
        make = _METHODS.get(node.target)
    else:
        make = None
    return None if make is None else make(node)
