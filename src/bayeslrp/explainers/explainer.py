"""The :class:`Explainer` value object: one explanation method with every setting it needs.

An Explainer is handed whole to :func:`bayeslrp.lrp.explain`, to the attacks on explanations
(``explainer=``) and to the experiment's explain stage, so no setting travels as a renamed
keyword. ``Explainer("epsilon", {"epsilon": 0.1}, layer=5).explain(ens, x)`` is the Bayesian
ε-LRP heatmap ``[B, H, W]`` at layer 5.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bayeslrp.errors import BayesLRPError

__all__ = ["Explainer", "REDUCTIONS", "SEEDS", "TARGET_MODES", "INNER_SEEDS"]

SEEDS = ("logit", "one")
INNER_SEEDS = ("max", "all", "original")
TARGET_MODES = ("predictive", "per_sample_argmax")
REDUCTIONS = ("mean", "mean_std", None)


@dataclass(frozen=True)
class Explainer:
    """An explanation method and its settings.

    Attributes
    ----------
    method : str
        A name registered in :data:`bayeslrp.explainers.EXPLAINERS`: the LRP rules
        (``epsilon``, ``gamma``, ``alphabeta``), the composites (``epsilon_plus``,
        ``epsilon_alpha2_beta1``, ``epsilon_gamma_box``, ``composite``), ``gradient``,
        ``grad_x_input``, ``integrated_gradients``, ``smoothgrad``, ``noisegrad``,
        ``fusiongrad`` (docs/explainers.md), or a user's.
    params : mapping
        The method's own parameters (e.g. ``{"epsilon": 0.1}``).
    layer : int or None
        Learnable layer explained (``None``: the output layer).
    seed : {"logit", "one"}
        Output layer: seed the explained class with its logit or with 1.
    inner : {"max", "all", "original"}
        Inner layer: seed the most activated unit/channel, or every unit, or the original
        code's per-channel argmax counts (``compat: original``).
    target_mode : {"predictive", "per_sample_argmax"}
        Output layer of an ensemble: each sample explains the predictive mean's class, or its
        own argmax.
    n_samples : int or None
        Posterior samples used (``None``: all).
    reduce : {"mean", "mean_std", None}
        Mean heatmap ``[B, H, W]``, ``(mean, std)``, or every sample's ``[S, B, H, W]``.
    """

    method: str = "epsilon"
    params: Mapping[str, Any] = field(default_factory=dict)
    layer: int | None = None
    seed: str = "logit"
    inner: str = "max"
    target_mode: str = "predictive"
    n_samples: int | None = None
    reduce: str | None = "mean"

    def __post_init__(self):
        for name, value, allowed in (("seed", self.seed, SEEDS), ("inner", self.inner, INNER_SEEDS),
                                     ("target_mode", self.target_mode, TARGET_MODES),
                                     ("reduce", self.reduce, REDUCTIONS)):
            if value not in allowed:
                raise BayesLRPError(f"Explainer {name} must be one of "
                                    f"{', '.join(map(str, allowed))}; got {value!r}")
        object.__setattr__(self, "params", dict(self.params))

    def __hash__(self) -> int:
        # params may hold maps (a composite's rules, a wrapper's base_params) or tensors
        params = json.dumps(self.params, sort_keys=True,
                            default=lambda o: f"<{type(o).__name__} {id(o)}>")
        return hash((self.method, params, self.layer, self.seed, self.inner, self.target_mode,
                     self.n_samples, self.reduce))

    def replace(self, **changes: Any) -> "Explainer":
        """A copy with some settings changed."""
        return replace(self, **changes)

    @property
    def method_class(self):
        """The registered class of :attr:`method`."""
        from bayeslrp.explainers.registry import EXPLAINERS

        return EXPLAINERS.get(self.method)

    def explain(self, ens, x, *, target=None, create_graph: bool = False,
                surrogate_beta: float | None = None):
        """Heatmaps of images ``x`` under this explainer.

        Parameters
        ----------
        ens : Ensemble or nn.Module
        x : Tensor
            Images ``[B, C, H, W]``.
        target : Tensor, optional
            Output layer: the class per image (overrides ``target_mode``); inner layer: the
            unit / channel to seed.
        create_graph : bool
            Keep the graph so the heatmaps are differentiable in ``x``.
        surrogate_beta : float, optional
            Differentiate through a softplus(β) surrogate of the ReLU-type activations (for
            methods that support it).

        Returns
        -------
        Tensor or (Tensor, Tensor)
            As :attr:`reduce` says.
        """
        return self.method_class().heatmaps(ens, x, self, target=target,
                                            create_graph=create_graph,
                                            surrogate_beta=surrogate_beta)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; ``Explainer(**e.to_json()) == e``."""
        return {"method": self.method, "params": dict(self.params), "layer": self.layer,
                "seed": self.seed, "inner": self.inner, "target_mode": self.target_mode,
                "n_samples": self.n_samples, "reduce": self.reduce}
