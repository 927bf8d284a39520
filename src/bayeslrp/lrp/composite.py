"""Composite LRP: a different rule per affine layer (Montavon et al. 2019, Zennit presets).

A :class:`Composite` maps *selectors* to rules: a learnable-layer index (the Sequential
position, e.g. ``3``), ``"input"`` (the first affine layer, the one reading the pixels),
``"conv"`` (every Conv2d, and a BatchNorm2d with no layer to fold into), ``"dense"`` (every
Linear, and such a BatchNorm1d) and ``"default"`` (everything else). The
most specific selector wins: index, then ``input``, then ``conv`` / ``dense``, then
``default``. :meth:`Composite.bind` resolves the map for a compiled network before the
relevance walk; each affine node then asks for its rule by its ``state_dict`` prefix.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import BayesLRPError
from .rules import DEFAULT_STABILIZER, Rule, ZBox

__all__ = ["Composite", "SELECTORS"]

SELECTORS = ("input", "conv", "dense", "default")


def _affine_nodes(nodes) -> list:
    """Every affine (Linear / Conv2d) node in walk order, residual blocks opened."""
    out = []
    for node in nodes:
        if hasattr(node, "conv1") and hasattr(node, "conv2"):  # a residual block
            out += [node.conv1, node.conv2]
        elif hasattr(node, "kind") and hasattr(node, "prefix"):  # Linear, Conv2d, BatchNorm
            out.append(node)
    return out


def _reads_raw_input(nodes, first_affine) -> bool:
    """Whether only shape-keeping nodes (Flatten, Identity, Dropout) precede the first layer."""
    for node in nodes:
        if node is first_affine:
            return True
        if type(node).__name__ not in ("Flatten", "Passthrough"):
            return False
    return False


@dataclass(frozen=True)
class Composite(Rule):
    """Per-layer rules. ``entries``: ``(selector, Rule)`` pairs; a selector is an ``int``
    layer index or one of :data:`SELECTORS`. Layers no selector covers get ``default``
    (required unless every layer is covered)."""

    entries: tuple = ()
    name = "composite"

    def __post_init__(self):
        seen = set()
        for selector, rule in self.entries:
            if not (isinstance(selector, int) and not isinstance(selector, bool)
                    or selector in SELECTORS):
                raise BayesLRPError(f"composite selector {selector!r} is not known; use a layer "
                                    f"index or one of {', '.join(SELECTORS)}")
            if not isinstance(rule, Rule) or isinstance(rule, Composite):
                raise BayesLRPError(f"composite entry {selector!r} needs a single LRP rule")
            if selector in seen:
                raise BayesLRPError(f"composite selector {selector!r} is given twice")
            seen.add(selector)

    def relevance(self, layer, a, z, weight, bias, relevance):
        raise BayesLRPError("a composite rule must be bound to a network first (Composite.bind)")

    def bind(self, nodes) -> "BoundComposite":
        table = dict(self.entries)
        affine = _affine_nodes(nodes)
        learnable = {node.first for node in affine}
        for selector in table:
            if isinstance(selector, int) and selector not in learnable:
                raise BayesLRPError(f"composite layer {selector} is not a learnable layer of "
                                    f"the explained network; choose from {sorted(learnable)}")
        by_prefix = {}
        for i, node in enumerate(affine):
            kind = node.kind  # "conv" / "dense" (a standalone BatchNorm2d / 1d counts as one)
            for selector in (node.first, "input" if i == 0 else None, kind, "default"):
                if selector is not None and selector in table:
                    by_prefix[node.prefix] = table[selector]
                    break
            else:
                raise BayesLRPError(f"the composite has no rule for layer {node.first} "
                                    f"({kind}); add a 'default' entry")
            rule = by_prefix[node.prefix]
            if isinstance(rule, ZBox) and not (i == 0 and _reads_raw_input(nodes, node)):
                raise BayesLRPError(f"the z^B rule needs the raw pixels as its input; layer "
                                    f"{node.first} does not read them")
        return BoundComposite(stabilizer=self.stabilizer, by_prefix=tuple(by_prefix.items()))


@dataclass(frozen=True)
class BoundComposite(Rule):
    """A :class:`Composite` resolved for one network: ``state_dict`` prefix → rule."""

    by_prefix: tuple = ()
    stabilizer: float = DEFAULT_STABILIZER
    name = "composite"

    def rule_for(self, prefix: str) -> Rule:
        return dict(self.by_prefix)[prefix]

    def relevance(self, layer, a, z, weight, bias, relevance):
        raise BayesLRPError("a bound composite gives each layer its own rule (rule_for)")
