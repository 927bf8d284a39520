"""Input checks, ε-ball projection and memory-bounded image chunking shared by the attacks."""
from __future__ import annotations

from typing import Iterator

import torch

from ..ensemble import Ensemble
from ..errors import BayesLRPError

DEFAULT_ATTACK_MEMORY = 1 << 30  # bytes of activations kept for one backward pass
_RANGE_TOL = 1e-6


DEFAULT_BOUNDS = (0.0, 1.0)


def check_bounds(bounds) -> tuple[float, float]:
    """``bounds`` as ``(lo, hi)`` floats with ``lo < hi``."""
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise BayesLRPError(f"bounds must be (low, high) pixel values; got {bounds!r}") from None
    if not lo < hi:
        raise BayesLRPError(f"bounds must have low < high; got ({lo}, {hi})")
    return lo, hi


def data_args(x, y, bounds):
    """``(x, y, bounds)`` of an attack call: ``x`` may be a :class:`bayeslrp.data.Dataset`,
    which gives the labels and bounds not passed explicitly; bounds default to [0, 1]."""
    from ..data.user import Dataset

    if isinstance(x, Dataset):
        y = x.y if y is None else y
        bounds = x.bounds if bounds is None else bounds
        x = x.x
    return x, y, check_bounds(DEFAULT_BOUNDS if bounds is None else bounds)


def check_images(x: torch.Tensor, name: str = "x", bounds=DEFAULT_BOUNDS) -> None:
    """Refuse anything but a float batch ``[B, C, H, W]`` with values within ``bounds``."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise BayesLRPError(f"{name} must be a float tensor [B, C, H, W]; got {shape}")
    if x.shape[0] == 0:
        raise BayesLRPError(f"{name} holds no images")
    lo, hi = float(x.min()), float(x.max())
    b_lo, b_hi = bounds
    if lo < b_lo - _RANGE_TOL or hi > b_hi + _RANGE_TOL:
        raise BayesLRPError(f"{name} must hold pixel values in [{b_lo:g}, {b_hi:g}] (got "
                            f"[{lo:.3g}, {hi:.3g}]); attacks work in the data's pixel space, "
                            "pass bounds= for other ranges (normalisation belongs in the model)")


def check_labels(labels: torch.Tensor, n_images: int, name: str = "y",
                 n_classes: int | None = None) -> None:
    """Refuse labels that are not one integer class per image."""
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point():
        raise BayesLRPError(f"{name} must be an integer tensor [B] of class indices")
    if labels.shape[0] != n_images:
        raise BayesLRPError(f"{n_images} images but {labels.shape[0]} entries in {name}")
    if n_classes is not None and labels.numel() and (
            int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise BayesLRPError(f"{name} holds classes outside 0..{n_classes - 1}")


def check_positive(**values: float) -> None:
    """Refuse non-positive step sizes, radii and counts."""
    for name, value in values.items():
        if value is None or not value > 0:
            raise BayesLRPError(f"{name} must be > 0; got {value}")


def n_classes_of(ens: Ensemble, x: torch.Tensor) -> int:
    """Number of outputs of the ensemble's network on images shaped like ``x``."""
    with torch.no_grad():
        return int(ens.logits(x[:1].to(ens.device), 1).shape[-1])


def project(x_adv: torch.Tensor, x0: torch.Tensor, eps: float | None,
            bounds: tuple[float, float] = DEFAULT_BOUNDS) -> torch.Tensor:
    """Project onto the L∞ ball of radius ``eps`` around ``x0`` (``None``: no ball), then clamp
    to the valid pixel range ``bounds`` (default [0, 1])."""
    if eps is not None:
        x_adv = torch.minimum(torch.maximum(x_adv, x0 - eps), x0 + eps)
    return x_adv.clamp(bounds[0], bounds[1])


def activation_numel(ens: Ensemble, x: torch.Tensor) -> int:
    """Number of activation values one image produces in one network (input included)."""
    total = x[0].numel()

    def hook(_module, _inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output[0].numel()

    handles = [m.register_forward_hook(hook) for m in ens.module.modules()
               if next(m.children(), None) is None]  # leaves only: no double counting
    try:
        with torch.no_grad():
            ens.module(torch.zeros((1, *x.shape[1:]), device=ens.device))
    finally:
        for handle in handles:
            handle.remove()
    return total


def image_chunks(ens: Ensemble, x: torch.Tensor, n_samples: int, batch_size: int | None,
                 factor: float = 3.0,
                 memory_budget: int = DEFAULT_ATTACK_MEMORY) -> Iterator[slice]:
    """Slices of the image axis.

    ``batch_size=None`` uses the fewest chunks whose graph (``factor`` × the activations of
    ``n_samples`` networks, float32) fits ``memory_budget`` bytes, of nearly equal sizes (no
    small, inefficient tail chunk).
    """
    n_images = x.shape[0]
    if batch_size is None:
        from ..devices import memory_budget as device_budget

        memory_budget = device_budget(ens.device, memory_budget)
        per_image = activation_numel(ens, x) * n_samples * 4 * factor
        largest = max(1, int(memory_budget // per_image))
        n_chunks = -(-n_images // largest)
        for i in range(n_chunks):
            yield slice(i * n_images // n_chunks, (i + 1) * n_images // n_chunks)
        return
    if int(batch_size) < 1:
        raise BayesLRPError(f"batch_size must be >= 1; got {batch_size}")
    batch_size = int(batch_size)
    for start in range(0, n_images, batch_size):
        yield slice(start, min(start + batch_size, n_images))
