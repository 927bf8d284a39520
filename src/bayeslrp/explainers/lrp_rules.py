"""The LRP rules (ε, γ, αβ; SPEC §4) as explainer plug-ins over :func:`bayeslrp.lrp.explain`."""
from __future__ import annotations

from typing import Any

from bayeslrp.explainers.registry import EXPLAINERS, ExplainerMethod

__all__ = ["LRPMethod"]


class LRPMethod(ExplainerMethod):
    """Layer-wise relevance propagation under one rule; parameters from ``rule_params``."""

    #: the keys of ``explain.rule_params`` this rule uses
    rule_keys: tuple[str, ...] = ()

    def key_args(self, explain_spec: Any) -> dict[str, Any]:
        rp = explain_spec.rule_params
        return {key: getattr(rp, key) for key in self.rule_keys}

    @classmethod
    def check_params(cls, params: dict) -> dict:
        """``params`` of this rule as floats (torch-free; for wrappers' ``base_params``)."""
        allowed = set(cls.rule_keys) | {"stabilizer"}
        unknown = set(params) - allowed
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)} for the {cls.name} rule; "
                             f"allowed: {sorted(allowed)}")
        out = {}
        for key, value in params.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{cls.name} rule parameter {key} must be a number >= 0")
            out[key] = float(value)
        return out

    def rule(self, explainer):
        """The rule object of ``explainer.params``."""
        from bayeslrp import lrp

        return lrp.make_rule(self.name, **explainer.params)

    def heatmaps(self, ens, x, explainer, *, target=None, create_graph=False,
                 surrogate_beta=None):
        from bayeslrp import lrp

        rule = self.rule(explainer)
        return lrp.explain(ens, x, rule=rule, layer=explainer.layer,
                           n_samples=explainer.n_samples, reduce=explainer.reduce,
                           target=target, create_graph=create_graph, seed=explainer.seed,
                           target_mode=explainer.target_mode, inner=explainer.inner,
                           surrogate_beta=surrogate_beta)


@EXPLAINERS.register
class EpsilonLRP(LRPMethod):
    """ε-LRP (ε = 0.1)."""

    name = "epsilon"
    rule_keys = ("epsilon",)


@EXPLAINERS.register
class GammaLRP(LRPMethod):
    """γ-LRP (γ = 0.1, textbook form)."""

    name = "gamma"
    rule_keys = ("gamma",)


@EXPLAINERS.register
class AlphaBetaLRP(LRPMethod):
    """αβ-LRP (α = 1, β = 0)."""

    name = "alphabeta"
    rule_keys = ("alpha", "beta")
