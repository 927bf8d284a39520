"""A model's test-set report: accuracy, calibration and posterior diagnostics in one pass.

:func:`evaluate_model` runs every sample over the test images once and derives from the
per-sample softmax both the predictive mean (summed in the order of
:meth:`bayeslrp.Ensemble.predict_proba`, so the accuracy is the same number) and the
measures of :mod:`bayeslrp.calibration` and :mod:`bayeslrp.posterior_diagnostics`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .calibration import calibration
from .ensemble import cpu_image_chunk
from .posterior_diagnostics import posterior_diagnostics

__all__ = ["evaluate_model", "mcmc_chains", "reference_weights", "sample_probabilities"]


def sample_probabilities(ens, x: torch.Tensor, batch_size: int = 2048
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean [N, C], per_sample [S, N, C])`` softmax of every sample on ``x`` (CPU, float32).

    Batched like :meth:`~bayeslrp.Ensemble.predict_proba` and summed in its order, so
    ``mean`` equals ``ens.predict_proba(x)`` exactly.
    """
    n = ens.n_samples
    if x.shape[0]:
        cap = cpu_image_chunk(ens.device, ens._activation_numel(x))
        batch_size = min(batch_size, cap) if cap else batch_size
    means, per_sample = [], []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size].to(ens.device)
            total, parts = None, []
            for sl in ens.sample_chunks(n, xb):
                probs = ens._forward_params({k: v[sl] for k, v in ens.params.items()},
                                            xb).softmax(-1)
                parts.append(probs.cpu())
                total = probs.sum(0) if total is None else total + probs.sum(0)
            means.append((total / n).cpu())
            per_sample.append(torch.cat(parts))
    return torch.cat(means), torch.cat(per_sample, dim=1)


def mcmc_chains(meta: Mapping[str, Any]) -> int | None:
    """The number of interleaved MCMC chains of a model's samples, or None (no chains).

    HMC records ``chains``; its ``blocks`` mode runs one chain per data block (chains of
    different posteriors), which has no common predictive ESS: None.
    """
    if meta.get("method") != "hmc" or meta.get("mode") == "blocks":
        return None
    return int(meta.get("chains") or 1)


def reference_weights(ens, init=None) -> tuple[dict[str, torch.Tensor] | None, str | None]:
    """The weights the samples are compared to, and what they are.

    ``init`` (the model this one was trained from, e.g. HMC's ``init_model`` det MAP): its
    first sample, ``"init_model"``. Otherwise a MAP a method stored in the Ensemble's extras as
    ``map.<name>`` tensors: ``"map"``. Otherwise VI's variational means ``mu.*`` (its point
    estimates for parameters without one): ``"vi_mean"``. Otherwise none.
    """
    if init is not None:
        return {k: v[0] for k, v in init.params.items()}, "init_model"
    stored = {k[4:]: v for k, v in ens.extras.items() if k.startswith("map.")}
    if stored:
        return stored, "map"
    mu = {k[3:]: v for k, v in ens.extras.items() if k.startswith("mu.")}
    if mu:
        # parameters VI keeps as point estimates (BatchNorm scale and shift) have no mu: they
        # are the same in every draw, and that value is their centre
        return {name: mu[name] if name in mu else v[0] for name, v in ens.params.items()}, \
            "vi_mean"
    return None, None


def evaluate_model(ens, x: torch.Tensor, y: torch.Tensor, init=None) -> dict[str, Any]:
    """``{"test_accuracy", "calibration", "posterior"}`` of ``ens`` on ``(x, y)``.

    ``calibration``: :func:`bayeslrp.calibration.calibration` of the predictive mean over all
    samples; ``posterior``: :func:`bayeslrp.posterior_diagnostics.posterior_diagnostics` with
    the reference of :func:`reference_weights` and the chains of :func:`mcmc_chains`.
    """
    mean, per_sample = sample_probabilities(ens, x)
    y = y.cpu()
    calib = calibration(mean, y)
    reference, kind = reference_weights(ens, init)
    posterior = posterior_diagnostics(ens, per_sample, y, reference=reference,
                                      reference_kind=kind, chains=mcmc_chains(ens.meta))
    accuracy = float((mean.argmax(-1) == y).float().mean())  # as Ensemble.accuracy
    return {"test_accuracy": accuracy, "calibration": calib, "posterior": posterior}
