"""Explainers: the :class:`Explainer` value object and the registry of explanation methods.

>>> E = bl.explainers.Explainer("epsilon", {"epsilon": 0.1}, layer=3, n_samples=100)
>>> R = E.explain(ens, x)                              # [B, H, W] Bayesian mean heatmap

Register a new method with ``@bl.explainers.EXPLAINERS.register`` on an
:class:`ExplainerMethod` subclass; the config's ``explain.rules`` then accepts its name.
"""
from bayeslrp.explainers import lrp_rules as _lrp_rules  # noqa: F401  (registers the rules)
from bayeslrp.explainers.explainer import Explainer
from bayeslrp.explainers.registry import EXPLAINERS, ExplainerMethod, NoParams

__all__ = ["EXPLAINERS", "Explainer", "ExplainerMethod", "NoParams"]
