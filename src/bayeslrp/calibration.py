"""Calibration of a predictive distribution: accuracy, NLL and ECE (SPEC §9).

All functions take the predictive mean ``p`` ``[N, C]`` (rows summing to one, e.g.
:meth:`bayeslrp.Ensemble.predict_proba`) and the labels ``y`` ``[N]``; they are vectorised
over images and computed in float64.

* NLL = mean over images of ``-log p̄(y | x)``;
* ECE = ``Σ_b (|B_b| / N) · |acc_b − conf_b|`` over ``n_bins`` equal-width bins of the
  top-class confidence ``max_c p̄_c`` (bin ``b`` holds confidences in ``(b/n, (b+1)/n]``;
  Guo et al. 2017), ``acc_b`` the accuracy of the top class in the bin and ``conf_b`` its mean
  confidence.
"""
from __future__ import annotations

import torch

from .errors import BayesLRPError

__all__ = ["ECE_BINS", "calibration", "expected_calibration_error", "negative_log_likelihood"]

#: SPEC §9: 15 equal-width confidence bins.
ECE_BINS = 15
#: ``-log`` of a probability that underflowed to 0 is taken at this floor (float64's smallest
#: normal number), so an NLL stays finite (≈ 708 per such image) instead of infinite.
_FLOOR = torch.finfo(torch.float64).tiny


def _check(p: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if p.ndim != 2 or y.ndim != 1 or p.shape[0] != y.shape[0]:
        raise BayesLRPError(f"calibration needs probabilities [N, C] and labels [N]; got "
                            f"{tuple(p.shape)} and {tuple(y.shape)}")
    if p.shape[0] == 0:
        raise BayesLRPError("calibration needs at least one image")
    y = y.to(torch.int64).cpu()
    if int(y.min()) < 0 or int(y.max()) >= p.shape[1]:
        raise BayesLRPError(f"labels must lie in [0, {p.shape[1]}); got "
                            f"[{int(y.min())}, {int(y.max())}]")
    return p.detach().to("cpu", torch.float64), y


def negative_log_likelihood(p: torch.Tensor, y: torch.Tensor) -> float:
    """Mean ``-log p[n, y[n]]`` (nats per image)."""
    p, y = _check(p, y)
    return float(-p.gather(1, y[:, None]).squeeze(1).clamp_min(_FLOOR).log().mean())


def expected_calibration_error(p: torch.Tensor, y: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """ECE of the top-class confidence over ``n_bins`` equal-width bins ``(b/n, (b+1)/n]``."""
    if int(n_bins) < 1:
        raise BayesLRPError(f"n_bins must be >= 1; got {n_bins}")
    p, y = _check(p, y)
    conf, pred = p.max(dim=1)
    correct = (pred == y).to(torch.float64)
    # (b/n, (b+1)/n] -> b; a confidence of exactly 0 cannot occur (max of a distribution)
    bins = (torch.ceil(conf * n_bins) - 1).clamp(0, n_bins - 1).to(torch.int64)
    conf_sum = torch.bincount(bins, weights=conf, minlength=n_bins)
    correct_sum = torch.bincount(bins, weights=correct, minlength=n_bins)
    # Σ_b |B_b|/N · |acc_b − conf_b| = Σ_b |Σ_{i∈B_b} (correct_i − conf_i)| / N
    return float((correct_sum - conf_sum).abs().sum() / p.shape[0])


def calibration(p: torch.Tensor, y: torch.Tensor, n_bins: int = ECE_BINS) -> dict:
    """``{"accuracy", "nll", "ece", "ece_bins", "n"}`` of the predictive mean ``p``."""
    p64, y64 = _check(p, y)
    return {"accuracy": float((p64.argmax(1) == y64).to(torch.float64).mean()),
            "nll": negative_log_likelihood(p64, y64),
            "ece": expected_calibration_error(p64, y64, n_bins),
            "ece_bins": int(n_bins), "n": int(y64.numel())}
