"""Deterministic training (SPEC §3): Adam, lr 1e-3, batch 128, cross-entropy."""
from __future__ import annotations

import torch
from torch import nn

from ..ensemble import Ensemble
from .loop import fit, training_arrays
from .options import TrainOptions


def deterministic(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, epochs: int = 15,
                  lr: float = 1e-3, batch_size: int = 128, seed: int = 0, progress: bool = True,
                  device: str | torch.device | None = None,
                  options: TrainOptions | None = None) -> Ensemble:
    """Train a copy of ``net`` by maximum likelihood and return it as an S = 1 Ensemble.

    Parameters
    ----------
    net : nn.Module
        A network from :func:`bayeslrp.nets.build` (its initial weights are the start).
    x, y : Tensor
        Training images ``[N, C, H, W]`` in [0, 1] and labels ``[N]``; or a
        :class:`bayeslrp.data.Dataset` as ``x`` (its labels unless ``y`` is given).
    epochs, lr, batch_size : int, float, int
        Paper defaults: 15 epochs (fc2; conv uses 5 on MNIST, 10 on Fashion-MNIST), 1e-3, 128.
    seed : int
        Seed of the batch order.
    progress : bool
        Show a progress bar on stderr.
    device : str, optional
        Where to train (default: where ``x`` is).
    options : TrainOptions, optional
        Optimiser, learning-rate steps and augmentation (default: Adam, constant, none).
    """
    x, y = training_arrays(x, y)
    model, history = fit(net, x, y, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                         progress=progress, description="train det", device=device,
                         options=options)
    meta = {"method": "det", "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
            "history": history}
    if options is not None and options != TrainOptions():
        meta["options"] = options.as_dict()
    return Ensemble.from_module(model, meta=meta)
