"""Per-image outcome of an attack: predictions, success, softmax robustness, losses."""
from __future__ import annotations

import torch

from .. import metrics
from ..ensemble import Ensemble
from ..errors import BayesLRPError
from ._common import DEFAULT_BOUNDS, check_bounds, check_images, check_labels


def evaluate(ens: Ensemble, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
             n_samples: int | None = None, *,
             bounds: tuple[float, float] = DEFAULT_BOUNDS) -> dict[str, torch.Tensor]:
    """Compare the ensemble's predictive distribution on clean and attacked images.

    Parameters
    ----------
    ens : Ensemble
        The attacked model.
    x, x_adv : Tensor
        Clean and attacked images ``[B, C, H, W]`` within ``bounds`` (default [0, 1]).
    y : Tensor
        True labels ``[B]``.
    n_samples : int, optional
        Posterior samples of the predictive mean (default: all).

    Returns
    -------
    dict of str to Tensor
        One ``[B]`` CPU tensor per key (ready for ``pandas.DataFrame``):
        ``pred_clean``, ``pred_adv`` (int64, class of the predictive mean ``p̄``),
        ``correct_clean``, ``correct_adv`` (bool), ``success`` (bool: correct before, wrong
        after), ``softmax_robustness`` (``1 − ‖p̄(x) − p̄(x̃)‖∞``), ``loss_clean``, ``loss_adv``
        (``−log p̄_y``, the cross-entropy of the predictive mean; float64) and ``linf``
        (``‖x̃ − x‖∞``).
    """
    bounds = check_bounds(bounds)
    check_images(x, bounds=bounds)
    check_images(x_adv, "x_adv", bounds)
    if x_adv.shape != x.shape:
        raise BayesLRPError(f"x_adv must have the shape of x {tuple(x.shape)}; "
                            f"got {tuple(x_adv.shape)}")
    n = ens.resolve_n(n_samples)
    p = ens.predict_proba(x.to(ens.device), n).cpu()
    p_adv = ens.predict_proba(x_adv.to(ens.device), n).cpu()
    check_labels(y, x.shape[0], "y", p.shape[1])
    y = y.cpu()
    pred, pred_adv = p.argmax(-1), p_adv.argmax(-1)
    tiny = torch.finfo(torch.float64).tiny

    def nll(probs):
        return -probs.double().gather(1, y.view(-1, 1)).squeeze(1).clamp_min(tiny).log()

    return {
        "pred_clean": pred,
        "pred_adv": pred_adv,
        "correct_clean": pred == y,
        "correct_adv": pred_adv == y,
        "success": metrics.attack_success(y, pred, pred_adv),
        "softmax_robustness": metrics.softmax_robustness(p, p_adv),
        "loss_clean": nll(p),
        "loss_adv": nll(p_adv),
        "linf": (x_adv.cpu() - x.cpu()).abs().flatten(1).amax(1),
    }
