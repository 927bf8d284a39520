"""Gradient attacks on ensembles: FGSM and PGD (SPEC §5).

An ensemble is attacked in one of three ways (paper II-C):

``expected_gradient`` (default, the paper's formula)
    step along ``sign(Σ_s ∇x CE(f(x, w_s), y))``: the gradient of the sum of the per-sample
    cross-entropy losses (on the CPU accumulated one sample at a time, elsewhere one backward
    pass through ``ens.logits``; :mod:`bayeslrp.attacks.input_gradient`).
``predictive``
    step along ``sign(∇x −log p̄_y(x))`` with ``p̄ = mean_s softmax(f(x, w_s))``, the loss of the
    Bayesian predictive distribution.
``per_sample_average``
    the original code's: every sample is attacked separately as a deterministic network (its own
    random start, its own steps), and the S adversarial images are averaged.

Everything is vectorised over images (chunked by ``batch_size``); samples run as
:meth:`bayeslrp.Ensemble.logits` runs them.
"""
from __future__ import annotations

import copy
import math

import torch
from torch.nn import functional as F

from ..compat import check_data
from ..ensemble import Ensemble, forward_stacked, loops_over_samples
from ..errors import BayesLRPError
from ._common import (check_images, check_labels, check_positive, data_args, image_chunks,
                      n_classes_of, project)
from .input_gradient import summed_sample_gradient

MODES = ("expected_gradient", "predictive", "per_sample_average")
#: How PGD restarts are compared per image (:func:`pgd`).
KEEP = ("loss", "success")


def fgsm(ens: Ensemble, x: torch.Tensor, y: torch.Tensor | None = None, eps: float = 0.2,
         n_samples: int | None = None, mode: str = "expected_gradient",
         targeted: torch.Tensor | None = None, batch_size: int | None = None, *,
         bounds: tuple[float, float] | None = None, checkpoint=None) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015) against an ensemble.

    ``x̃ = clamp(x + eps · sign(∇x L), lo, hi)`` with ``L`` the cross-entropy of the true label
    (ensemble modes: see :mod:`bayeslrp.attacks.gradient`).

    Parameters
    ----------
    ens : Ensemble
        The model; its first ``n_samples`` samples are attacked.
    x : Tensor or Dataset
        Images ``[B, C, H, W]`` within ``bounds``; or a :class:`bayeslrp.data.Dataset`
        (its labels and bounds are used unless given).
    y : Tensor
        True labels ``[B]``.
    eps : float
        Step size = L∞ radius, in pixel units (the units of ``bounds``).
    n_samples : int, optional
        Posterior samples used (default: all).
    mode : {"expected_gradient", "predictive", "per_sample_average"}
        How the ensemble's gradient is formed.
    targeted : Tensor, optional
        Target classes ``[B]``: step down the cross-entropy of these classes instead.
    batch_size : int, optional
        Images per chunk (default: as many as fit 1 GiB of activations).
    bounds : (float, float), optional
        Pixel value range every point is clamped to (default [0, 1]).
    checkpoint : ChunkCheckpoint, optional
        Save every finished image chunk there and reuse the chunks saved by an earlier,
        interrupted call (:class:`bayeslrp.attacks.checkpoint.ChunkCheckpoint`); the points
        are the same either way.

    Returns
    -------
    Tensor
        Adversarial images, same shape and device as ``x``.
    """
    return _sign_attack(ens, x, y, eps=eps, steps=1, alpha=eps, n_samples=n_samples, mode=mode,
                        random_start=False, restarts=1, targeted=targeted, seed=0,
                        batch_size=batch_size, bounds=bounds, checkpoint=checkpoint)


def pgd(ens: Ensemble, x: torch.Tensor, y: torch.Tensor | None = None, eps: float = 0.2,
        steps: int = 40, alpha: float = 0.01, n_samples: int | None = None,
        mode: str = "expected_gradient", random_start: bool = True, restarts: int = 1,
        targeted: torch.Tensor | None = None, seed: int = 0, batch_size: int | None = None, *,
        bounds: tuple[float, float] | None = None, checkpoint=None,
        keep: str = "loss") -> torch.Tensor:
    """Projected gradient descent (Madry et al. 2018) against an ensemble.

    From a uniform random start in the ε-ball (clamped to ``bounds``, default [0, 1]), ``steps``
    signed steps of size ``alpha``; after each step the point is projected onto the ε-ball around
    ``x`` and clamped to ``bounds``. With ``restarts > 1`` each image keeps the restart whose final loss is highest
    (lowest target-class loss when ``targeted``); in ``per_sample_average`` mode this choice is made
    per image and per sample before averaging.

    Parameters
    ----------
    ens, x, y, eps, n_samples, mode, targeted, batch_size, bounds, checkpoint
        As in :func:`fgsm`.
    steps : int
        Number of steps (paper: 40).
    alpha : float
        Step size in pixel units (paper: 0.01).
    random_start : bool
        Start from a uniform random point of the ε-ball (else from ``x``).
    restarts : int
        Independent runs; the best per image is kept.
    seed : int
        Seed of the random starts (a ``torch.Generator``); same seed, same points, whatever
        ``batch_size``.
    keep : {"loss", "success"}
        How restarts are compared per image: ``"loss"`` keeps the highest attacked loss;
        ``"success"`` keeps a successful point (misclassified; the target class when
        ``targeted``) over an unsuccessful one and the highest loss among equals — so the
        kept point is never less successful nor, among equals, of lower loss than restart 1,
        which is the ``restarts=1`` run of the same seed.

    Returns
    -------
    Tensor
        Adversarial images, same shape and device as ``x``.
    """
    if keep not in KEEP:
        raise BayesLRPError(f"keep must be one of {', '.join(KEEP)}; got {keep!r}")
    return _sign_attack(ens, x, y, eps=eps, steps=steps, alpha=alpha, n_samples=n_samples,
                        mode=mode, random_start=random_start, restarts=restarts,
                        targeted=targeted, seed=seed, batch_size=batch_size, bounds=bounds,
                        checkpoint=checkpoint, keep=keep)


def loss_per_image(ens: Ensemble, x: torch.Tensor, labels: torch.Tensor, n_samples: int,
                   mode: str) -> torch.Tensor:
    """The attacked loss of each image, differentiable in ``x``.

    ``expected_gradient``: ``Σ_s CE(f(x, w_s), y)`` ``[B]``; ``predictive``: ``−log p̄_y`` ``[B]``;
    ``per_sample_average``: ``x`` is ``[n, B, C, H, W]`` (one image per sample) and the result is
    ``CE(f(x_s, w_s), y)`` ``[n, B]``.
    """
    if mode == "per_sample_average":
        logits = per_sample_logits(ens, x, n_samples)
    else:
        logits = ens.logits(x, n_samples)
    n, b, c = logits.shape
    log_p = logits.log_softmax(-1)
    log_p_true = log_p.gather(-1, labels.view(1, b, 1).expand(n, b, 1)).squeeze(-1)  # [n, B]
    if mode == "expected_gradient":
        return -log_p_true.sum(0)
    if mode == "predictive":
        return -(torch.logsumexp(log_p_true, dim=0) - math.log(n))
    return -log_p_true


def per_sample_logits(ens: Ensemble, x: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Logits ``[n, B, C]`` where sample ``s`` sees its own images ``x[s]`` (``x``: ``[n, B, …]``).

    Run like :meth:`bayeslrp.Ensemble.logits` (a loop over samples on the CPU, vmap elsewhere),
    chunked over samples.
    """
    outs = []
    for sl in ens.sample_chunks(n_samples, x[0]):
        params = {k: v[sl] for k, v in ens.params.items()}
        outs.append(forward_stacked(ens.module, params, x[sl], per_sample_inputs=True))
    return torch.cat(outs)


def _sign_attack(ens, x, y, *, eps, steps, alpha, n_samples, mode, random_start, restarts,
                 targeted, seed, batch_size, bounds, checkpoint=None,
                 keep="loss") -> torch.Tensor:
    x, y, bounds = data_args(x, y, bounds)
    if mode not in MODES:
        raise BayesLRPError(f"unknown ensemble attack mode {mode!r}; "
                            f"choose one of {', '.join(MODES)}")
    check_positive(eps=eps, alpha=alpha)
    if int(steps) < 1 or int(restarts) < 1:
        raise BayesLRPError(f"steps and restarts must be >= 1; got {steps}, {restarts}")
    check_images(x, bounds=bounds)
    check_data(ens, x)
    n = ens.resolve_n(n_samples)
    device = ens.device
    x0_all = x.detach().to(device)
    n_classes = n_classes_of(ens, x0_all)
    check_labels(y, x.shape[0], "y", n_classes)
    if targeted is not None:
        check_labels(targeted, x.shape[0], "targeted", n_classes)
    labels_all = (y if targeted is None else targeted).to(device)
    # maximise the true-label loss, or minimise the target-class loss
    direction = 1.0 if targeted is None else -1.0

    per_sample = mode == "per_sample_average"
    state_shape = (n, *x.shape) if per_sample else tuple(x.shape)
    generator = torch.Generator().manual_seed(int(seed))
    # where samples are looped, only one sample's graph is alive at a time (_loss_gradient)
    graph_samples = 1 if loops_over_samples(device) else n
    chunks = list(image_chunks(ens, x0_all, graph_samples, batch_size))
    groups = _sample_groups(ens, n) if per_sample else None
    if checkpoint is not None:
        checkpoint.begin({"images": list(x.shape), "samples": n, "mode": mode,
                          "restarts": int(restarts), "steps": int(steps),
                          "chunks": [[sl.start, sl.stop] for sl in chunks]})
    best = best_obj = None
    for restart in range(int(restarts)):
        noise = None
        if random_start:
            # drawn for the whole batch at once so the points do not depend on batch_size
            noise = (torch.rand(state_shape, generator=generator) * 2 - 1).to(device)
        finals = []
        for i, sl in enumerate(chunks):
            saved = checkpoint.get(restart, i) if checkpoint is not None else None
            if saved is not None:
                finals.append(saved.to(device))
                continue
            x0 = x0_all[sl]
            labels = labels_all[sl]
            if per_sample:
                final = _per_sample_steps(groups, x0, labels, noise, sl, mode, direction,
                                          eps, alpha, int(steps), bounds)
            else:
                start = x0 if noise is None else project(x0 + eps * noise[sl], x0, eps, bounds)
                final = _run_steps(ens, start, x0, labels, n, mode, direction, eps, alpha,
                                   int(steps), bounds)
            if checkpoint is not None:
                checkpoint.put(restart, i, final)
            finals.append(final)
        x_adv = torch.cat(finals, dim=1 if per_sample else 0)
        if restarts == 1:
            best = x_adv
            break
        obj = torch.cat([direction * _loss_no_grad(ens, x_adv[:, sl] if per_sample else x_adv[sl],
                                                   labels_all[sl], n, mode)
                         for sl in chunks], dim=-1)
        won = None
        if keep == "success":
            won = torch.cat([_success_no_grad(ens, x_adv[:, sl] if per_sample else x_adv[sl],
                                              labels_all[sl], n, per_sample, targeted is not None)
                             for sl in chunks], dim=-1)
        if best is None:
            best, best_obj, best_won = x_adv, obj, won
        else:
            better = obj > best_obj
            if won is not None:
                better = (won & ~best_won) | ((won == best_won) & better)
                best_won = torch.where(better, won, best_won)
            best = torch.where(better.view(*better.shape, 1, 1, 1), x_adv, best)
            best_obj = torch.where(better, obj, best_obj)
    if per_sample:
        best = best.mean(0)
    return best.to(x.device)


def _sample_groups(ens, n) -> list[tuple[slice, Ensemble]]:
    """Samples attacked together in ``per_sample_average`` mode: one at a time on the CPU (the
    step's elementwise work then stays in cache, as in a per-network attack), all at once
    elsewhere. The samples' attacks are independent, so the grouping does not change them."""
    if loops_over_samples(ens.device):
        return [(slice(j, j + 1), _sample_view(ens, j)) for j in range(n)]
    return [(slice(0, n), ens.head(n))]


def _sample_view(ens, j) -> Ensemble:
    """Sample ``j`` as a one-sample Ensemble of views: no parameter copy, the same module."""
    view = copy.copy(ens)
    view.params = {k: v[j:j + 1] for k, v in ens.params.items()}
    return view


def _per_sample_steps(groups, x0, labels, noise, sl, mode, direction, eps, alpha, steps,
                      bounds):
    """Final points ``[n, b, …]`` of the per-sample attacks on the images ``x0`` (chunk ``sl``)."""
    finals = []
    for samples, sub in groups:
        start = x0.expand(sub.n_samples, *x0.shape)
        if noise is not None:
            start = project(start + eps * noise[samples, sl], x0, eps, bounds)
        finals.append(_run_steps(sub, start, x0, labels, sub.n_samples, mode, direction, eps,
                                 alpha, steps, bounds))
    return torch.cat(finals)


def _run_steps(ens, x_adv, x0, labels, n, mode, direction, eps, alpha, steps,
               bounds) -> torch.Tensor:
    """Signed-gradient steps with projection and clamp; ``x_adv`` is ``[b, …]`` or ``[n, b, …]``."""
    # The ball and the bounds as one interval per pixel, made once: clamping to it equals
    # ``project`` exactly (min/max are exact) and each step then writes into the gradient's
    # buffer instead of allocating five image-sized tensors.
    low = (x0 - eps).clamp_(bounds[0], bounds[1])
    high = (x0 + eps).clamp_(bounds[0], bounds[1])
    x_adv = x_adv.detach()
    for _ in range(steps):
        grad = _loss_gradient(ens, x_adv, labels, n, mode)
        step = grad.sign_().mul_(direction * alpha).add_(x_adv.detach())
        x_adv = torch.clamp(step, min=low, max=high, out=step)
    return x_adv


def _loss_gradient(ens, x_adv, labels, n, mode) -> torch.Tensor:
    """``∇x`` of the summed per-image loss: one sample's graph at a time where samples are looped
    (:mod:`bayeslrp.attacks.input_gradient`), else one backward of all samples' graph."""
    if mode != "per_sample_average" and loops_over_samples(ens.device):
        return summed_sample_gradient(ens, x_adv, labels, n, mode)
    x_adv = x_adv.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_per_image(ens, x_adv, labels, n, mode).sum(), x_adv)
    return grad


def _loss_no_grad(ens, x_adv, labels, n, mode) -> torch.Tensor:
    with torch.no_grad():
        return loss_per_image(ens, x_adv, labels, n, mode)


def _success_no_grad(ens, x_adv, labels, n, per_sample, targeted) -> torch.Tensor:
    """Whether each point fools the attacked output: the predictive mean of the first ``n``
    samples ``[B]`` (per sample ``[n, B]`` in ``per_sample_average`` mode)."""
    with torch.no_grad():
        if per_sample:
            pred = per_sample_logits(ens, x_adv, n).argmax(-1)
        else:
            pred = ens.predict_proba(x_adv, n).argmax(-1)
    return pred == labels if targeted else pred != labels
