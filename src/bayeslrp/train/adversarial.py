"""Adversarial training (SPEC §3): each batch replaced by its FGSM(ε = 0.2) examples."""
from __future__ import annotations

import torch
from torch import nn

from ..ensemble import Ensemble
from ..errors import BayesLRPError
from .loop import fit, training_arrays
from .options import TrainOptions
from .perturb import fgsm_step, pgd_steps

ADV_MODES = ("fgsm", "mix", "pgd")


def adversarial(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, eps: float = 0.2,
                mode: str = "fgsm", epochs: int = 15, lr: float = 1e-3, batch_size: int = 128,
                pgd_steps_: int = 40, pgd_alpha: float = 0.01, seed: int = 0,
                progress: bool = True, device: str | torch.device | None = None,
                options: TrainOptions | None = None,
                bounds: tuple[float, float] | None = None) -> Ensemble:
    """Adversarially train a copy of ``net``; return an S = 1 Ensemble.

    Parameters
    ----------
    mode : {"fgsm", "mix", "pgd"}
        ``fgsm`` (original code): every batch is replaced by its FGSM examples against the current
        model. ``mix``: the second half of each batch is replaced, the first half stays clean.
        ``pgd``: Madry et al.'s PGD examples (``pgd_steps_`` steps of ``pgd_alpha``, random start).
    eps : float
        Radius of the L∞ ball, in pixel units of the images.
    bounds : (float, float), optional
        Pixel value range the examples are clamped to (default [0, 1], or the bounds of a
        :class:`bayeslrp.data.Dataset` given as ``x``).

    Other parameters (``options`` too) are those of :func:`bayeslrp.train.deterministic`;
    with augmentation, the FGSM/PGD examples are made from the augmented batch.
    """
    if mode not in ADV_MODES:
        raise BayesLRPError(f"unknown adversarial training mode {mode!r}; choose {', '.join(ADV_MODES)}")
    from ..data.user import Dataset

    if isinstance(x, Dataset) and bounds is None:
        bounds = x.bounds
    x, y = training_arrays(x, y)
    lo, hi = (float(b) for b in (bounds or (0.0, 1.0)))
    if not lo < hi:
        raise BayesLRPError(f"bounds must have low < high; got {bounds}")
    if not 0 < eps <= hi - lo:
        raise BayesLRPError(f"adversarial eps must be in (0, {hi - lo:g}]; got {eps}")
    bounds = (lo, hi)
    generator = torch.Generator().manual_seed(seed + 1)

    def make_batch(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor):
        model.eval()
        if mode == "fgsm":
            xb = fgsm_step(model, xb, yb, eps, bounds)
        elif mode == "mix":
            half = xb.shape[0] // 2
            xb = torch.cat([xb[:half], fgsm_step(model, xb[half:], yb[half:], eps, bounds)])
        else:
            xb = pgd_steps(model, xb, yb, eps, pgd_steps_, pgd_alpha, generator, bounds)
        model.train()
        return xb, yb

    model, history = fit(net, x, y, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                         progress=progress, description=f"train adv ({mode})", device=device,
                         batch_transform=make_batch, options=options)
    meta = {"method": "adv", "adv_mode": mode, "eps": eps, "epochs": epochs, "lr": lr,
            "batch_size": batch_size, "seed": seed, "history": history}
    if options is not None and options != TrainOptions():
        meta["options"] = options.as_dict()
    if mode == "pgd":
        meta.update(pgd_steps=pgd_steps_, pgd_alpha=pgd_alpha)
    if bounds != (0.0, 1.0):
        meta["bounds"] = list(bounds)
    return Ensemble.from_module(model, meta=meta)
