"""The shared mini-batch training loop (Adam, cross-entropy, seeded shuffling)."""
from __future__ import annotations

import copy
import time
from typing import Callable

import torch
from torch import nn

from ..errors import BayesLRPError
from ..progress import progress_bar
from .options import TrainOptions

BatchTransform = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def training_arrays(x, y):
    """``(x, y)`` of a train call: ``x`` may be a :class:`bayeslrp.data.Dataset` (then ``y``
    defaults to its labels)."""
    from ..data.user import Dataset

    if isinstance(x, Dataset):
        return x.x, (x.y if y is None else y)
    if y is None:
        raise BayesLRPError("training needs labels y (or a bl.data.Dataset in place of x)")
    return x, y


def check_training_data(x: torch.Tensor, y: torch.Tensor) -> None:
    """Refuse data that cannot be trained on, with a message that says why."""
    if x.ndim != 4:
        raise BayesLRPError(f"training images must be [N, C, H, W]; got shape {tuple(x.shape)}")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise BayesLRPError(f"{x.shape[0]} images but {y.shape[0]} labels")


def fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
        batch_size: int, seed: int, progress: bool, description: str,
        device: str | torch.device | None = None,
        batch_transform: BatchTransform | None = None,
        options: TrainOptions | None = None,
        on_step: Callable[[nn.Module, int], bool] | None = None) -> tuple[nn.Module, dict]:
    """Train a copy of ``net`` on cross-entropy; return it (eval mode) and a history.

    ``on_step(model, steps_done)``, if given, is called after every optimiser step; when it
    returns True training stops there (the history's last epoch then averages the batches
    done).

    ``options`` chooses the optimiser (default Adam), learning-rate steps and augmentation
    (:class:`~bayeslrp.train.options.TrainOptions`); augmented batches are what
    ``batch_transform(model, xb, yb)`` sees, which may replace them (adversarial training).
    """
    check_training_data(x, y)
    if epochs < 1 or lr <= 0 or batch_size < 1:
        raise BayesLRPError("epochs and batch_size must be >= 1 and lr > 0")
    options = options or TrainOptions()
    device = torch.device(device or x.device)
    model = copy.deepcopy(net).to(device).train()
    optimiser = options.optimizer_for(model.parameters(), lr)
    augment = options.augmenter(seed)
    generator = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    n_batches = (n + batch_size - 1) // batch_size
    history: dict = {"loss": [], "train_accuracy": [], "epoch_seconds": []}
    steps, stopped = 0, False
    with progress_bar(description, epochs * n_batches, enabled=progress) as bar:
        for epoch in range(epochs):
            if stopped:
                break
            started = time.perf_counter()
            if options.lr_milestones:
                for group in optimiser.param_groups:
                    group["lr"] = options.lr_at(epoch, lr)
            order = torch.randperm(n, generator=generator)
            # device-side sums: no host sync per step (float64, as Python floats were)
            total_loss = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            seen = 0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                xb, yb = x[idx].to(device), y[idx].to(device)
                if augment is not None:
                    xb = augment(xb)
                if batch_transform is not None:
                    xb, yb = batch_transform(model, xb, yb)
                logits = model(xb)
                loss = nn.functional.cross_entropy(logits, yb)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total_loss += loss.detach().double() * yb.shape[0]
                correct += (logits.detach().argmax(-1) == yb).sum()
                if bar.enabled:
                    bar.advance(1, loss=loss.item())
                seen += yb.shape[0]
                steps += 1
                if on_step is not None and on_step(model, steps):
                    stopped = True
                    break
            history["loss"].append(float(total_loss) / seen)
            history["train_accuracy"].append(int(correct) / seen)
            history["epoch_seconds"].append(time.perf_counter() - started)
    return model.eval(), history
