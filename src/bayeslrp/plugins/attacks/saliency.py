"""Attacks on explanations: top-k, target region (Ghorbani), β-manipulation (Dombrowski).

Each attacks the output-layer explanation of the config's explainer named by ``rule`` and
gets it whole as an :class:`~bayeslrp.explainers.Explainer`. Top-k picks its best iterate with
the results' own top-k selection (``metrics.topk_mode`` / ``metrics.ties``), so the attack
optimises the number it is scored on.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from bayeslrp.plugins.attacks.base import AttackMethod, AttackSpecBase
from bayeslrp.plugins.attacks.gradient import attack_seed
from bayeslrp.plugins.spec import ConfigIssue, Percent, PosFloat, PosInt

__all__ = ["BetaAttack", "BetaMethod", "RegionAttack", "RegionMethod", "TopKAttack",
           "TopKMethod"]


class _GhorbaniSpec(AttackSpecBase):
    """Keys of both Ghorbani attacks: ``k`` %, ``steps`` sign steps of ``alpha``·ε, ``rule``."""

    k: Percent = 20.0
    steps: PosInt = 10
    alpha: PosFloat = 0.5
    rule: str = "epsilon"


class TopKAttack(_GhorbaniSpec):
    """Ghorbani top-k saliency attack on the output-layer explanation under ``rule``."""

    method: Literal["topk"]


class RegionAttack(_GhorbaniSpec):
    """Ghorbani target-region attack (a seeded random region of ``k`` % of the pixels)."""

    method: Literal["region"]


class BetaAttack(AttackSpecBase):
    """Dombrowski β-manipulation towards a seeded random other test image's explanation."""

    method: Literal["beta"]
    steps: PosInt = 10
    lr: PosFloat = 0.01
    gamma: Annotated[float, Field(ge=0)] = 1.0
    beta: PosFloat = 100.0
    rule: str = "epsilon"


class _SaliencyMethod(AttackMethod):
    uses_explainer = True

    def check(self, spec, config):
        from bayeslrp.explainers import EXPLAINERS

        if spec.rule not in EXPLAINERS:
            raise ConfigIssue(("rule",), f"unknown explainer {spec.rule!r}; registered: "
                                         f"{', '.join(EXPLAINERS.names())}")
        if not EXPLAINERS.get(spec.rule).differentiable:
            raise ConfigIssue(("rule",), f"explainer {spec.rule!r} is not differentiable in "
                                         f"the input; attacks on explanations need one that is")


class TopKMethod(_SaliencyMethod):
    """``method: topk`` — :func:`bayeslrp.attacks.topk`."""

    name = "topk"
    Spec = TopKAttack

    def key_params(self, spec, config):
        # the best iterate is chosen with the results' top-k selection
        return {**super().key_params(spec, config),
                "selection": {"topk_mode": config.metrics.topk_mode,
                              "ties": config.metrics.ties}}

    def run(self, ens, x, y, spec, *, seed, explainer=None, bounds=(0.0, 1.0)):
        from bayeslrp import attacks

        selection = spec.get("selection", {})
        return attacks.topk(ens, x, None, eps=spec["eps"], k=spec["k"], alpha=spec["alpha"],
                            steps=spec["steps"], explainer=explainer,
                            n_samples=int(spec["n_samples"]),
                            topk_mode=selection.get("topk_mode", "abs"),
                            ties=selection.get("ties", "nonzero"), bounds=bounds)


class RegionMethod(_SaliencyMethod):
    """``method: region`` — :func:`bayeslrp.attacks.region` (seeded random regions)."""

    name = "region"
    Spec = RegionAttack

    def run(self, ens, x, y, spec, *, seed, explainer=None, bounds=(0.0, 1.0)):
        from bayeslrp import attacks

        return attacks.region(ens, x, None, eps=spec["eps"], k=spec["k"], alpha=spec["alpha"],
                              steps=spec["steps"], explainer=explainer,
                              n_samples=int(spec["n_samples"]),
                              seed=attack_seed(seed, "region"), bounds=bounds)


class BetaMethod(_SaliencyMethod):
    """``method: beta`` — :func:`bayeslrp.attacks.manipulate` towards a seeded other image."""

    name = "beta"
    Spec = BetaAttack

    def run(self, ens, x, y, spec, *, seed, explainer=None, bounds=(0.0, 1.0)):
        from bayeslrp import attacks

        other = attacks.random_other_indices(x.shape[0], attack_seed(seed, "beta-target"))
        return attacks.manipulate(ens, x, x[other.to(x.device)], eps=spec["eps"],
                                  gamma=spec["gamma"], lr=spec["lr"], steps=spec["steps"],
                                  beta=spec["beta"], explainer=explainer,
                                  n_samples=int(spec["n_samples"]), bounds=bounds)
