"""Adversarial attacks on ensembles and on their explanations (SPEC §5).

Gradient attacks (:mod:`~bayeslrp.attacks.gradient`): :func:`fgsm`, :func:`pgd` with the ensemble
modes ``expected_gradient`` (default), ``predictive`` and ``per_sample_average``.
Saliency attacks (:mod:`~bayeslrp.attacks.saliency`): :func:`topk`, :func:`region`,
:func:`manipulate`. Outcomes: :func:`evaluate`. One entry point by name: :func:`run_attack`.
All attacks work in pixel space [0, 1] and clamp after every step.
"""
from __future__ import annotations

import torch

from ..ensemble import Ensemble
from ..errors import BayesLRPError
from .evaluate import evaluate
from .gradient import MODES, fgsm, pgd
from .saliency import manipulate, random_other_indices, random_region, region, topk

METHODS = ("fgsm", "pgd", "topk", "region", "manipulate")

__all__ = ["METHODS", "MODES", "evaluate", "fgsm", "manipulate", "pgd", "random_other_indices",
           "random_region", "region", "run_attack", "topk"]


def run_attack(ens: Ensemble, x: torch.Tensor, y: torch.Tensor, method: str,
               **params) -> torch.Tensor:
    """Run the attack named ``method`` and return the attacked images.

    Parameters
    ----------
    ens : Ensemble
        The attacked model.
    x : Tensor
        Images ``[B, C, H, W]`` in [0, 1].
    y : Tensor
        True labels ``[B]`` (used by ``fgsm``/``pgd``; the saliency attacks keep the clean
        predicted class unless ``keep_labels=y`` is passed).
    method : {"fgsm", "pgd", "topk", "region", "manipulate"}
        The attack.
    **params
        Keyword arguments of that attack. For ``manipulate``, ``x_target`` defaults to a seeded
        random other image of ``x`` (:func:`random_other_indices` with ``target_seed``,
        default 0).

    Returns
    -------
    Tensor
        Attacked images, same shape as ``x``.
    """
    if method in ("fgsm", "pgd"):
        return (fgsm if method == "fgsm" else pgd)(ens, x, y, **params)
    if method in ("topk", "region"):
        keep = params.pop("keep_labels", None)
        return (topk if method == "topk" else region)(ens, x, keep, **params)
    if method == "manipulate":
        target_seed = params.pop("target_seed", 0)
        if params.get("x_target") is None:
            params["x_target"] = x[random_other_indices(x.shape[0], target_seed).to(x.device)]
        return manipulate(ens, x, **params)
    raise BayesLRPError(f"unknown attack {method!r}; choose one of {', '.join(METHODS)}")
