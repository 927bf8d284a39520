"""LRP composites: one rule per layer, as explainer plug-ins (Zennit's preset names).

=========================  ==========================  =================  ==============
name                       input layer (reads pixels)   Conv2d layers      Linear layers
=========================  ==========================  =================  ==============
``epsilon_plus``           as its kind                 z⁺ (α = 1, β = 0)  ε
``epsilon_alpha2_beta1``   as its kind                 α = 2, β = 1       ε
``epsilon_gamma_box``      z^B with the data bounds    γ                  ε
``composite``              any map (below)
=========================  ==========================  =================  ==============

Defaults: ε = 0.1 (SPEC §4), γ = 0.25 (Zennit's ``EpsilonGammaBox``), bounds [0, 1] (SPEC §1).
z⁺ is the αβ rule with α = 1, β = 0 (for the non-negative inputs after a ReLU-type
activation the two coincide). ``composite`` takes ``rules``, a map from a selector — a
learnable-layer index (``"3"`` or ``3``), ``input``, ``conv``, ``dense`` or ``default`` — to a
rule name (``epsilon``, ``gamma``, ``alphabeta``, ``zplus``, ``zbox``) or ``{rule: name,
<its parameters>}``; the most specific selector wins (see :mod:`bayeslrp.lrp.composite`). In
YAML: ``explain: {rules: [composite], options: {composite: {rules: {input: zbox, conv:
zplus, default: epsilon}}}}``.
"""
from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, field_validator

from ..plugins.spec import StrictSpec
from .lrp_rules import LRPMethod
from .registry import EXPLAINERS, ExplainerMethod

__all__ = ["CompositeMethod", "RULE_NAMES"]

NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Bounds = Annotated[tuple[float, float], Field(strict=False)]
_SELECTORS = ("input", "conv", "dense", "default")  # as bayeslrp.lrp.composite.SELECTORS
RULE_NAMES = ("epsilon", "gamma", "alphabeta", "zplus", "zbox")
_RULE_KEYS = {"epsilon": {"epsilon", "stabilizer"}, "gamma": {"gamma", "stabilizer"},
              "alphabeta": {"alpha", "beta", "stabilizer"}, "zplus": {"stabilizer"},
              "zbox": {"low", "high", "stabilizer"}}


class PresetParams(StrictSpec):
    epsilon: NonNeg = 0.1
    gamma: NonNeg = 0.25
    bounds: Bounds = (0.0, 1.0)
    stabilizer: NonNeg = 1e-6


def _entry(selector: str, value: Any) -> tuple[Any, str, dict]:
    key: Any = int(selector) if str(selector).isdigit() else selector
    if isinstance(value, str):
        name, params = value, {}
    elif isinstance(value, dict) and isinstance(value.get("rule"), str):
        params = {k: v for k, v in value.items() if k != "rule"}
        name = value["rule"]
    else:
        raise ValueError(f"composite entry {selector!r} must be a rule name or "
                         "{rule: name, parameters}")
    if name not in RULE_NAMES:
        raise ValueError(f"composite entry {selector!r}: unknown rule {name!r}; choose one of "
                         f"{', '.join(RULE_NAMES)}")
    unknown = set(params) - _RULE_KEYS[name]
    if unknown:
        raise ValueError(f"composite entry {selector!r}: unknown parameter(s) {sorted(unknown)} "
                         f"for {name}")
    for k, v in params.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"composite entry {selector!r}: {k} must be a number")
    return key, name, {k: float(v) for k, v in params.items()}


class MapParams(PresetParams):
    rules: dict[str, Union[str, dict[str, Any]]] = {"default": "epsilon"}

    @field_validator("rules", mode="before")
    @classmethod
    def _keys_as_text(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): val for k, val in v.items()}
        return v

    @field_validator("rules")
    @classmethod
    def _entries_ok(cls, v: dict) -> dict:
        if not v:
            raise ValueError("composite rules must not be empty")
        for selector, value in v.items():
            if not (selector.isdigit() or selector in _SELECTORS):
                raise ValueError(f"composite selector {selector!r} is not known; use a layer "
                                 f"index or one of {', '.join(_SELECTORS)}")
            _entry(selector, value)
        return v


def _make(name: str, params: dict, spec):
    from ..lrp.rules import AlphaBeta, Epsilon, Gamma, ZBox

    stab = {"stabilizer": params.pop("stabilizer", spec.stabilizer)}
    if name == "epsilon":
        return Epsilon(epsilon=params.get("epsilon", spec.epsilon), **stab)
    if name == "gamma":
        return Gamma(gamma=params.get("gamma", spec.gamma), **stab)
    if name == "alphabeta":
        return AlphaBeta(alpha=params.get("alpha", 1.0), beta=params.get("beta", 0.0), **stab)
    if name == "zplus":
        return AlphaBeta(alpha=1.0, beta=0.0, **stab)
    low, high = spec.bounds
    return ZBox(low=params.get("low", low), high=params.get("high", high), **stab)


class CompositeMethod(LRPMethod):
    """An LRP composite; :attr:`preset` maps selectors to rule names."""

    Params = PresetParams
    preset: dict[str, str] = {}

    def key_args(self, explain_spec: Any) -> dict[str, Any]:
        return ExplainerMethod.key_args(self, explain_spec)

    @classmethod
    def check_params(cls, params: dict) -> dict:
        return cls.Params.model_validate(params).model_dump(mode="json")

    def rule_map(self, spec) -> dict:
        return dict(self.preset)

    def rule(self, explainer):
        from ..lrp.composite import Composite
        from .base import validated

        spec, _ = validated(type(self), explainer.params)
        entries = []
        for selector, value in self.rule_map(spec).items():
            key, name, params = _entry(selector, value)
            entries.append((key, _make(name, params, spec)))
        return Composite(entries=tuple(entries), stabilizer=spec.stabilizer)


@EXPLAINERS.register
class EpsilonPlus(CompositeMethod):
    """z⁺ on convolutions, ε on dense layers."""

    name = "epsilon_plus"
    preset = {"conv": "zplus", "dense": "epsilon"}


@EXPLAINERS.register
class EpsilonAlpha2Beta1(CompositeMethod):
    """α2β1 on convolutions, ε on dense layers."""

    name = "epsilon_alpha2_beta1"
    preset = {"conv": {"rule": "alphabeta", "alpha": 2.0, "beta": 1.0}, "dense": "epsilon"}


@EXPLAINERS.register
class EpsilonGammaBox(CompositeMethod):
    """z^B at the input layer, γ on convolutions, ε on dense layers."""

    name = "epsilon_gamma_box"
    preset = {"input": "zbox", "conv": "gamma", "dense": "epsilon"}


@EXPLAINERS.register
class MapComposite(CompositeMethod):
    """A composite from a user's map (``rules``)."""

    name = "composite"
    Params = MapParams

    def rule_map(self, spec) -> dict:
        return dict(spec.rules)
