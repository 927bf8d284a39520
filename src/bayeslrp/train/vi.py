"""Bayesian networks by mean-field variational inference (SPEC §3; paper Table III).

The machinery (variational family, local reparameterisation, ELBO, draws) is in
:mod:`bayeslrp.train.vi_meanfield` and works on any ``nn.Module``; this function adds the
network-level checks and packs the result into an :class:`~bayeslrp.ensemble.Ensemble`.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from .. import nets
from ..ensemble import Ensemble
from ..errors import BayesLRPError
from .loop import check_training_data, training_arrays
from .options import TrainOptions
from .vi_meanfield import draw, fit

DEFAULT_INIT_STD = 1e-3

#: Paper settings (Table III; SPEC §3) per dataset, for ``bayeslrp train --method vi``.
PAPER_DEFAULTS = {
    "mnist": {"arch": "conv", "channels": 32, "hidden": 512, "epochs": 5, "lr": 0.01,
              "batch_size": 128, "prior_std": 1.0, "n_samples": 100},
    "fashion_mnist": {"arch": "conv", "channels": 32, "hidden": 1024, "epochs": 15, "lr": 0.001,
                      "batch_size": 128, "prior_std": 1.0, "n_samples": 100},
}


def vi(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, epochs: int = 5, lr: float = 0.01,
       prior_std: float = 1.0, n_samples: int = 100, batch_size: int = 128, seed: int = 0,
       progress: bool = True, device: str | torch.device | None = None,
       local_reparam: bool = True, init_std: float = DEFAULT_INIT_STD,
       lr_schedule: str = "constant", num_particles: int = 1,
       mu_init_std: float | None = None, options: TrainOptions | None = None) -> Ensemble:
    """Fit a mean-field Gaussian posterior over all weights and biases; return ``n_samples`` draws.

    Parameters
    ----------
    net : nn.Module
        A network from :func:`bayeslrp.nets.build` (paper: ``conv``); its weights are the
        initial means. Parameters of Linear and Conv2d modules are variational; any other
        (BatchNorm scale and shift) is a point estimate, and BatchNorm running statistics are
        learnt in training mode; every draw carries the final ones.
    x, y : Tensor
        Training images ``[N, C, H, W]`` in [0, 1] and labels ``[N]``; or a :class:`bayeslrp.data.Dataset` as ``x``.
    epochs, lr, batch_size : int, float, int
        Adam on (μ, ρ). Paper: MNIST 5 epochs, lr 0.01; Fashion-MNIST 15 epochs, lr 0.001;
        batch 128.
    prior_std : float
        Prior N(0, prior_std²) on every weight and bias.
    n_samples : int
        Posterior draws kept in the Ensemble. Draw j is ``μ + softplus(ρ)·ε_j`` with ε_j from a
        generator seeded by ``derive_seed(seed, "vi-draw", j)``: reproducible from (seed, j).
    seed : int
        Seeds the batch order, the training noise and the draws (separate derived streams).
    local_reparam : bool
        Local reparameterisation for Linear and Conv2d layers (lower-variance gradients).
    init_std : float
        Initial σ = softplus(ρ) of every weight (default 1e-3).
    lr_schedule : {"constant", "cosine"}
        Learning-rate schedule (paper: constant).
    num_particles : int
        Network samples per data point and step (Monte-Carlo draws of the data term; the
        original's CIFAR ResNet: 5).
    mu_init_std : float, optional
        Initial means drawn from N(0, mu_init_std²) (bayesian-torch: 0.1) instead of ``net``'s
        weights.
    options : TrainOptions, optional
        Optimiser (Adam), learning-rate milestones and augmentation; no weight decay.
    progress : bool
        Progress bar with the ELBO terms (batch NLL and KL/N).
    device : str, optional
        Where to train (default: where ``x`` is).

    Returns
    -------
    Ensemble
        ``n_samples`` draws; ``extras`` holds ``mu.<name>`` and ``rho.<name>`` (σ = softplus(ρ)),
        ``meta`` the method, settings and the per-epoch ELBO history.
    """
    x, y = training_arrays(x, y)
    check_training_data(x, y)
    if n_samples < 1:
        raise BayesLRPError(f"n_samples must be >= 1; got {n_samples}")
    spec = nets.spec_of(net)
    started = time.perf_counter()
    model, history = fit(net, x, y, epochs=epochs, lr=lr, prior_std=prior_std,
                         batch_size=batch_size, seed=seed, init_std=init_std,
                         local_reparam=local_reparam, lr_schedule=lr_schedule, progress=progress,
                         device=device, num_particles=num_particles, mu_init_std=mu_init_std,
                         options=options)
    train_seconds = time.perf_counter() - started
    mu, rho = model.means(), model.rhos()
    fixed = {name: b.detach() for name, b in model.net.named_buffers()}
    fixed.update(model.points())
    order = list(model.net.state_dict())
    draws = [draw(mu, rho, seed, j) for j in range(n_samples)]
    params = {}
    for name in order:
        if name in mu:
            params[name] = torch.stack([d[name] for d in draws])
        else:
            params[name] = fixed[name].unsqueeze(0).expand(n_samples, *fixed[name].shape).clone()
    extras = {f"mu.{k}": v for k, v in mu.items()}
    extras.update({f"rho.{k}": v for k, v in rho.items()})
    meta = {"method": "vi", "epochs": epochs, "lr": lr, "prior_std": prior_std,
            "n_samples": n_samples, "batch_size": batch_size, "seed": seed,
            "local_reparam": local_reparam, "init_std": init_std, "lr_schedule": lr_schedule,
            "n_train": int(x.shape[0]), "history": history, "train_seconds": train_seconds,
            "draw_rule": "draw j = mu + softplus(rho) * eps_j, eps_j ~ N(0, I) from a CPU "
                         "torch.Generator seeded with derive_seed(seed, 'vi-draw', j), "
                         "parameters in state_dict order"}
    if num_particles != 1:
        meta["num_particles"] = num_particles
    if mu_init_std is not None:
        meta["mu_init_std"] = mu_init_std
    if options is not None and options != TrainOptions():
        meta["options"] = options.as_dict()
    return Ensemble(spec, params, meta=meta, extras=extras)
