"""Explainers: the :class:`Explainer` value object and the registry of explanation methods.

>>> E = bl.explainers.Explainer("epsilon", {"epsilon": 0.1}, layer=3, n_samples=100)
>>> R = E.explain(ens, x)                              # [B, H, W] Bayesian mean heatmap

``bl.explain(ens, x, method=..., layer=..., **params)`` is the one-call form. Built in: the
LRP rules, the composites (:mod:`~bayeslrp.explainers.composites`), ``gradient``,
``grad_x_input``, ``integrated_gradients`` (:mod:`~bayeslrp.explainers.gradients`),
``smoothgrad``, ``noisegrad``, ``fusiongrad`` (:mod:`~bayeslrp.explainers.noise`).

Register a new method with ``@bl.explainers.EXPLAINERS.register`` on an
:class:`ExplainerMethod` subclass; the config's ``explain.rules`` then accepts its name.
"""
from bayeslrp.explainers import composites as _composites  # noqa: F401  (registers composites)
from bayeslrp.explainers import gradients as _gradients  # noqa: F401  (gradient, IG)
from bayeslrp.explainers import lrp_rules as _lrp_rules  # noqa: F401  (registers the rules)
from bayeslrp.explainers import noise as _noise  # noqa: F401  (SmoothGrad, NoiseGrad, FusionGrad)
from bayeslrp.explainers.api import explain
from bayeslrp.explainers.explainer import Explainer
from bayeslrp.explainers.registry import EXPLAINERS, ExplainerMethod, NoParams

__all__ = ["EXPLAINERS", "Explainer", "ExplainerMethod", "NoParams", "explain"]
