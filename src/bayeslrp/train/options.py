"""Optimiser, learning-rate steps and data augmentation shared by every trainer.

The defaults are the paper's (Adam, constant rate, no augmentation; SPEC §3); the CIFAR
ResNet-20 recipe of the original (SGD with momentum 0.9, weight decay 1e-4, ×0.1 at epochs
100 and 150, random crop with 4 pixels of padding and horizontal flips) is
``TrainOptions(optimizer="sgd", momentum=0.9, weight_decay=1e-4, lr_milestones=(100, 150),
augment="crop_flip")``. At the defaults nothing here draws a random number or changes a step,
so models trained before these options existed are reproduced bit for bit.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import torch

from ..errors import BayesLRPError

__all__ = ["AUGMENTATIONS", "OPTIMIZERS", "TrainOptions", "augment_batch"]

OPTIMIZERS = ("adam", "sgd")
AUGMENTATIONS = ("none", "crop_flip")
#: Zero padding of the random crop (pixels on each side).
CROP_PADDING = 4


@dataclass(frozen=True)
class TrainOptions:
    """How the parameters are optimised and the batches augmented.

    Attributes
    ----------
    optimizer : {"adam", "sgd"}
        Adam (paper) or SGD with ``momentum`` (classical, not Nesterov).
    momentum : float
        SGD momentum (ignored by Adam).
    weight_decay : float
        L2 penalty added by the optimiser (PyTorch's ``weight_decay``; 0: none).
    lr_milestones : tuple of int
        Epochs (0-based, each ≥ 1) at whose start the learning rate is multiplied by
        ``lr_gamma`` (PyTorch's MultiStepLR); empty: constant.
    lr_gamma : float
        Factor of each step.
    augment : {"none", "crop_flip"}
        ``crop_flip``: every training image is shifted by a random crop of the zero-padded
        image (4 pixels each side) and flipped left-right with probability 1/2, from a
        generator seeded by the trainer's seed.
    """

    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_milestones: tuple[int, ...] = field(default_factory=tuple)
    lr_gamma: float = 0.1
    augment: str = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_milestones", tuple(int(m) for m in self.lr_milestones))
        if self.optimizer not in OPTIMIZERS:
            raise BayesLRPError(f"unknown optimizer {self.optimizer!r}; choose "
                                f"{', '.join(OPTIMIZERS)}")
        if self.augment not in AUGMENTATIONS:
            raise BayesLRPError(f"unknown augment {self.augment!r}; choose "
                                f"{', '.join(AUGMENTATIONS)}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0 or not 0 < self.lr_gamma <= 1:
            raise BayesLRPError("momentum must be in [0, 1), weight_decay >= 0 and lr_gamma in "
                                f"(0, 1]; got {self.momentum}, {self.weight_decay}, "
                                f"{self.lr_gamma}")
        steps = self.lr_milestones
        if any(m < 1 for m in steps) or list(steps) != sorted(set(steps)):
            raise BayesLRPError(f"lr_milestones must be increasing epochs >= 1; got {list(steps)}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> "TrainOptions":
        """Options from a mapping of (some of) the fields; missing ones take the defaults."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise BayesLRPError(f"unknown training options {unknown}")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The options as JSON-able values (for an Ensemble's ``meta``)."""
        out = asdict(self)
        out["lr_milestones"] = list(self.lr_milestones)
        return out

    def optimizer_for(self, params: Iterable[torch.nn.Parameter], lr: float):
        """The torch optimiser over ``params`` at learning rate ``lr``."""
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=self.momentum,
                                   weight_decay=self.weight_decay)
        return torch.optim.Adam(params, lr=lr, weight_decay=self.weight_decay)

    def lr_at(self, epoch: int, lr: float) -> float:
        """The learning rate of ``epoch`` (0-based) under the milestone steps."""
        steps = sum(1 for m in self.lr_milestones if epoch >= m)
        return lr * self.lr_gamma ** steps

    def augmenter(self, seed: int):
        """A function ``xb -> augmented xb`` (or None at ``augment="none"``)."""
        if self.augment == "none":
            return None
        from ..mcmc.seeds import derive_seed

        generator = torch.Generator().manual_seed(derive_seed(seed, "augment"))
        return lambda xb: augment_batch(xb, generator)


def augment_batch(x: torch.Tensor, generator: torch.Generator,
                  padding: int = CROP_PADDING) -> torch.Tensor:
    """Random crops of the zero-padded images and random left-right flips, per image.

    Parameters
    ----------
    x : Tensor
        Images ``[B, C, H, W]``.
    generator : torch.Generator
        CPU generator of the offsets (``[B, 2]`` in ``0 … 2·padding``) and flips (``[B]``).

    Returns
    -------
    Tensor
        ``[B, C, H, W]``: image b is ``pad(x_b)[:, i:i+H, j:j+W]``, flipped when drawn.
    """
    b, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    rows = (offsets[:, 0, None] + torch.arange(h)).to(x.device)  # [B, H]
    cols = (offsets[:, 1, None] + torch.arange(w)).to(x.device)  # [B, W]
    cols = torch.where(flips.to(x.device)[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
