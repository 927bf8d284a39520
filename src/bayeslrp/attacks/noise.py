"""The random-sign noise floor: ``x̃ = clamp(x + ε·s)``, ``s`` uniform on {−1, +1} per pixel.

Not an attack on the model (it never looks at it): the perturbation every real attack of the
same ε must beat on every metric, since explanations and top-k overlaps also change under
plain noise (Kamath et al.).
"""
from __future__ import annotations

import torch

from ._common import check_images, check_positive, data_args

__all__ = ["sign_noise"]


def sign_noise(x, eps: float = 0.2, seed: int = 0, *,
               bounds: tuple[float, float] | None = None) -> torch.Tensor:
    """``clamp(x + eps·s, bounds)`` with independent fair signs ``s`` per pixel.

    Parameters
    ----------
    x : Tensor or Dataset
        Images ``[B, C, H, W]`` within ``bounds`` (a :class:`bayeslrp.data.Dataset` gives
        its own bounds).
    eps : float
        Size of the perturbation of every pixel before clamping.
    seed : int
        Seed of the signs (one ``torch.Generator`` on the CPU, drawn for the whole batch, so
        the same seed gives the same signs on any device).
    bounds : (float, float), optional
        Pixel value range (default [0, 1]).

    Returns
    -------
    Tensor
        Same shape and device as ``x``.
    """
    x, _, bounds = data_args(x, None, bounds)
    check_positive(eps=eps)
    check_images(x, bounds=bounds)
    generator = torch.Generator().manual_seed(int(seed))
    signs = torch.randint(0, 2, tuple(x.shape), generator=generator).to(x.dtype) * 2 - 1
    return (x.detach() + float(eps) * signs.to(x.device)).clamp(*bounds)
