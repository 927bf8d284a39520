"""A network as a flat chain of modules, the form LRP walks (SPEC §4 "layer handling").

:func:`flat_entries` turns a network into a list of :class:`Entry` — a module and the
``state_dict`` prefix of its parameters. Nested ``nn.Sequential`` containers are opened in
order. A module with its own ``forward`` is traced with ``torch.fx``; its graph must be a chain
(each step reads only the previous step's output), and the functional calls it makes
(``F.relu``, ``torch.flatten``, ``x.view(x.size(0), -1)``, ``F.max_pool2d``, ...) become the
equivalent modules (:mod:`~bayeslrp.lrp.functions`). The positions of the list are the layer
indices of an explanation; for a top-level ``nn.Sequential`` without nesting they are its own
positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.fx as fx
from torch import nn

from ..errors import BayesLRPError
from .functions import AUXILIARY, module_for_call


@dataclass(frozen=True)
class Entry:
    """One step of the chain: ``module`` and the ``state_dict`` prefix of its parameters."""

    name: str
    module: nn.Module


def _plain_sequential(m: nn.Module) -> bool:
    return isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward


class _Tracer(fx.Tracer):
    """Keeps every module LRP knows as one call (bayeslrp's own blocks included)."""

    def __init__(self, is_known):
        super().__init__()
        self.is_known = is_known

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if _plain_sequential(m):
            return False
        return self.is_known(m) or super().is_leaf_module(m, qualname)


def flat_entries(net: nn.Module, is_known) -> list[Entry]:
    """The chain of modules of ``net``.

    Parameters
    ----------
    net : nn.Module
        The network.
    is_known : callable
        ``is_known(module)``: whether LRP has a handler for the module itself (it is then kept
        whole instead of being opened or traced).

    Raises
    ------
    BayesLRPError
        When a custom ``forward`` cannot be traced or is not a chain.
    """
    out: list[Entry] = []
    _collect(net, "", is_known, out)
    return out


def _collect(m: nn.Module, prefix: str, is_known, out: list[Entry]) -> None:
    if _plain_sequential(m):
        for name, child in m.named_children():
            _collect(child, _join(prefix, name), is_known, out)
        return
    if is_known(m) or not _has_own_forward(m):
        out.append(Entry(prefix, m))
        return
    out.extend(_traced(m, prefix, is_known))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _has_own_forward(m: nn.Module) -> bool:
    """Whether ``m`` is a user container (forward written in Python, not a torch leaf)."""
    return not type(m).__module__.startswith("torch.")


def _traced(m: nn.Module, prefix: str, is_known) -> list[Entry]:
    where = type(m).__name__
    try:
        graph = _Tracer(is_known).trace(m)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError, ...)
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise BayesLRPError(f"{where}.forward cannot be traced by torch.fx for LRP ({reason}); "
                            "write the network as an nn.Sequential") from None
    entries: list[Entry] = []
    current, aux = None, set()
    for node in graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                raise BayesLRPError(f"{where}.forward takes more than one input; LRP needs "
                                    "a network of one image tensor")
            current = node
            continue
        if node.op == "output":
            if node.args[0] is not current:
                raise BayesLRPError(f"{where}.forward does not return its last step's output "
                                    "(a tensor); LRP needs a chain of layers")
            continue
        if node.op == "get_attr":
            raise BayesLRPError(f"{where}.forward uses the tensor {node.target!r} directly; LRP "
                                "needs its parameters inside modules (nn.Linear, nn.Conv2d, ...)")
        if _is_auxiliary(node, aux):
            aux.add(node)
            continue
        inputs = [a for a in node.all_input_nodes if a not in aux]
        if any(a is not current for a in inputs) or not inputs:
            raise BayesLRPError(f"{where}.forward is not a chain at {node.format_node()!r}: "
                                "each step must read only the previous step's output (residual "
                                "connections need an nn.Sequential of bayeslrp blocks)")
        entries.extend(_entries_of(m, node, prefix, where, is_known))
        current = node
    return entries


def _is_auxiliary(node: fx.Node, aux: set) -> bool:
    """``x.size(0)``, ``x.shape``, ``x.shape[0]``: shape queries that feed a reshape."""
    if node.op == "call_method" and node.target == "size":
        return True
    if node.op == "call_function" and node.target in AUXILIARY:
        first = node.args[0] if node.args else None
        return node.target is getattr or first in aux
    return False


def _entries_of(root: nn.Module, node: fx.Node, prefix: str, where: str,
                is_known) -> list[Entry]:
    if node.op == "call_module":
        sub = root.get_submodule(node.target)
        out: list[Entry] = []
        _collect(sub, _join(prefix, node.target), is_known, out)
        return out
    module = module_for_call(node)
    if module is None:  # reported when the chain is compiled, if it is reached
        module = UnsupportedCall(f"{node.op} {getattr(node.target, '__name__', node.target)}"
                                 f" in {where}.forward")
    return [Entry(_join(prefix, f"<{node.name}>"), module)]


class UnsupportedCall(nn.Module):
    """Stands for a traced call LRP has no module for (``what`` describes it)."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what
