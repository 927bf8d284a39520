"""Balanced, seeded subsets of test points (the attacked points of SPEC §1)."""
from __future__ import annotations

import numpy as np
import torch

from bayeslrp.errors import BayesLRPError


def balanced_subset(y: torch.Tensor | np.ndarray, n: int = 500, seed: int = 0,
                    n_classes: int | None = None) -> torch.LongTensor:
    """Indices of ``n`` points, ``n / n_classes`` of each class, drawn without replacement.

    One ``torch.Generator`` seeded with ``seed`` draws a random permutation of all
    points; each class keeps its first ``n / n_classes`` points in that order. The result
    is sorted by index (the order of the test set). Because the draw is one permutation,
    the subset for a smaller ``n`` with the same seed is contained in the one for a larger
    ``n``.

    Parameters
    ----------
    y
        Integer labels ``[N]`` in ``0 .. n_classes - 1``.
    n
        Subset size; must be a multiple of ``n_classes``.
    seed
        Seed of the generator.
    n_classes
        Number of classes; default ``max(y) + 1``.

    Returns
    -------
    torch.LongTensor
        ``[n]`` sorted indices into ``y``.

    Raises
    ------
    BayesLRPError
        ``n`` is not a multiple of ``n_classes``, or a class has fewer than ``n / n_classes`` points.
    """
    labels = torch.as_tensor(y)
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.numel() == 0:
        raise BayesLRPError("balanced_subset needs a non-empty 1-d integer label tensor")
    labels = labels.to(device="cpu", dtype=torch.int64)  # the draw and indices live on the CPU
    if int(labels.min()) < 0:
        raise BayesLRPError("balanced_subset needs labels >= 0")
    k_classes = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    if int(labels.max()) >= k_classes:
        raise BayesLRPError(f"labels go up to {int(labels.max())} but n_classes={k_classes}")
    n = int(n)
    if n < 1 or n % k_classes:
        raise BayesLRPError(f"n={n} is not a positive multiple of the {k_classes} classes: choose e.g. "
                            f"n={max(k_classes, n - n % k_classes)}")
    per_class = n // k_classes
    counts = torch.bincount(labels, minlength=k_classes)
    short = (counts < per_class).nonzero().flatten().tolist()
    if short:
        c = short[0]
        raise BayesLRPError(f"class {c} has only {int(counts[c])} points but n={n} needs {per_class} per class: "
                            f"choose n <= {int(counts.min()) * k_classes}")
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(labels.numel(), generator=generator)
    shuffled = labels[order]
    # Stable sort groups the permuted points by class while keeping their random order.
    by_class = torch.sort(shuffled, stable=True).indices
    grouped_labels = shuffled[by_class]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(labels.numel()) - starts[grouped_labels]
    chosen = order[by_class[rank < per_class]]
    return torch.sort(chosen).values


def original_subset(y: torch.Tensor | np.ndarray, n: int = 500, seed: int = 0,
                    n_classes: int | None = None) -> torch.LongTensor:
    """Indices of the original code's test points: ``n / n_classes`` per class, drawn with
    replacement, ordered by class (class 0's draws first, each class in draw order).

    A point can be drawn more than once. Parameters and errors as :func:`balanced_subset`
    (a class only needs one point).
    """
    labels = torch.as_tensor(y)
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.numel() == 0:
        raise BayesLRPError("original_subset needs a non-empty 1-d integer label tensor")
    labels = labels.to(device="cpu", dtype=torch.int64)
    k_classes = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    if int(labels.min()) < 0 or int(labels.max()) >= k_classes:
        raise BayesLRPError(f"labels must be in 0..{k_classes - 1}")
    n = int(n)
    if n < 1 or n % k_classes:
        raise BayesLRPError(f"n={n} is not a positive multiple of the {k_classes} classes: choose e.g. "
                            f"n={max(k_classes, n - n % k_classes)}")
    generator = torch.Generator().manual_seed(int(seed))
    parts = []
    for c in range(k_classes):
        members = (labels == c).nonzero().flatten()
        if members.numel() == 0:
            raise BayesLRPError(f"class {c} has no points")
        parts.append(members[torch.randint(members.numel(), (n // k_classes,),
                                           generator=generator)])
    return torch.cat(parts)
