"""The ELBO of a fitted mean-field posterior, evaluated at its final (μ, ρ).

The per-epoch history of :func:`bayeslrp.train.vi` averages the loss over an epoch while the
parameters still move; to compare two fits (another schedule, initial σ, seed) one wants the
objective at the end point. This module rebuilds the variational family from a saved VI
:class:`~bayeslrp.ensemble.Ensemble` and estimates ``−ELBO / N = E_q[NLL] + KL(q‖p) / N``
on the full training set.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


from ..ensemble import Ensemble
from ..errors import BayesLRPError
from ..mcmc.seeds import derive_seed
from .loop import check_training_data
from .vi_meanfield import MeanField


def meanfield_from_ensemble(ens: Ensemble) -> MeanField:
    """The :class:`MeanField` (μ, ρ and prior) a VI Ensemble was drawn from.

    Raises
    ------
    BayesLRPError
        If the Ensemble was not made by :func:`bayeslrp.train.vi` (no ``mu.*`` / ``rho.*``
        extras).
    """
    mu = {k[len("mu."):]: v for k, v in ens.extras.items() if k.startswith("mu.")}
    rho = {k[len("rho."):]: v for k, v in ens.extras.items() if k.startswith("rho.")}
    if ens.meta.get("method") != "vi" or not mu or set(mu) != set(rho):
        raise BayesLRPError("not a VI ensemble: it carries no variational parameters "
                            "(extras mu.* / rho.*)")
    net = ens.sample_module(0)  # the architecture (the built-in one rebuilt from its spec)
    # sample 0 holds the point estimates and buffers (BatchNorm) every draw shares
    net.load_state_dict({**{k: v[0] for k, v in ens.params.items()}, **mu})
    model = MeanField(net, prior_std=float(ens.meta.get("prior_std", 1.0)),
                      local_reparam=bool(ens.meta.get("local_reparam", True)))
    with torch.no_grad():
        for i, name in enumerate(model.names):
            model.rho[i].copy_(rho[name])
    return model


def negative_elbo(ens: Ensemble, x: torch.Tensor, y: torch.Tensor, *, passes: int = 1,
                  seed: int = 0, batch_size: int = 1000) -> dict[str, float]:
    """Estimate ``−ELBO / N`` of a VI Ensemble's posterior on ``(x, y)`` (its training set).

    Parameters
    ----------
    ens : Ensemble
        Made by :func:`bayeslrp.train.vi` (holds μ and ρ in its extras).
    x, y : Tensor
        The data the ELBO refers to (normally all training images and labels).
    passes : int
        Monte-Carlo passes over the data; each data point gets a fresh network sample per pass
        (the sampled forward pass of training, local reparameterisation included).
    seed : int
        Seeds the Monte-Carlo noise: the same seed on two models gives common random numbers.
    batch_size : int
        Images per forward pass. It only bounds memory, but the noise is drawn batch by
        batch: keep it fixed to reproduce a number exactly.

    Returns
    -------
    dict
        ``nll`` (mean over passes of the mean NLL per point), ``nll_passes`` (one per pass),
        ``kl_per_point`` (closed form KL / N) and ``neg_elbo`` (their sum), all in nats.
    """
    if passes < 1 or batch_size < 1:
        raise BayesLRPError("passes and batch_size must be >= 1")
    check_training_data(x, y)
    model = meanfield_from_ensemble(ens)
    device = ens.device
    generator = torch.Generator(device=device).manual_seed(derive_seed(seed, "vi-elbo"))
    n = x.shape[0]
    per_pass = []
    with torch.no_grad():
        for _ in range(passes):
            total = 0.0
            for start in range(0, n, batch_size):
                xb = x[start:start + batch_size].to(device)
                yb = y[start:start + batch_size].to(device)
                total += float(F.cross_entropy(model(xb, generator), yb, reduction="sum"))
            per_pass.append(total / n)
        kl = float(model.kl()) / n
    nll = sum(per_pass) / passes
    return {"nll": nll, "nll_passes": per_pass, "kl_per_point": kl, "neg_elbo": nll + kl}
