"""The input gradient of an ensemble attack's loss, one sample's graph at a time on the CPU.

On the CPU the samples run one after another (:func:`bayeslrp.ensemble.forward_stacked`). Keeping
every sample's graph until one backward pass of the summed loss costs memory proportional to S,
which forces small, slow image chunks (conv-512, S = 100: 5 images). Here each sample's forward
is followed by its own backward and the per-image gradients are accumulated, so only one
sample's graph is alive and image chunks stay cache-sized whatever S:

``expected_gradient``
    ``Σ_s ∇ CE_s``: the per-sample gradients summed.
``predictive``
    ``∇(−log p̄_y) = −Σ_s p_s ∇log p_s / Σ_s p_s`` with ``p_s = softmax(f(x, w_s))_y``: a weighted
    mean of the per-sample gradients of ``log p_s``, accumulated in log space with a running
    maximum (the online-softmax rescaling), so that no ``p_s`` underflows.

Each image's loss depends on that image only, so one backward of the summed loss gives every
image's own gradient. The results equal the one-graph gradient up to float32 summation order.
"""
from __future__ import annotations

import torch

from ..ensemble import Ensemble, forward_stacked


def summed_sample_gradient(ens: Ensemble, x: torch.Tensor, labels: torch.Tensor, n_samples: int,
                           mode: str) -> torch.Tensor:
    """``∇x`` of the ``expected_gradient`` or ``predictive`` loss of each image (``[B, …]``).

    Parameters
    ----------
    ens : Ensemble
        The posterior samples (the first ``n_samples`` are used).
    x : Tensor
        Images ``[B, …]`` (not requiring grad).
    labels : Tensor
        The labels whose loss is differentiated, ``[B]``.
    n_samples : int
        How many samples.
    mode : str
        ``"expected_gradient"`` or ``"predictive"``.
    """
    rows = torch.arange(x.shape[0], device=x.device)
    total = weight = running_max = None
    for j in range(n_samples):
        xj = x.detach().requires_grad_(True)
        params = {k: v[j:j + 1] for k, v in ens.params.items()}
        log_p = forward_stacked(ens.module, params, xj)[0].log_softmax(-1)[rows, labels]  # [B]
        (grad,) = torch.autograd.grad(log_p.sum(), xj)
        if mode == "expected_gradient":
            total = -grad if total is None else total.sub_(grad)
            continue
        log_p = log_p.detach()
        if total is None:
            running_max, weight, total = log_p, torch.ones_like(log_p), grad
            continue
        new_max = torch.maximum(running_max, log_p)
        rescale, w = torch.exp(running_max - new_max), torch.exp(log_p - new_max)
        shape = (-1,) + (1,) * (x.dim() - 1)
        total = total.mul_(rescale.view(shape)).add_(grad * w.view(shape))
        weight = weight * rescale + w
        running_max = new_max
    if mode == "expected_gradient":
        return total
    return -total / weight.view((-1,) + (1,) * (x.dim() - 1))
