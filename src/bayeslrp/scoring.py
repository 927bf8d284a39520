"""``bl.robustness``: one call for the robustness of an explanation under an attack.

>>> r = bl.robustness(ens, x, y, explainer="integrated_gradients", attack="pgd", k=20)
>>> r.summary["overlap"]                     # {"median": …, "low": …, "high": …}
>>> print(r)                                 # the summary as a short table

Per image: the k-overlap of the clean and attacked explanations (k-LRP robustness of
SPEC §6, for any explainer), the softmax robustness ``1 − ‖p̄(x) − p̄(x̃)‖∞`` and attack success
(correct before, wrong after). Summary: medians with 95 % percentile bootstrap intervals over
the images (2000 resamples, seeded), the success rate over the originally correct images.
Unlike random-noise robustness scores, the perturbation is an adversarial attack — against the
prediction (FGSM, PGD) or against the explanation itself (top-k, region, β).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .ensemble import Ensemble
from .errors import BayesLRPError

__all__ = ["RobustnessResult", "bootstrap_median", "robustness"]

N_BOOT = 2000


def bootstrap_median(values, n_boot: int = N_BOOT, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:
    """Median of ``values`` with its percentile bootstrap interval (resampling the values)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise BayesLRPError("the bootstrap needs at least one value")
    rng = np.random.default_rng(seed)
    draws = np.median(v[rng.integers(0, v.size, size=(int(n_boot), v.size))], axis=1)
    tail = (1.0 - level) / 2.0
    return {"median": float(np.median(v)), "low": float(np.quantile(draws, tail)),
            "high": float(np.quantile(draws, 1.0 - tail))}


@dataclass
class RobustnessResult:
    """Per-image numbers (``[B]`` CPU tensors) and their summary."""

    overlap: torch.Tensor
    softmax_robustness: torch.Tensor
    success: torch.Tensor
    correct_clean: torch.Tensor
    x_adv: torch.Tensor
    summary: dict[str, Any] = field(default_factory=dict)

    def to_frame(self):
        """The per-image numbers as a ``pandas.DataFrame``."""
        import pandas as pd

        return pd.DataFrame({"overlap": self.overlap.numpy(),
                             "softmax_robustness": self.softmax_robustness.numpy(),
                             "success": self.success.numpy(),
                             "correct_clean": self.correct_clean.numpy()})

    def __str__(self) -> str:
        s = self.summary
        lines = [f"{s['explainer']} under {s['attack']} (k = {s['k']} %, {s['n_images']} images, "
                 f"{s['n_samples']} samples)"]
        for key, label in (("overlap", "explanation top-k overlap"),
                           ("softmax_robustness", "softmax robustness")):
            m = s[key]
            lines.append(f"  {label:<26} median {m['median']:.3f}  "
                         f"95% CI [{m['low']:.3f}, {m['high']:.3f}]")
        lines.append(f"  {'attack success':<26} {s['success_rate']:.3f} "
                     f"({s['successes']} of {s['correct_clean']} correctly classified)")
        return "\n".join(lines)


def _as_ensemble(model) -> Ensemble:
    if isinstance(model, Ensemble):
        return model
    if isinstance(model, nn.Module):
        if getattr(model, "bayeslrp_spec", None) is None:
            raise BayesLRPError("robustness needs a bayeslrp Ensemble or a network made by "
                                "bayeslrp.nets.build (wrap others with bl.Ensemble)")
        return Ensemble.from_module(model.eval())
    raise BayesLRPError(f"robustness needs an Ensemble or an nn.Module, not "
                        f"{type(model).__name__}")


def _explainer(explainer, params, layer, n):
    from .explainers import Explainer

    if isinstance(explainer, Explainer):
        if params or layer is not None:
            raise BayesLRPError("pass explainer parameters in the Explainer object or as "
                                "explainer_params / layer, not both")
        return explainer.replace(n_samples=n, reduce="mean")
    params = dict(params or {})
    if "quadrature" in params:
        params["method"] = params.pop("quadrature")
    e = Explainer(method=str(explainer), params=params, layer=layer, n_samples=n)
    e.method_class  # unknown names fail here
    return e


def robustness(model, x: torch.Tensor, y: torch.Tensor, explainer="integrated_gradients",
               attack: str = "pgd", k: float = 20, n_samples: int | None = None, seed: int = 0,
               *, layer: int | None = None, explainer_params: dict | None = None,
               attack_params: dict | None = None, topk_mode: str = "abs",
               ties: str = "nonzero", n_boot: int = N_BOOT) -> RobustnessResult:
    """Attack ``x`` and measure how much the explanation and the prediction move.

    Parameters
    ----------
    model : Ensemble or nn.Module
        A bayeslrp Ensemble (det or Bayesian) or a network made by ``bayeslrp.nets.build``.
    x, y : Tensor
        Images ``[B, C, H, W]`` in [0, 1] and their true labels ``[B]``.
    explainer : str or Explainer
        A registered explainer (:func:`bayeslrp.explain`'s methods) or an Explainer.
    attack : str
        A registered attack (``fgsm``, ``pgd``, ``topk``, ``region``, ``beta`` …). Attacks on
        explanations attack this very explanation (explainer and layer).
    k : float
        Top-k percentage of the overlap (SPEC §6; ``topk_mode``, ``ties`` as in
        :func:`bayeslrp.metrics.lrp_robustness`).
    n_samples : int, optional
        Posterior samples of the attack, the prediction and the explanation (default: all).
    seed : int
        Seed of the attack's random streams and of the bootstrap.
    layer : int, optional
        Learnable layer explained (default: the output layer).
    explainer_params, attack_params : dict, optional
        The explainer's and the attack's own options (e.g. ``{"steps": 64}``, ``{"eps": 0.1}``).
    n_boot : int
        Bootstrap resamples of the intervals.

    Returns
    -------
    RobustnessResult
        Per-image ``overlap``, ``softmax_robustness``, ``success``, ``correct_clean``, the
        attacked images and ``summary`` (medians with 95 % bootstrap intervals, success rate).
    """
    from . import attacks, metrics

    ens = _as_ensemble(model)
    n = ens.resolve_n(n_samples)
    if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],):
        raise BayesLRPError("y must hold one label per image")
    E = _explainer(explainer, explainer_params, layer, n)
    options = {"n_samples": n, **(attack_params or {})}
    x_adv = attacks.run_attack(ens, x, y, attack, seed=seed, explainer=E, **options).detach()
    result = attacks.evaluate(ens, x, x_adv, y, n_samples=n)
    R, R_adv = E.explain(ens, x).detach(), E.explain(ens, x_adv).detach()
    overlap = metrics.lrp_robustness(R, R_adv, k=k, mode=topk_mode, ties=ties).cpu()
    soft = result["softmax_robustness"].cpu()
    success, correct = result["success"].cpu(), result["correct_clean"].cpu()
    summary = {"explainer": E.method, "attack": attack, "k": k, "n_images": int(x.shape[0]),
               "n_samples": n, "layer": E.layer,
               "overlap": bootstrap_median(overlap.numpy(), n_boot, seed),
               "softmax_robustness": bootstrap_median(soft.numpy(), n_boot, seed),
               "successes": int(success.sum()), "correct_clean": int(correct.sum()),
               "success_rate": float(success.sum()) / max(1, int(correct.sum()))}
    return RobustnessResult(overlap, soft, success, correct, x_adv.cpu(), summary)
