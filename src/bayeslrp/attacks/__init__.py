"""Adversarial attacks on ensembles and on their explanations (SPEC §5).

Gradient attacks (:mod:`~bayeslrp.attacks.gradient`): :func:`fgsm`, :func:`pgd` with the ensemble
modes ``expected_gradient`` (default), ``predictive`` and ``per_sample_average``.
The noise floor: :func:`sign_noise` (the attack named ``noise``).
Saliency attacks (:mod:`~bayeslrp.attacks.saliency`): :func:`topk`, :func:`region`,
:func:`manipulate` (the attack named ``beta``). Outcomes: :func:`evaluate`. One entry point by
name, :func:`run_attack`, dispatching through the attack registry
(:data:`bayeslrp.plugins.attacks.ATTACK_METHODS`) like the experiment and the CLI.
All attacks work in pixel space — [0, 1] unless ``bounds=(lo, hi)`` is given or the images
come as a :class:`bayeslrp.data.Dataset` with its own bounds — and clamp after every step.
"""
from __future__ import annotations

import torch

from ..ensemble import Ensemble
from ._common import data_args
from .evaluate import evaluate
from .gradient import MODES, fgsm, pgd
from .noise import sign_noise
from .saliency import manipulate, random_other_indices, random_region, region, topk

__all__ = ["MODES", "evaluate", "fgsm", "manipulate", "methods", "pgd", "random_other_indices",
           "random_region", "region", "run_attack", "sign_noise", "topk"]


def methods() -> tuple[str, ...]:
    """Names of the registered attacks (config ``attacks[].method``, CLI ``--method``)."""
    from bayeslrp.plugins.attacks import ATTACK_METHODS

    return ATTACK_METHODS.names()


def run_attack(ens: Ensemble, x, y: torch.Tensor | None, method: str, *, seed: int = 0,
               explainer=None, bounds: tuple[float, float] | None = None,
               **options) -> torch.Tensor:
    """Run the registered attack ``method`` and return the attacked images.

    Parameters
    ----------
    ens : Ensemble
        The attacked model.
    x : Tensor or Dataset
        Images ``[B, C, H, W]`` within ``bounds``, or a :class:`bayeslrp.data.Dataset` (then
        ``y`` may be None and its bounds apply).
    y : Tensor
        True labels ``[B]`` (the attacks on explanations keep the clean predicted class).
    method : str
        A registered attack name: ``fgsm``, ``pgd``, ``topk``, ``region``, ``beta``, or a
        plug-in's.
    seed : int
        Seed of the attack's random streams (PGD start, regions, β-manipulation targets),
        derived as in the experiment.
    explainer : Explainer, optional
        Attacks on explanations: the attacked explanation (default: the spec's ``rule`` with
        the paper's parameters, output layer).
    bounds : (float, float), optional
        Pixel value range the attack clamps to (default [0, 1]).
    **options
        The attack's config keys (``eps``, ``steps``, ``mode``, ``rule``, ``n_samples`` …),
        validated by the attack's spec.

    Returns
    -------
    Tensor
        Attacked images, same shape as ``x``.

    Raises
    ------
    BayesLRPError
        Unknown method or invalid options, in one line.
    """
    from bayeslrp.experiment.config import ExplainSpec, validate_spec
    from bayeslrp.explainers import EXPLAINERS, Explainer
    from bayeslrp.compat import check_model
    from bayeslrp.plugins.attacks import ATTACK_METHODS

    check_model(ens)
    method_obj = ATTACK_METHODS.get(method)()
    spec = validate_spec(method_obj.Spec, {"method": method, **options}, "attack")
    params = spec.model_dump(mode="json", exclude=set(method_obj.unkeyed))
    params["n_samples"] = ens.resolve_n(spec.n_samples)
    if method_obj.uses_explainer and explainer is None:
        rule = spec.explained_rule
        explainer = Explainer(rule, EXPLAINERS.get(rule)().key_args(ExplainSpec()),
                              target_mode="predictive")
    x, y, bounds = data_args(x, y, bounds)
    return method_obj.run(ens, x, y, params, seed=seed, explainer=explainer, bounds=bounds)
