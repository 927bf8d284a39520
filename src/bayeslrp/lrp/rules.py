"""LRP propagation rules for Linear and Conv2d layers (SPEC §4; Montavon et al. 2019).

A rule is a small declarative object. It sees one affine layer through a :class:`AffineMap` —
``forward(a, W, b)`` computes ``z = a·W + b`` and ``backward(s, W)`` computes ``Wᵀ·s`` (for a
convolution: the transposed convolution) — and turns the relevance ``R`` of the layer's outputs
into the relevance of its inputs. Rules never look at tensor layouts, so the same rule serves
Linear and Conv2d layers, a single network and a stack of posterior samples.

All operations are ordinary differentiable torch operations: nothing is detached, so the
relevance is differentiable w.r.t. the input when the caller builds a graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ..errors import BayesLRPError

DEFAULT_STABILIZER = 1e-6


class AffineMap(Protocol):
    """The linear part of a layer, for one stack of per-sample weights."""

    def forward(self, a: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor: ...

    def backward(self, s: torch.Tensor, weight: torch.Tensor) -> torch.Tensor: ...


def stabilize(z: torch.Tensor, delta: float) -> torch.Tensor:
    """``z + delta·sign(z)`` (``sign(0) = +1``): a denominator pushed away from zero.

    Without a graph this is computed as ``copysign(|z| + delta, z)`` (two passes fewer), which
    treats ``-0.0`` as negative; a ``-0.0`` output only arises when every contribution to it is
    zero, so its relevance is zero either way.
    """
    if z.requires_grad:
        step = z.new_tensor(delta)
        return z + torch.where(z >= 0, step, -step)
    return z.abs().add_(delta).copysign_(z)


def divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator``, reusing the denominator's memory when no graph is built."""
    if torch.is_grad_enabled() and (numerator.requires_grad or denominator.requires_grad):
        return numerator / denominator
    if denominator.shape != numerator.shape or denominator.dtype != numerator.dtype:
        return numerator / denominator
    return torch.div(numerator, denominator, out=denominator)


def times(c: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``a * c`` for a freshly computed ``c``, in place when no graph is built."""
    if torch.is_grad_enabled() and (c.requires_grad or a.requires_grad):
        return a * c
    if torch.broadcast_shapes(c.shape, a.shape) != c.shape or c.dtype != a.dtype:
        return a * c
    return c.mul_(a)


def is_shared(a: torch.Tensor) -> bool:
    """True when a ``[s, B, ...]`` tensor holds one value for every sample (e.g. the input)."""
    return a.shape[0] == 1 or a.stride(0) == 0


def elementwise(fn, a: torch.Tensor) -> torch.Tensor:
    """``fn(a)`` that keeps a sample-shared (expanded) tensor shared instead of materialising it."""
    if a.shape[0] > 1 and a.stride(0) == 0:
        return fn(a[0]).unsqueeze(0).expand(a.shape)
    return fn(a)


def positive_part(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(min=0)


@dataclass(frozen=True)
class Rule:
    """Base class; ``stabilizer`` is the δ of the proportional nodes (pooling, residual add)."""

    stabilizer: float = DEFAULT_STABILIZER

    name = "rule"

    def relevance(self, layer: AffineMap, a: torch.Tensor, z: torch.Tensor | None,
                  weight: torch.Tensor, bias: torch.Tensor | None,
                  relevance: torch.Tensor) -> torch.Tensor:
        """Relevance of the inputs ``a`` of an affine layer.

        Parameters
        ----------
        layer : AffineMap
            The layer's forward / transposed maps.
        a : Tensor
            The layer's input activations.
        z : Tensor or None
            The layer's actual output ``a·W + b`` from the forward pass (used by the ε rule).
        weight, bias : Tensor
            The layer's (per-sample) weights; BatchNorm already folded in.
        relevance : Tensor
            Relevance of the layer's outputs, shaped like ``z``.
        """
        raise NotImplementedError

    def rule_for(self, prefix: str) -> "Rule":
        """The rule of the affine layer ``prefix`` (a composite answers per layer)."""
        return self

    def bind(self, nodes) -> "Rule":
        """This rule for a compiled network ``nodes`` (a composite resolves its map here)."""
        return self

    def proportional(self, parts: list[torch.Tensor],
                     relevance: torch.Tensor) -> list[torch.Tensor]:
        """Split ``relevance`` of a sum in proportion to its summands (residual add)."""
        ratio = relevance / stabilize(sum(parts), self.stabilizer)
        return [p * ratio for p in parts]


@dataclass(frozen=True)
class Epsilon(Rule):
    r"""ε rule: :math:`R_j = \sum_k a_j w_{jk} R_k / (z_k + ε\,\mathrm{sign}(z_k))`.

    ``z_k = Σ_j a_j w_jk + b_k`` is the layer's actual output; ``sign(0) = +1``. Default ε = 0.1
    (the paper). ε → 0 is LRP-0.
    """

    epsilon: float = 0.1
    name = "epsilon"

    def relevance(self, layer, a, z, weight, bias, relevance):
        if z is None:
            z = layer.forward(a, weight, bias)
        s = divide(relevance, stabilize(z, self.epsilon))
        return times(layer.backward(s, weight), a)


@dataclass(frozen=True)
class Gamma(Rule):
    r"""γ rule: the ε-free rule with weights :math:`w + γ w^+` and bias :math:`b + γ b^+`.

    :math:`R_j = \sum_k a_j (w_{jk} + γ w^+_{jk}) R_k / \sum_{0,j} a_j (w_{jk} + γ w^+_{jk})` —
    the textbook rule (Montavon et al. 2019), not TorchLRP's ``w + γ (w^+)^2``. Default γ = 0.1.
    The denominator is pushed away from zero by ``stabilizer`` (δ = 1e-6, keeping its sign).
    """

    gamma: float = 0.1
    name = "gamma"

    def relevance(self, layer, a, z, weight, bias, relevance):
        w = weight + self.gamma * positive_part(weight)
        b = None if bias is None else bias + self.gamma * positive_part(bias)
        zg = layer.forward(a, w, b)
        s = divide(relevance, stabilize(zg, self.stabilizer))
        return times(layer.backward(s, w), a)


@dataclass(frozen=True)
class AlphaBeta(Rule):
    r"""αβ rule: positive and negative contributions :math:`(a_j w_{jk})^\pm` apart.

    :math:`R_j = \sum_k \big(α\,(a_j w_{jk})^+ / z^+_k - β\,(a_j w_{jk})^- / z^-_k\big) R_k`,
    :math:`z^\pm_k = \sum_j (a_j w_{jk})^\pm + b^\pm_k`. Requires α − β = 1; default α = 1,
    β = 0.
    Signed inputs are handled exactly: ``(a w)^+ = a^+ w^+ + a^- w^-`` and
    ``(a w)^- = a^+ w^- + a^- w^+``. Denominators are pushed away from zero by δ = 1e-6.
    """

    alpha: float = 1.0
    beta: float = 0.0
    name = "alphabeta"

    def __post_init__(self):
        if abs(self.alpha - self.beta - 1.0) > 1e-9:
            raise BayesLRPError(
                f"the alpha-beta rule needs alpha - beta = 1 (got alpha={self.alpha}, "
                f"beta={self.beta}); e.g. alpha=2, beta=1")
        if self.beta < 0:
            raise BayesLRPError(f"the alpha-beta rule needs beta >= 0 (got {self.beta})")

    def relevance(self, layer, a, z, weight, bias, relevance):
        a_pos = elementwise(positive_part, a)
        # a_pos + a_neg == a exactly, also for the derivative at a == 0
        a_neg = elementwise(lambda t: t - positive_part(t), a)
        has_neg = bool((a_neg != 0).any())
        w_pos = positive_part(weight)
        w_neg = weight - w_pos
        b_pos = None if bias is None else positive_part(bias)
        b_neg = None if bias is None else bias - b_pos

        def part(w_for_pos, w_for_neg, b, coeff, delta):
            # contributions a_pos·w_for_pos + a_neg·w_for_neg (+ b): one sign of (a w)
            zp = layer.forward(a_pos, w_for_pos, b)
            if has_neg:
                zp = zp + layer.forward(a_neg, w_for_neg, None)
            s = coeff * relevance / (zp + delta)
            out = a_pos * layer.backward(s, w_for_pos)
            if has_neg:
                out = out + a_neg * layer.backward(s, w_for_neg)
            return out

        result = part(w_pos, w_neg, b_pos, self.alpha, self.stabilizer)
        if self.beta:
            result = result - part(w_neg, w_pos, b_neg, self.beta, -self.stabilizer)
        return result


@dataclass(frozen=True)
class ZBox(Rule):
    r"""z^B rule for an input layer whose inputs lie in ``[low, high]`` (Montavon et al. 2017).

    :math:`R_j = \sum_k (a_j w_{jk} - l_j w^+_{jk} - h_j w^-_{jk}) R_k /
    \sum_{j'} (a_{j'} w_{j'k} - l_{j'} w^+_{j'k} - h_{j'} w^-_{j'k})`. The bias cancels (as in
    Zennit's ZBox, which also subtracts ``b^+`` and ``b^-``). Every contribution is ≥ 0 when
    ``low ≤ a ≤ high``; the denominator is pushed away from zero by ``stabilizer``.
    """

    low: float = 0.0
    high: float = 1.0
    name = "zbox"

    def __post_init__(self):
        if not self.low < self.high:
            raise BayesLRPError(f"the z^B rule needs low < high (got low={self.low}, "
                                f"high={self.high})")

    def relevance(self, layer, a, z, weight, bias, relevance):
        lo = elementwise(lambda t: torch.full_like(t, self.low), a)
        hi = elementwise(lambda t: torch.full_like(t, self.high), a)
        w_pos = positive_part(weight)
        w_neg = weight - w_pos
        zb = (layer.forward(a, weight, None) - layer.forward(lo, w_pos, None)
              - layer.forward(hi, w_neg, None))
        s = relevance / stabilize(zb, self.stabilizer)
        return (a * layer.backward(s, weight) - lo * layer.backward(s, w_pos)
                - hi * layer.backward(s, w_neg))


_RULES = {"epsilon": Epsilon, "gamma": Gamma, "alphabeta": AlphaBeta, "zbox": ZBox}
_ALIASES = {"eps": "epsilon", "alpha_beta": "alphabeta", "alpha-beta": "alphabeta",
            "ab": "alphabeta"}


def make_rule(rule: str | Rule = "epsilon", **params: float) -> Rule:
    """A rule object from its name and parameters.

    Parameters
    ----------
    rule : {"epsilon", "gamma", "alphabeta", "zbox"} or Rule
        The rule; a :class:`Rule` instance is returned as is (then ``params`` must be empty).
    **params
        ``epsilon`` (ε rule), ``gamma`` (γ rule), ``alpha`` / ``beta`` (αβ rule), ``low`` /
        ``high`` (z^B rule) and
        ``stabilizer`` (all rules; δ of proportional nodes and of the γ/αβ denominators).
    """
    if isinstance(rule, Rule):
        if params:
            raise BayesLRPError("pass rule parameters either in the Rule object or as keywords, "
                                "not both")
        return rule
    key = _ALIASES.get(str(rule).lower(), str(rule).lower())
    if key not in _RULES:
        raise BayesLRPError(f"unknown LRP rule {rule!r}; choose one of {', '.join(_RULES)}")
    cls = _RULES[key]
    allowed = {f for f in cls.__dataclass_fields__}
    unknown = set(params) - allowed
    if unknown:
        raise BayesLRPError(f"unknown parameter(s) {sorted(unknown)} for the {key} rule; "
                            f"allowed: {sorted(allowed)}")
    values = {k: float(v) for k, v in params.items()}
    for k in ("epsilon", "gamma", "stabilizer"):
        if k in values and values[k] < 0:
            raise BayesLRPError(f"{k} must be >= 0 (got {values[k]})")
    return cls(**values)
