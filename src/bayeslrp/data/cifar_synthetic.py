"""``cifar_synthetic``: seeded CIFAR-shaped images whose class a ResNet can learn.

No CIFAR-10 copy can be assumed offline, so tests and tiny grids use this stand-in: 3 × 32 × 32
colour images in [0, 1], 10 balanced classes. Class ``c`` is a sinusoidal grating with its
own orientation and spatial frequency, tinted with its own colour; every image has a random
phase, contrast and brightness and Gaussian pixel noise, so the class is carried by oriented
texture and colour together (neither a single pixel nor the mean colour alone gives it away
reliably).
"""
from __future__ import annotations

import math

import torch

from bayeslrp.data.builtin import derive_seed
from bayeslrp.errors import BayesLRPError

__all__ = ["CIFAR_SYNTHETIC_SIZES", "cifar_synthetic"]

#: Default number of images per split (balanced: a tenth per class).
CIFAR_SYNTHETIC_SIZES = {"train": 5000, "test": 1000}
SHAPE = (3, 32, 32)
N_CLASSES = 10


def _class_patterns(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Orientation (radians), frequency (cycles per image) and colour ``[10, 3]`` per class."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "cifar_synthetic", "classes"))
    angles = (torch.arange(N_CLASSES, dtype=torch.float64) * math.pi / 5) % math.pi
    freqs = torch.tensor([2.0, 3.0, 4.0, 5.0, 6.0] * 2, dtype=torch.float64)
    colours = torch.rand((N_CLASSES, 3), generator=gen, dtype=torch.float64) * 2 - 1
    colours = colours / colours.norm(dim=1, keepdim=True)
    return angles, freqs, colours


def cifar_synthetic(split: str, *, n: int | None = None, seed: int = 0,
                    noise: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded CIFAR-shaped images with class-dependent structure.

    A point of class ``c`` is ``clip(b + a · colour_c ⊗ sin(2π f_c ⟨u_θc, p⟩ / 32 + φ) +
    noise · N(0, I), 0, 1)`` at pixel positions ``p``, with brightness ``b ~ U[0.35, 0.65]``,
    contrast ``a ~ U[0.15, 0.3]`` and phase ``φ ~ U[0, 2π)`` drawn per image. Classes share a
    frequency in pairs (c and c + 5) and differ there by orientation and colour.

    Parameters
    ----------
    split : {"train", "test"}
        The split; its generator is seeded from ``(seed, split)``.
    n : int, optional
        Number of images (default 5000 train, 1000 test); labels ``arange(n) % 10`` in a
        random order.
    seed : int
        Same seed, same numbers; the class patterns depend on the seed alone.
    noise : float
        Standard deviation of the pixel noise.

    Returns
    -------
    x : torch.Tensor
        float32 ``[n, 3, 32, 32]`` in [0, 1].
    y : torch.Tensor
        int64 ``[n]``.
    """
    n = CIFAR_SYNTHETIC_SIZES[split] if n is None else int(n)
    if n < 1 or noise < 0:
        raise BayesLRPError(f"cifar_synthetic needs n >= 1 and noise >= 0; got n={n}, "
                            f"noise={noise}")
    angles, freqs, colours = _class_patterns(seed)
    gen = torch.Generator().manual_seed(derive_seed(seed, "cifar_synthetic", split))
    y = (torch.arange(n) % N_CLASSES)[torch.randperm(n, generator=gen)]
    phase = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi
    contrast = 0.15 + 0.15 * torch.rand(n, generator=gen, dtype=torch.float64)
    brightness = 0.35 + 0.3 * torch.rand(n, generator=gen, dtype=torch.float64)
    rows, cols = torch.meshgrid(torch.arange(32, dtype=torch.float64),
                                torch.arange(32, dtype=torch.float64), indexing="ij")
    along = (torch.cos(angles[y])[:, None, None] * cols
             + torch.sin(angles[y])[:, None, None] * rows)
    wave = torch.sin(2 * math.pi * freqs[y][:, None, None] * along / 32 + phase[:, None, None])
    images = (brightness[:, None, None, None]
              + contrast[:, None, None, None] * colours[y][:, :, None, None] * wave[:, None])
    images = images + noise * torch.randn(images.shape, generator=gen, dtype=torch.float64)
    return images.clamp_(0.0, 1.0).to(torch.float32), y.to(torch.int64)
