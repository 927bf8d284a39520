"""What the manifold analysis measures: per-sample input gradients, their running means, and
the table of normal shares (issue "how much of each gradient and heatmap lies off the data
manifold"; paper 000 Theorem IV.1).

Quantities, each per posterior sample ``j`` (``[S, B, ...]``):

* ``prediction`` — ``∇ₓ z_c(x; w_j)``, the input gradient of the explained class's logit
  (c = the predictive mean's class, SPEC §9): the theorem's prediction-function gradient;
* ``loss`` — ``∇ₓ CE(z(x; w_j), y)``: the quantity a gradient attack follows;
* a heatmap of any explainer (``bl.explain(…, reduce=None)``).

Each is measured for every single sample and for the mean over the first n samples; the
theorem predicts that the normal share of the mean falls towards 0 as n grows for a Bayesian
posterior, while a deterministic net's share stays where it is.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from bayeslrp.analysis.manifold import tangent_normal_norms
from bayeslrp.ensemble import forward_stacked
from bayeslrp.errors import BayesLRPError

__all__ = ["MANIFOLD_COLUMNS", "MANIFOLD_FILE", "MANIFOLD_ORDER", "sample_input_gradients",
           "cumulative_means", "share_rows"]

MANIFOLD_FILE = "manifold.parquet"
MANIFOLD_COLUMNS = ("model", "method", "arch", "dataset", "attack", "quantity", "basis", "k",
                    "dim", "kind", "n", "sample", "point", "tangent_norm", "normal_norm",
                    "share")
MANIFOLD_ORDER = ("model", "attack", "quantity", "basis", "k", "dim", "kind", "n", "sample",
                  "point")
GRADIENT_QUANTITIES = ("prediction", "loss")
IMAGE_CHUNK = 64


def sample_input_gradients(ens, x: torch.Tensor, quantity: str = "prediction",
                           y: torch.Tensor | None = None, target: torch.Tensor | None = None,
                           n_samples: int | None = None,
                           image_chunk: int = IMAGE_CHUNK) -> torch.Tensor:
    """Every posterior sample's input gradient, ``[S, B, C, H, W]`` (float32, on the CPU).

    Parameters
    ----------
    ens : Ensemble
        The model (any sample count; a det net is one sample).
    x : Tensor
        Images ``[B, C, H, W]``.
    quantity : {"prediction", "loss"}
        ``prediction``: gradient of the logit of ``target``; ``loss``: of the cross-entropy
        with labels ``y``.
    target : Tensor, optional
        Class per image for ``prediction`` (default: the predictive mean's class over the
        first ``n_samples`` samples).
    n_samples : int, optional
        Samples used (default: all).
    """
    if quantity not in GRADIENT_QUANTITIES:
        raise BayesLRPError(f"quantity must be one of {', '.join(GRADIENT_QUANTITIES)}; "
                            f"got {quantity!r}")
    n = ens.resolve_n(n_samples)
    if quantity == "loss" and y is None:
        raise BayesLRPError("the loss gradient needs the labels y")
    if quantity == "prediction" and target is None:
        target = ens.predict(x, n)
    labels = (target if quantity == "prediction" else y).to(torch.int64)
    out = []
    for start in range(0, x.shape[0], image_chunk):
        xb = x[start:start + image_chunk].to(ens.device)
        lb = labels[start:start + image_chunk].to(ens.device)
        parts = [_chunk_gradients(ens, {k: v[sl] for k, v in ens.params.items()}, xb, lb,
                                  quantity)
                 for sl in ens.sample_chunks(n, xb)]
        out.append(torch.cat(parts).cpu())
    return torch.cat(out, dim=1)


def _chunk_gradients(ens, params, xb, labels, quantity):
    s = next(iter(params.values())).shape[0]

    with torch.enable_grad():
        # one input copy per sample, so the gradient of the summed values is per sample
        inp = xb.detach().unsqueeze(0).repeat(s, *([1] * xb.dim())).requires_grad_(True)
        logits = forward_stacked(ens.module, params, inp, per_sample_inputs=True)  # [s, b, C]
        if quantity == "prediction":
            value = logits.gather(2, labels.view(1, -1, 1).expand(s, -1, 1)).sum()
        else:
            value = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.repeat(s), reduction="sum")
        (grad,) = torch.autograd.grad(value, inp)
    return grad.detach()


def cumulative_means(values: torch.Tensor, n_list: Sequence[int]) -> torch.Tensor:
    """Means over the first ``n`` samples for every ``n``: ``[len(n_list), ...]`` (float64)."""
    s = values.shape[0]
    bad = [n for n in n_list if not 1 <= int(n) <= s]
    if bad:
        raise BayesLRPError(f"sample counts {bad} are outside 1…{s}")
    csum = values.to(torch.float64).cumsum(0)
    return torch.stack([csum[int(n) - 1] / int(n) for n in n_list])


def share_rows(values: torch.Tensor, bases: Mapping[str, torch.Tensor],
               n_list: Sequence[int], labels: Mapping[str, object],
               points: Sequence[int], samples: bool = True) -> pd.DataFrame:
    """Rows of the manifold table for one quantity's per-sample values ``[S, B, ...]``.

    ``kind = "sample"`` rows hold each sample's share (``sample`` = its index, ``n`` = 1);
    ``kind = "mean"`` rows the share of the mean of the first ``n`` samples (``sample`` = −1).
    ``bases`` maps a basis label (``pca``, ``random``) to its ``[B, D, d]`` bases; ``labels``
    the constant columns (model, attack, quantity, k, dim …); ``samples=False`` leaves out
    the per-sample rows.
    """
    s, b = values.shape[0], values.shape[1]
    n_list = [int(n) for n in n_list if int(n) <= s] or [s]
    means = cumulative_means(values, n_list)
    frames = []
    for basis, u in bases.items():
        kinds = [("sample", values, [1] * s, list(range(s)))] if samples else []
        kinds.append(("mean", means, n_list, [-1] * len(n_list)))
        for kind, vecs, ns, index in kinds:
            tangent, normal = tangent_normal_norms(vecs, u)  # [m, B]
            total = torch.sqrt(tangent ** 2 + normal ** 2)
            share = torch.where(total > 0, normal / total.clamp_min(1e-300),
                                torch.full_like(total, float("nan")))
            m = tangent.shape[0]
            frames.append(pd.DataFrame({
                "basis": basis, "kind": kind,
                "n": np.repeat(np.asarray(ns, dtype=np.int64), b),
                "sample": np.repeat(np.asarray(index, dtype=np.int64), b),
                "point": np.tile(np.asarray(points, dtype=np.int64), m),
                "tangent_norm": tangent.reshape(-1).numpy(),
                "normal_norm": normal.reshape(-1).numpy(),
                "share": share.reshape(-1).numpy()}))
    table = pd.concat(frames, ignore_index=True)
    for column, value in labels.items():
        table[column] = value
    return table
