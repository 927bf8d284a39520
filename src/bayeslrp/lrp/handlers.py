"""Which node explains which module: a table of module type → handler (SPEC §4).

:func:`compile_network` opens a network into its chain of modules
(:func:`~bayeslrp.lrp.graph.flat_entries`) and asks the table for each one's node. A handler
may take the next module too (a BatchNorm folded into the Linear / Conv2d before it). A new
module kind is supported by :func:`register`-ing a handler for it, not by a branch here.

Every handler has a *kind*: ``"affine"`` (a learnable layer under the rule: Linear, Conv2d,
a residual block), ``"norm"`` (a BatchNorm: folded into the affine layer right before it,
otherwise an affine layer of its own), ``"activation"`` (element-wise) or ``"other"``.
Learnable layers, the positions an explanation's ``layer`` names, are the affine modules and
the BatchNorms with no layer to fold into.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from .. import nets
from ..errors import BayesLRPError
from .graph import Entry, UnsupportedCall, flat_entries
from .layers import (ACTIVATIONS, Activation, BatchNormAffine, Dense, Flatten, Node, Normalize,
                     Passthrough)
from .pooling import AdaptiveMaxPool, AvgPool, MaxPool
from .residual import Block

__all__ = ["register", "compile_network", "network_entries", "learnable_positions",
           "check_network", "supported_modules"]

#: ``make(entries, i) -> (node, number of entries it covers)``
Make = Callable[[list[Entry], int], tuple[Node, int]]


@dataclass(frozen=True)
class Handler:
    make: Make
    kind: str


_TABLE: dict[type, Handler] = {}
_FOLDS = {nn.Linear: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d}


def register(types, kind: str = "other"):
    """Decorator: ``make`` explains modules of ``types`` (exact types and subclasses that keep
    their base's ``forward``)."""
    def deco(make: Make) -> Make:
        for t in (types if isinstance(types, tuple) else (types,)):
            _TABLE[t] = Handler(make, kind)
        return make
    return deco


def handler_for(module: nn.Module) -> Handler | None:
    """The handler of ``module``'s type, or of the nearest registered base whose ``forward``
    it does not override; None when LRP has none."""
    t = type(module)
    if t in _TABLE:
        return _TABLE[t]
    for base in t.__mro__[1:]:
        if base in _TABLE:
            return _TABLE[base] if t.forward is base.forward else None
    return None


def supported_modules() -> str:
    """The supported module types, for error messages."""
    return ", ".join(t.__name__ for t in _TABLE) + ", nested nn.Sequential, torch.fx-traceable " \
        "chains of these"


def _folds_into(entries: list[Entry], i: int) -> bool:
    """Whether the BatchNorm at ``i`` is folded into the layer right before it (BatchNorm1d
    after a Linear, BatchNorm2d after a Conv2d)."""
    if i == 0:
        return False
    prev, bn = entries[i - 1].module, entries[i].module
    if handler_for(prev) is None or handler_for(bn) is None:
        return False
    return any(isinstance(prev, layer) and isinstance(bn, norm) for layer, norm in _FOLDS.items())


# --------------------------------------------------------------------------- handlers
def _dense(entries, i):
    e = entries[i]
    if i + 1 < len(entries) and _folds_into(entries, i + 1):
        nxt = entries[i + 1]
        return Dense(e.module, e.name, i, nxt.module, nxt.name, last=i + 1), 2
    return Dense(e.module, e.name, i), 1


register((nn.Linear, nn.Conv2d), "affine")(_dense)
register(nets.BasicBlock, "affine")(lambda es, i: (Block(es[i].module, i, es[i].name), 1))
register((nn.BatchNorm1d, nn.BatchNorm2d), "norm")(
    lambda es, i: (BatchNormAffine(es[i].module, es[i].name, i), 1))
register(ACTIVATIONS, "activation")(lambda es, i: (Activation(es[i].module, i), 1))
register(nn.Flatten)(lambda es, i: (Flatten(es[i].module, i), 1))
register((nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d))(
    lambda es, i: (Passthrough(i), 1))
register(nets.Normalize)(lambda es, i: (Normalize(es[i].name, i), 1))
register(nn.MaxPool2d)(lambda es, i: (MaxPool(es[i].module, i), 1))
register(nn.AdaptiveMaxPool2d)(lambda es, i: (AdaptiveMaxPool(es[i].module, i), 1))
register((nn.AvgPool2d, nn.AdaptiveAvgPool2d, nets.GlobalAvgPool2d))(
    lambda es, i: (AvgPool(es[i].module, i), 1))


# --------------------------------------------------------------------------- compile
def network_entries(net: nn.Module) -> list[Entry]:
    """The chain of modules LRP walks (layer indices are its positions)."""
    if not isinstance(net, nn.Module):
        raise BayesLRPError(f"LRP needs a torch nn.Module network (got {type(net).__name__})")
    return flat_entries(net, lambda m: handler_for(m) is not None)


def _handler(entries: list[Entry], i: int) -> Handler:
    e = entries[i]
    h = handler_for(e.module)
    if h is None:
        where = f"position {i}" if e.name == str(i) else f"position {i} ({e.name!r})"
        if isinstance(e.module, UnsupportedCall):
            raise BayesLRPError(f"unsupported operation {e.module.what} at {where} for LRP; "
                                f"write it as a module; supported: {supported_modules()}")
        raise BayesLRPError(f"unsupported module {type(e.module).__name__} at {where} for LRP; "
                            f"supported: {supported_modules()}")
    return h


def check_entries(entries: list[Entry]) -> None:
    """Raise for the first module of ``entries`` LRP has no handler for."""
    for i in range(len(entries)):
        _handler(entries, i)


def learnable_positions(entries: list[Entry]) -> list[int]:
    """Positions of the learnable layers: affine modules and unfolded BatchNorms."""
    out = []
    for i in range(len(entries)):
        h = handler_for(entries[i].module)
        if h is not None and (h.kind == "affine" or h.kind == "norm"
                              and not _folds_into(entries, i)):
            out.append(i)
    return out


def kind_at(entries: list[Entry], i: int) -> str | None:
    h = handler_for(entries[i].module)
    return None if h is None else h.kind


def compile_network(net: nn.Module, stop: int | None = None) -> list[Node]:
    """Nodes for the chain positions ``0..stop`` (all when ``stop`` is None).

    Raises
    ------
    BayesLRPError
        For a module LRP cannot explain, naming it, its position and the supported list.
    """
    entries = network_entries(net)
    stop = len(entries) - 1 if stop is None else stop
    nodes: list[Node] = []
    i = 0
    while i <= stop:
        node, used = _handler(entries, i).make(entries, i)
        nodes.append(node)
        i += used
    return nodes


def check_network(net: nn.Module) -> None:
    """Raise :class:`~bayeslrp.errors.BayesLRPError` (one line) unless LRP can explain ``net``
    at its output (every module up to the last learnable layer; what follows it, e.g. a
    softmax, is not explained). Call it before training a network that will be explained."""
    from .targets import resolve_layer

    compile_network(net, resolve_layer(net, None).stop)
