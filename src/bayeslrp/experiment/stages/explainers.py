"""How the config's explain section becomes an :class:`~bayeslrp.explainers.Explainer`.

The key parameters of an explanation (what enters an explain or attack artifact's key) and the
Explainer rebuilt from them in the stage, in one place.
"""
from __future__ import annotations

from typing import Any

from bayeslrp.explainers import EXPLAINERS, Explainer

__all__ = ["explainer_from_params", "explainer_key_params"]


def explainer_key_params(cfg, method: str, model, layer: int, *,
                         output_layer: bool) -> dict[str, Any]:
    """``rule_args`` and only the seeding / averaging options that matter for this layer."""
    params: dict[str, Any] = {"rule_args": EXPLAINERS.get(method)().key_args(cfg.explain)}
    if output_layer:
        params["output_seed"] = cfg.explain.output_seed
    else:
        params["inner_seed"] = cfg.explain.inner_seed
    if model.bayesian:
        params["bayes"] = cfg.explain.bayes
    return params


def explainer_from_params(method: str, params: dict, model_bayesian: bool,
                          layer: int | None, n_samples: int | None = None,
                          reduce: str | None = "mean") -> Explainer:
    """The Explainer of key parameters made by :func:`explainer_key_params`."""
    bayes = params.get("bayes", "mean")
    target_mode = ("per_sample_argmax" if model_bayesian and bayes == "per_sample_argmax"
                   else "predictive")
    return Explainer(method=method, params=dict(params.get("rule_args", {})), layer=layer,
                     seed=params.get("output_seed", "logit"),
                     inner=params.get("inner_seed", "max"), target_mode=target_mode,
                     n_samples=n_samples, reduce=reduce)
