"""Tangent spaces of the data manifold and the normal share of a vector (SPEC §9).

The tangent space at a point x is estimated by local PCA: the K nearest training images of x
(Euclidean distance in pixel space), centred at their mean, and the top ``dim`` principal
directions of that neighbourhood. The **normal share** of a vector g at x is
``‖(I − U Uᵀ) g‖ / ‖g‖`` with U the orthonormal basis of the estimated tangent space.

Everything is vectorised over points; the nearest-neighbour search is one matrix product per
chunk of training images (``‖a‖² − 2 a·b + ‖b‖²``), so its cost is ``2·B·N·D`` FLOPs.

A basis of an estimated d-dimensional space is stored as ``[B, D, d_max]``: when ``d`` is
chosen per point by explained variance, points with fewer directions have zero columns, which
project to nothing, so :func:`normal_share` needs no ragged shapes.
"""
from __future__ import annotations

import math

import torch

from bayeslrp.errors import BayesLRPError

__all__ = ["nearest_neighbours", "tangent_spaces", "local_pca", "random_bases",
           "normal_share", "tangent_normal_norms", "largest_principal_angle"]

#: Training images compared per matrix product in the nearest-neighbour search (bounds memory
#: at ``B × chunk`` distances).
NEIGHBOUR_CHUNK = 8192


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def nearest_neighbours(x: torch.Tensor, x_train: torch.Tensor, k: int,
                       chunk: int = NEIGHBOUR_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest training images of every point (Euclidean, pixel space).

    Parameters
    ----------
    x : Tensor
        Points ``[B, ...]``.
    x_train : Tensor
        Training images ``[N, ...]`` of the same shape per image.
    k : int
        Neighbours per point, ``1 ≤ k ≤ N``.
    chunk : int
        Training images per matrix product.

    Returns
    -------
    (Tensor, Tensor)
        Squared distances ``[B, k]`` (ascending, float32) and training indices ``[B, k]``.
    """
    q, t = _flat(x).to(torch.float32), _flat(x_train).to(torch.float32)
    if q.shape[1] != t.shape[1]:
        raise BayesLRPError(f"points have {q.shape[1]} values each, training images "
                            f"{t.shape[1]}: they must have the same shape")
    if not 1 <= k <= t.shape[0]:
        raise BayesLRPError(f"k must be between 1 and the {t.shape[0]} training images; got {k}")
    # ‖q‖² is constant per point, so the ranking needs only ‖t‖² − 2 q·t (one addmm a chunk).
    # The first chunk gives each point its k best so far; later chunks only pass on the few
    # entries below the current k-th distance (a compare instead of a topk per chunk).
    t_norm = torch.linalg.vector_norm(t, dim=1).square()  # no [N, D] temporary
    best_d = best_i = None
    for start in range(0, t.shape[0], chunk):
        block = t[start:start + chunk]
        d2 = torch.addmm(t_norm[start:start + chunk].unsqueeze(0), q, block.T, alpha=-2.0)
        if best_d is None:
            best_d, best_i = d2.topk(min(k, block.shape[0]), dim=1, largest=False, sorted=True)
            continue
        rows, cols = (d2 < best_d[:, -1:]).nonzero(as_tuple=True)
        if best_d.shape[1] < k:  # a first chunk smaller than k: take everything
            rows, cols = torch.arange(d2.shape[0]).repeat_interleave(d2.shape[1]), \
                torch.arange(d2.shape[1]).repeat(d2.shape[0])
        best_d, best_i = _merge(best_d, best_i, d2[rows, cols], cols + start, rows, k)
    return best_d + torch.linalg.vector_norm(q, dim=1, keepdim=True).square(), best_i


def _merge(best_d, best_i, cand_d, cand_i, cand_rows, k):
    """The k smallest per row of each row's current best and its new candidates, sorted."""
    b, width = best_d.shape
    rows = torch.cat([torch.arange(b).repeat_interleave(width), cand_rows])
    values = torch.cat([best_d.reshape(-1), cand_d])
    indices = torch.cat([best_i.reshape(-1), cand_i])
    order = values.argsort(stable=True)
    order = order[rows[order].argsort(stable=True)]  # by row, ascending distance within
    rows, values, indices = rows[order], values[order], indices[order]
    counts = torch.bincount(rows, minlength=b)
    rank = torch.arange(rows.numel()) - (counts.cumsum(0) - counts)[rows]
    keep = rank < k
    n = int(min(k, int(counts.min())))
    return values[keep].view(b, -1)[:, :n], indices[keep].view(b, -1)[:, :n]


def local_pca(neighbours: torch.Tensor, dim: int | None = None,
              variance: float | None = None) -> torch.Tensor:
    """Orthonormal principal directions of each neighbourhood, ``[B, D, d]`` (float64).

    Parameters
    ----------
    neighbours : Tensor
        ``[B, K, D]``: the K neighbours of each of B points.
    dim : int, optional
        Directions kept (``1 ≤ dim < K``).
    variance : float, optional
        Instead of ``dim``: the fewest directions explaining this share of the neighbourhood's
        variance, per point (zero columns pad the others).
    """
    if (dim is None) == (variance is None):
        raise BayesLRPError("give exactly one of dim and variance")
    b, k, _ = neighbours.shape
    # float32 data stays float32 for the two large products (Gram, basis; on MNIST the bases
    # agree with a float64 SVD to < 1e-3 rad, within the noise of a 1 % eigenvalue gap); the
    # K×K eigenproblems are solved in float64
    work = neighbours if neighbours.dtype == torch.float64 else neighbours.to(torch.float32)
    # K ≪ D: PCA through the K×K Gram matrix. Centring is done on the Gram matrix
    # (H G H, H = I − 11ᵀ/K); the eigenvectors with non-zero eigenvalue are orthogonal to 1,
    # so the uncentred neighbours give the same principal directions: Xcᵀ v = Xᵀ v.
    gram = (work @ work.transpose(1, 2)).to(torch.float64)
    gram = gram - gram.mean(1, keepdim=True)
    gram = gram - gram.mean(2, keepdim=True)
    evals, evecs = torch.linalg.eigh(gram)  # ascending
    evals, evecs = evals.flip(-1).clamp_min(0.0), evecs.flip(-1)
    if dim is not None:
        if not 1 <= dim < k:
            raise BayesLRPError(f"dim must be between 1 and K − 1 = {k - 1}; got {dim}")
        keep = torch.zeros(b, k, dtype=torch.bool)
        keep[:, :dim] = True
        width = dim
    else:
        if not 0 < variance <= 1:
            raise BayesLRPError(f"variance must be in (0, 1]; got {variance}")
        share = evals.cumsum(-1) / evals.sum(-1, keepdim=True).clamp_min(1e-300)
        n_keep = (share < variance - 1e-12).sum(-1) + 1
        n_keep = n_keep.clamp(max=k - 1)
        keep = torch.arange(k).expand(b, k) < n_keep.unsqueeze(1)
        width = int(n_keep.max())
    # directions with (numerically) zero variance carry no information: drop them
    keep &= evals > evals[:, :1] * 1e-12
    scale = torch.where(keep, evals.clamp_min(1e-300).rsqrt(), torch.zeros_like(evals))
    coefficients = (evecs[:, :, :width] * scale[:, None, :width]).to(work.dtype)
    # (cᵀ X)ᵀ: the same product, three times faster than Xᵀ c in a CPU bmm
    return (coefficients.transpose(1, 2) @ work).transpose(1, 2).to(torch.float64)


def tangent_spaces(x: torch.Tensor, x_train: torch.Tensor, k: int = 50, dim: int | None = 10,
                   variance: float | None = None, chunk: int = NEIGHBOUR_CHUNK) -> torch.Tensor:
    """Estimated tangent spaces of the data manifold at ``x``, ``[B, D, d]`` (float64).

    Local PCA of the ``k`` nearest training images of each point, centred at their mean
    (SPEC §9). Give ``dim`` (the manifold's dimension) or, with ``dim=None``, ``variance``
    (the share of local variance the basis explains, chosen per point).

    Examples
    --------
    >>> bases = bl.analysis.tangent_spaces(x, x_train, k=50, dim=10)   # [B, 784, 10]
    >>> share = bl.analysis.normal_share(gradients, bases)             # [B]
    """
    if dim is not None and variance is not None:
        raise BayesLRPError("give dim or variance, not both")
    _, idx = nearest_neighbours(x, x_train, k, chunk)
    neighbours = _flat(x_train)[idx]  # [B, K, D]
    return local_pca(neighbours, dim=dim, variance=variance)


def random_bases(n: int, size: int, dim: int, seed: int = 0) -> torch.Tensor:
    """``n`` random orthonormal bases ``[n, size, dim]`` (uniform on the Grassmannian): the
    control subspace of the same dimension as an estimated tangent space."""
    gen = torch.Generator().manual_seed(int(seed))
    gauss = torch.randn(n, size, dim, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)


def tangent_normal_norms(g: torch.Tensor, bases: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(‖U Uᵀ g‖, ‖(I − U Uᵀ) g‖)`` per point.

    Parameters
    ----------
    g : Tensor
        Vectors ``[..., B, ...]``: any leading dimensions (e.g. posterior samples), then the
        point axis matching ``bases``, then the point's values (flattened to D).
    bases : Tensor
        Orthonormal bases ``[B, D, d]``.

    Returns
    -------
    (Tensor, Tensor)
        Tangent and normal norms, each ``[..., B]`` (float64).
    """
    b, d, _ = bases.shape
    lead = _leading_shape(g, b, d)
    flat = g.reshape(*lead, b, d).to(torch.float64)
    coords = torch.einsum("...bd,bdk->...bk", flat, bases)
    tangent = torch.einsum("...bk,bdk->...bd", coords, bases)
    return tangent.norm(dim=-1), (flat - tangent).norm(dim=-1)


def normal_share(g: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
    """Normal share ``‖(I − U Uᵀ) g‖ / ‖g‖`` per point, ``[..., B]`` (NaN where ``g = 0``).

    See :func:`tangent_normal_norms` for the shapes.
    """
    tangent, normal = tangent_normal_norms(g, bases)
    total = torch.sqrt(tangent ** 2 + normal ** 2)
    return torch.where(total > 0, normal / total.clamp_min(1e-300),
                       torch.full_like(total, math.nan))


def largest_principal_angle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Largest principal angle (radians) between the spans of orthonormal ``u`` and ``v``
    (``[B, D, d]`` each, same d), per point."""
    sv = torch.linalg.svdvals(u.transpose(1, 2).to(torch.float64) @ v.to(torch.float64))
    return torch.arccos(sv.min(-1).values.clamp(-1.0, 1.0))


def _leading_shape(g: torch.Tensor, b: int, d: int) -> tuple[int, ...]:
    """Leading dimensions of ``g`` before its point axis of length ``b``."""
    for split in range(g.dim()):
        if g.shape[split] == b and math.prod(g.shape[split + 1:]) == d:
            return tuple(g.shape[:split])
    raise BayesLRPError(f"vectors of shape {list(g.shape)} do not match bases of {b} points "
                        f"in {d} dimensions")
