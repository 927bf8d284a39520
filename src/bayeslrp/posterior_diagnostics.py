"""How different the samples of an Ensemble are (issue 22 item 3).

"Bay1 ≈ Bay100" — averaging posterior samples changing little — can only be read against how
different the samples are. These functions measure it for any Ensemble, whatever its method:

* :func:`prediction_disagreement` — the mean, over pairs of samples, of the share of images on
  which the two samples predict different classes;
* :func:`weight_distances` — the mean distance between two samples' weights relative to the mean
  weight norm, and the mean distance of the samples to a reference point (the MAP) relative to
  the reference's norm;
* :func:`repeated_share` — the share of samples identical to their predecessor in their chain
  (an HMC rejection repeats the previous state);
* :func:`predictive_ess` — the effective sample size of each image's sampled probability of its
  true class, over the chains of an MCMC model.

Only learnable parameters enter the weight measures (buffers such as BatchNorm's running
statistics do not). Everything is vectorised over samples and images.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .errors import BayesLRPError

__all__ = ["chain_layout", "posterior_diagnostics", "prediction_disagreement",
           "predictive_ess", "repeated_share", "weight_distances"]


def prediction_disagreement(labels: torch.Tensor, n_classes: int | None = None) -> float | None:
    """Mean over sample pairs ``i < j`` of the share of images with ``labels[i] != labels[j]``.

    Parameters
    ----------
    labels : Tensor
        ``[S, N]`` predicted classes of each sample on each image.
    n_classes : int, optional
        Number of classes (default: ``labels.max() + 1``).

    Returns
    -------
    float or None
        In [0, 1]; None for S < 2 (no pairs).

    Notes
    -----
    With ``n_c`` samples predicting class ``c`` on an image, ``Σ_c n_c (n_c − 1) / 2`` of the
    ``S (S − 1) / 2`` pairs agree there, so no pair is formed explicitly.
    """
    if labels.ndim != 2:
        raise BayesLRPError(f"labels must be [S, N]; got {tuple(labels.shape)}")
    s, n = labels.shape
    if s < 2 or n == 0:
        return None
    c = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    counts = torch.zeros(c, n, dtype=torch.float64)
    counts.scatter_add_(0, labels.to(torch.int64).cpu(), torch.ones(s, n, dtype=torch.float64))
    agree = (counts * (counts - 1) / 2).sum(0)
    return float(1.0 - (agree / (s * (s - 1) / 2)).mean())


#: float64 elements of one chunk of stacked weights (32 MiB).
_CHUNK_ELEMENTS = 1 << 22


def _parameter_names(ens) -> list[str]:
    names = [name for name, _ in ens.module.named_parameters()]
    return [name for name in names if name in ens.params] or list(ens.params)


def weight_distances(ens, reference: Mapping[str, torch.Tensor] | None = None) -> dict:
    """Relative weight distances between the samples and to ``reference``.

    Parameters
    ----------
    ens : Ensemble
        Any ensemble.
    reference : mapping of str to Tensor, optional
        One parameter set (the module's parameter names, no sample axis), e.g. the MAP.

    Returns
    -------
    dict
        ``between_samples``: mean over pairs ``i < j`` of ``‖w_i − w_j‖`` divided by the mean
        ``‖w_s‖`` (None for S < 2); ``to_reference``: mean over samples of ``‖w_s − w_ref‖ /
        ‖w_ref‖`` (None without a reference); ``weight_norm``: mean ``‖w_s‖``.
    """
    names = _parameter_names(ens)
    s = ens.n_samples
    gram = torch.zeros(s, s, dtype=torch.float64)
    to_ref = torch.zeros(s, dtype=torch.float64)
    ref_sq = 0.0
    width = max(1, _CHUNK_ELEMENTS // s)
    for name in names:  # column chunks of one parameter at a time bound the float64 copies
        flat = ens.params[name].detach().reshape(s, -1)
        ref = None
        if reference is not None:
            if name not in reference:
                raise BayesLRPError(f"the reference weights lack {name!r}")
            ref = reference[name].detach().reshape(1, -1)
            if ref.shape[1] != flat.shape[1]:
                raise BayesLRPError(f"the reference's {name!r} has another shape")
        for start in range(0, flat.shape[1], width):
            w = flat[:, start:start + width].to("cpu", torch.float64)
            gram += w @ w.T
            if ref is not None:
                r = ref[:, start:start + width].to("cpu", torch.float64)
                to_ref += ((w - r) ** 2).sum(1)
                ref_sq += float((r ** 2).sum())
    sq = gram.diagonal()
    norm = sq.sqrt().mean()
    out = {"weight_norm": float(norm), "between_samples": None, "to_reference": None}
    if s >= 2:
        d2 = (sq[:, None] + sq[None, :] - 2 * gram).clamp_min(0)
        i, j = torch.triu_indices(s, s, offset=1)
        out["between_samples"] = float(d2[i, j].sqrt().mean() / norm) if norm > 0 else None
    if reference is not None and ref_sq > 0:
        out["to_reference"] = float((to_ref.sqrt() / ref_sq ** 0.5).mean())
    return out


def chain_layout(n_samples: int, chains: int = 1) -> tuple[int, int]:
    """``(chains, draws)`` of ``n_samples`` pooled samples stored interleaved (sample ``s`` is
    draw ``s // chains`` of chain ``s % chains``, as :func:`bayeslrp.train.hmc` pools them)."""
    chains = max(int(chains), 1)
    if n_samples % chains:
        raise BayesLRPError(f"{n_samples} samples do not split into {chains} equal chains")
    return chains, n_samples // chains


def repeated_share(ens, chains: int = 1) -> float | None:
    """Share of samples exactly equal to the previous draw of their chain.

    Samples are read interleaved over ``chains`` (:func:`chain_layout`); the first draw of each
    chain has no predecessor. None when no sample has one.
    """
    m, d = chain_layout(ens.n_samples, chains)
    if d < 2:
        return None
    same = torch.ones(d - 1, m, dtype=torch.bool)
    width = max(1, _CHUNK_ELEMENTS // ens.n_samples)
    for name in _parameter_names(ens):
        flat = ens.params[name].detach().reshape(d, m, -1)
        for start in range(0, flat.shape[2], width):
            w = flat[:, :, start:start + width]
            same &= (w[1:] == w[:-1]).all(-1).cpu()
    return float(same.to(torch.float64).mean())


def predictive_ess(sample_probs: torch.Tensor, y: torch.Tensor, chains: int = 1) -> dict | None:
    """ESS of each image's sampled true-class probability ``p_s(y | x)``.

    Parameters
    ----------
    sample_probs : Tensor
        ``[S, N, C]`` softmax of each sample, samples interleaved over ``chains``.
    y : Tensor
        ``[N]`` labels.
    chains : int
        Number of chains.

    Returns
    -------
    dict or None
        ``median`` and ``min`` over images of :func:`bayeslrp.mcmc.ess` (images whose
        probability is constant over the draws have no ESS and are left out), ``n_images``
        with an ESS, and ``n_draws`` (S); None with fewer than 4 draws per chain.
    """
    from .mcmc.diagnostics import ess

    s, n, _ = sample_probs.shape
    m, d = chain_layout(s, chains)
    if d < 4:
        return None
    p = sample_probs.detach().cpu().gather(
        2, y.to(torch.int64).cpu().view(1, n, 1).expand(s, n, 1)).squeeze(2)
    draws = p.reshape(d, m, n).permute(1, 0, 2).numpy()  # [chains, draws, N]
    values = np.asarray(ess(draws), dtype=float).reshape(-1)
    values = values[np.isfinite(values)]
    if not values.size:
        return {"median": None, "min": None, "n_images": 0, "n_draws": int(s)}
    return {"median": float(np.median(values)), "min": float(values.min()),
            "n_images": int(values.size), "n_draws": int(s)}


def posterior_diagnostics(ens, sample_probs: torch.Tensor, y: torch.Tensor, *,
                          reference: Mapping[str, torch.Tensor] | None = None,
                          reference_kind: str | None = None, chains: int | None = None
                          ) -> dict:
    """Every measure of this module for one model.

    Parameters
    ----------
    ens : Ensemble
        The model.
    sample_probs : Tensor
        ``[S, N, C]`` softmax of each sample on the test images.
    y : Tensor
        ``[N]`` test labels.
    reference, reference_kind : optional
        The weights the samples are compared to and what they are (``"init_model"``, …).
    chains : int, optional
        The number of MCMC chains (interleaved); None for a model that has no chains (then
        no predictive ESS, and repeats are counted along the stored order).
    """
    labels = sample_probs.argmax(-1)
    dist = weight_distances(ens, reference)
    return {"n_samples": int(ens.n_samples),
            "prediction_disagreement": prediction_disagreement(labels, sample_probs.shape[-1]),
            "weight_distance_between": dist["between_samples"],
            "weight_distance_to_reference": dist["to_reference"],
            "reference": reference_kind if dist["to_reference"] is not None else None,
            "repeated_share": repeated_share(ens, chains or 1),
            "predictive_ess": None if chains is None
            else predictive_ess(sample_probs, y, chains)}
