"""Per-image metrics: top-k pixel sets, k-LRP robustness, softmax robustness, attack outcomes.

Every function takes a batch of images (first dimension ``B``) and is vectorised over it.
Heatmaps may be ``[B, H, W]``, ``[B, P]`` or any ``[B, ...]``: everything after the first
dimension is flattened into ``P`` pixels in row-major order, and "pixel index" means the
position in that flattened order.

Definitions follow SPEC §6 and paper 000, definition IV.1; ``docs/metrics.md`` explains
the choices (ties at zero, empty explanations) with worked examples.
"""
from __future__ import annotations

import math
from fractions import Fraction
from numbers import Real
from typing import NamedTuple

import torch
from torch import Tensor

from bayeslrp.errors import BayesLRPError

__all__ = [
    "MODES",
    "TIES",
    "RobustnessResult",
    "accuracy",
    "attack_success",
    "failed_attack",
    "lrp_robustness",
    "lrp_robustness_details",
    "nnz",
    "robustness_selections",
    "softmax_robustness",
    "topk_count",
    "topk_indices",
    "topk_mask",
]

MODES = ("abs", "signed")
TIES = ("nonzero", "index")


class RobustnessResult(NamedTuple):
    """k-LRP robustness of a batch and the facts needed to interpret it.

    Attributes
    ----------
    robustness : Tensor
        ``[B]`` values in [0, 1].
    nnz : Tensor
        ``[B]`` int64, number of non-zero pixels of the clean heatmap ``R(x)``.
    size : Tensor
        ``[B]`` int64, ``|A|``: how many pixels of ``R(x)`` were selected (``K`` with
        ``ties="index"``; ``min(K, nnz)`` with ``ties="nonzero"`` in ``abs`` mode).
    count : int
        ``K``, the nominal number of top pixels (``floor(k·P/100)``; ``2·floor(k·P/200)`` in
        ``signed`` mode).
    """

    robustness: Tensor
    nnz: Tensor
    size: Tensor
    count: int


# --------------------------------------------------------------------------- checks


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise BayesLRPError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _percent(k: object) -> Fraction:
    """``k`` as an exact fraction, so that ``floor(k·P/100)`` has no rounding surprises."""
    if isinstance(k, bool) or not isinstance(k, Real) or not math.isfinite(float(k)):
        raise BayesLRPError(f"k must be a number of percent in (0, 100]; got {k!r}")
    # str() gives the decimal the user wrote (0.3, not 0.299999...), so floor() is exact.
    if isinstance(k, Fraction):  # exact already (a pixel count as 100·K/P percent)
        frac = k
    else:
        frac = Fraction(k) if isinstance(k, int) else Fraction(str(float(k)))
    if not 0 < frac <= 100:
        raise BayesLRPError(f"k must be a number of percent in (0, 100]; got {k!r}")
    return frac


def topk_count(n_pixels: int, k: float = 20, mode: str = "abs") -> int:
    """Number of pixels in ``Top_k`` for an image of ``n_pixels`` pixels.

    Parameters
    ----------
    n_pixels : int
        ``P``, pixels per image.
    k : float
        Percentage in (0, 100].
    mode : {"abs", "signed"}
        ``abs``: ``floor(k·P/100)``. ``signed``: ``floor(k/2 · P/100)`` largest plus as many
        most negative pixels, so ``2·floor(k·P/200)`` in total.

    Returns
    -------
    int
        The nominal selection size ``K``.
    """
    _check_choice("mode", mode, MODES)
    frac = _percent(k)
    if mode == "abs":
        return math.floor(frac * n_pixels / 100)
    return 2 * math.floor(frac * n_pixels / 200)


def _flatten(R: Tensor, name: str = "R") -> Tensor:
    if not isinstance(R, Tensor):
        raise BayesLRPError(f"{name} must be a torch.Tensor; got {type(R).__name__}")
    if R.ndim < 2:
        raise BayesLRPError(f"{name} must have a batch dimension, shape [B, H, W] or [B, P]; "
                            f"got shape {tuple(R.shape)}")
    if not R.is_floating_point():
        R = R.to(torch.get_default_dtype())
    flat = R.reshape(R.shape[0], -1)
    if flat.numel() and not bool(torch.isfinite(flat).all()):
        raise BayesLRPError(f"{name} contains NaN or infinite values; check the explained model "
                            f"(an LRP denominator may have vanished)")
    return flat


def _require_pixels(K: int, n_pixels: int, k: float) -> int:
    if K == 0:
        raise BayesLRPError(
            f"k={k}% of {n_pixels} pixels selects no pixel; use a larger k")
    return K


# --------------------------------------------------------------------------- selection


def _rank_select(score: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """Select the ``count[b]`` highest-scoring pixels of each row.

    Ties are broken by pixel index (lower index first) through a stable descending sort.
    Returns the boolean mask ``[B, P]`` and the ranking ``[B, P]`` (pixel indices).
    """
    order = torch.sort(score, dim=1, descending=True, stable=True).indices
    ranks = torch.arange(score.shape[1], device=score.device)
    taken = ranks.unsqueeze(0) < count.unsqueeze(1)
    mask = torch.zeros_like(taken).scatter(1, order, taken)
    return mask, order


def _signed_select(flat: Tensor, c_pos: Tensor, c_neg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Signed selection: the ``c_neg`` most negative pixels, then the ``c_pos`` largest of the rest.

    Choosing the negative side first and excluding it from the positive side keeps the two
    sides disjoint even when ties (e.g. an all-zero heatmap) would let them pick the same pixel.
    """
    neg_mask, neg_order = _rank_select(-flat, c_neg)
    pos_score = flat.masked_fill(neg_mask, -math.inf)
    pos_mask, pos_order = _rank_select(pos_score, c_pos)
    return neg_mask | pos_mask, pos_order, neg_order


def _selection(flat: Tensor, k: float, mode: str, ties: str):
    """Top-k selection of each row of ``flat``.

    Returns ``(mask, counts, orders)``: ``counts`` is a tuple of per-image counts per side
    (one side for ``abs``; positive then negative side for ``signed``) and ``orders`` the
    matching rankings.
    """
    _check_choice("mode", mode, MODES)
    _check_choice("ties", ties, TIES)
    B, P = flat.shape
    K = _require_pixels(topk_count(P, k, mode), P, k)
    if mode == "abs":
        count = torch.full((B,), K, dtype=torch.long, device=flat.device)
        if ties == "nonzero":
            count = torch.minimum(count, nnz(flat))
        mask, order = _rank_select(flat.abs(), count)
        return mask, (count,), (order,)
    half = K // 2
    c_pos = torch.full((B,), half, dtype=torch.long, device=flat.device)
    c_neg = c_pos.clone()
    if ties == "nonzero":
        c_pos = torch.minimum(c_pos, (flat > 0).sum(1))
        c_neg = torch.minimum(c_neg, (flat < 0).sum(1))
    mask, pos_order, neg_order = _signed_select(flat, c_pos, c_neg)
    return mask, (c_pos, c_neg), (pos_order, neg_order)


def topk_mask(R: Tensor, k: float = 20, mode: str = "abs", ties: str = "nonzero") -> Tensor:
    """Boolean mask of ``Top_k(R)`` for every image.

    Parameters
    ----------
    R : Tensor
        Heatmaps ``[B, H, W]`` or ``[B, P]`` (any ``[B, ...]``), finite.
    k : float
        Percentage of pixels, in (0, 100]; ``K = floor(k·P/100)``.
    mode : {"abs", "signed"}
        ``abs`` (paper): the ``K`` pixels with the largest ``|R|``. ``signed`` (original code):
        the ``floor(k/2·P/100)`` largest values plus as many most negative values.
    ties : {"nonzero", "index"}
        ``nonzero`` (default, SPEC §6): never select a zero-relevance pixel; an image with
        fewer than ``K`` non-zero pixels gets only those (``abs``), and each ``signed`` side
        is limited to the strictly positive / strictly negative pixels. ``index``: the literal
        definition, ties (including the zero background) broken by lower pixel index.

    Returns
    -------
    Tensor
        Boolean tensor with the shape of ``R``.
    """
    flat = _flatten(R)
    mask, _, _ = _selection(flat, k, mode, ties)
    return mask.reshape(R.shape)


def topk_indices(R: Tensor, k: float = 20, mode: str = "abs", ties: str = "nonzero") -> Tensor:
    """Flattened pixel indices of ``Top_k(R)`` in rank order, padded with ``-1``.

    Parameters
    ----------
    R, k, mode, ties
        As in :func:`topk_mask`.

    Returns
    -------
    Tensor
        int64. ``abs``: ``[B, K]``, most relevant first. ``signed``: ``[B, 2h]`` with
        ``h = floor(k/2·P/100)``; columns ``0..h-1`` hold the largest values (largest first),
        columns ``h..2h-1`` the most negative (most negative first). Slots an image does not
        fill (``ties="nonzero"`` with too few non-zero pixels) hold ``-1``.
    """
    flat = _flatten(R)
    _, counts, orders = _selection(flat, k, mode, ties)
    K = topk_count(flat.shape[1], k, mode)
    width = K if mode == "abs" else K // 2
    slots = torch.arange(width, device=flat.device).unsqueeze(0)
    parts = [torch.where(slots < c.unsqueeze(1), o[:, :width], torch.full_like(o[:, :width], -1))
             for c, o in zip(counts, orders)]
    return torch.cat(parts, dim=1)


def nnz(R: Tensor) -> Tensor:
    """Number of non-zero pixels of each heatmap, int64 ``[B]``."""
    return (_flatten(R) != 0).sum(1)


# --------------------------------------------------------------------------- robustness


def _paired_selection(R: Tensor, R_adv: Tensor, k: float, mode: str, ties: str):
    """Flattened heatmaps, the selections ``A`` of ``R`` and ``B`` of ``R_adv`` and the
    per-side counts of ``A`` (see :func:`lrp_robustness_details`)."""
    flat = _flatten(R, "R")
    flat_adv = _flatten(R_adv, "R_adv")
    if flat.shape != flat_adv.shape:
        raise BayesLRPError(f"R and R_adv must have the same shape; got {tuple(R.shape)} and "
                            f"{tuple(R_adv.shape)}")
    mask_a, counts, _ = _selection(flat, k, mode, ties)
    if mode == "abs":
        mask_b, _ = _rank_select(flat_adv.abs(), counts[0])
    else:
        mask_b, _, _ = _signed_select(flat_adv, counts[0], counts[1])
    return flat, flat_adv, mask_a, mask_b, counts


def robustness_selections(R: Tensor, R_adv: Tensor, k: float = 20, mode: str = "abs",
                          ties: str = "nonzero") -> tuple[Tensor, Tensor]:
    """The two pixel sets k-LRP robustness compares: ``A`` of ``R(x)`` and ``B`` of ``R(x̃)``.

    ``|A ∩ B| / |A|`` is :func:`lrp_robustness` (for a non-empty ``A``); the top-k pixel
    figure draws these sets.

    Parameters
    ----------
    R, R_adv, k, mode, ties
        As in :func:`lrp_robustness_details`.

    Returns
    -------
    (Tensor, Tensor)
        Boolean masks ``A`` and ``B`` with the shape of ``R``.
    """
    _, _, mask_a, mask_b, _ = _paired_selection(R, R_adv, k, mode, ties)
    return mask_a.reshape(R.shape), mask_b.reshape(R.shape)


def lrp_robustness_details(R: Tensor, R_adv: Tensor, k: float = 20, mode: str = "abs",
                           ties: str = "nonzero") -> RobustnessResult:
    """k-LRP robustness with the per-image facts needed to report it.

    ``A`` is the top-k selection of the clean heatmap ``R(x)`` (see :func:`topk_mask`), ``B``
    the top ``|A|`` pixels of ``R(x̃)`` selected literally (ties by index; in ``signed`` mode
    as many largest / most negative pixels as ``A`` has on each side), and the robustness is
    ``|A ∩ B| / |A|``.

    An empty ``A`` happens only with ``ties="nonzero"`` when ``R(x)`` is identically zero.
    Then the robustness is ``1.0`` when ``R(x̃)`` is identically zero too (the explanation did
    not change) and ``0.0`` otherwise (relevance appeared where there was none), so the result
    never contains NaN; ``nnz == 0`` identifies these images.

    Parameters
    ----------
    R, R_adv : Tensor
        Clean and adversarial heatmaps of the same shape ``[B, ...]``.
    k, mode, ties
        As in :func:`topk_mask`.

    Returns
    -------
    RobustnessResult
        ``robustness [B]`` (dtype of ``R``), ``nnz [B]``, ``size [B]`` and ``count`` (``K``).
    """
    flat, flat_adv, mask_a, mask_b, counts = _paired_selection(R, R_adv, k, mode, ties)
    size = sum(counts)
    common = (mask_a & mask_b).sum(1)
    dtype = flat.dtype
    empty_score = (nnz(flat_adv) == 0).to(dtype)
    robustness = torch.where(size > 0, common.to(dtype) / size.clamp(min=1).to(dtype), empty_score)
    return RobustnessResult(robustness, nnz(flat), size, topk_count(flat.shape[1], k, mode))


def lrp_robustness(R: Tensor, R_adv: Tensor, k: float = 20, mode: str = "abs",
                   ties: str = "nonzero") -> Tensor:
    """k-LRP robustness ``|A ∩ B| / |A|`` per image, ``[B]`` in [0, 1].

    See :func:`lrp_robustness_details` for the definition, tie handling and the
    all-zero case.
    """
    return lrp_robustness_details(R, R_adv, k=k, mode=mode, ties=ties).robustness


# --------------------------------------------------------------------------- predictions


def softmax_robustness(p: Tensor, p_adv: Tensor) -> Tensor:
    """Softmax robustness ``1 − ‖p(x) − p(x̃)‖_∞`` per image.

    Parameters
    ----------
    p, p_adv : Tensor
        Predictive (mean softmax) probabilities ``[B, C]``, each in [0, 1].

    Returns
    -------
    Tensor
        ``[B]`` in [0, 1].
    """
    for name, t in (("p", p), ("p_adv", p_adv)):
        if not isinstance(t, Tensor) or t.ndim != 2:
            raise BayesLRPError(f"{name} must be a [B, C] tensor of probabilities")
        if t.numel() and (not bool(torch.isfinite(t).all()) or float(t.min()) < -1e-6
                          or float(t.max()) > 1 + 1e-6):
            raise BayesLRPError(f"{name} has values outside [0, 1]; pass softmax probabilities, "
                                f"not logits")
    if p.shape != p_adv.shape:
        raise BayesLRPError(f"p and p_adv must have the same shape; got {tuple(p.shape)} and "
                            f"{tuple(p_adv.shape)}")
    return 1 - (p - p_adv).abs().amax(dim=1)


def _labels(t: Tensor, name: str) -> Tensor:
    """Class labels from labels ``[B]`` or scores/probabilities ``[B, C]`` (argmax)."""
    if not isinstance(t, Tensor) or t.ndim not in (1, 2):
        raise BayesLRPError(f"{name} must be labels [B] or class scores [B, C]")
    return t.argmax(dim=1) if t.ndim == 2 else t


def _same_batch(*pairs: tuple[str, Tensor]) -> None:
    sizes = {name: t.shape[0] for name, t in pairs}
    if len(set(sizes.values())) > 1:
        raise BayesLRPError(f"batch sizes differ: {sizes}")


def attack_success(y: Tensor, pred_clean: Tensor, pred_adv: Tensor) -> Tensor:
    """Successful attack: originally correct and now wrong, bool ``[B]``.

    ``pred_clean`` and ``pred_adv`` may be labels ``[B]`` or class scores ``[B, C]``.
    """
    y, c, a = _labels(y, "y"), _labels(pred_clean, "pred_clean"), _labels(pred_adv, "pred_adv")
    _same_batch(("y", y), ("pred_clean", c), ("pred_adv", a))
    return (c == y) & (a != y)


def failed_attack(y: Tensor, pred_clean: Tensor, pred_adv: Tensor) -> Tensor:
    """Failed attack: originally correct and still correct, bool ``[B]``.

    Images that were misclassified before the attack are neither successes nor failures.
    """
    y, c, a = _labels(y, "y"), _labels(pred_clean, "pred_clean"), _labels(pred_adv, "pred_adv")
    _same_batch(("y", y), ("pred_clean", c), ("pred_adv", a))
    return (c == y) & (a == y)


def accuracy(pred: Tensor, y: Tensor) -> Tensor:
    """Fraction of correct predictions, a 0-dim float64 tensor (NaN for an empty batch).

    ``pred`` may be labels ``[B]`` or class scores ``[B, C]``.
    """
    pred, y = _labels(pred, "pred"), _labels(y, "y")
    _same_batch(("pred", pred), ("y", y))
    return (pred == y).to(torch.float64).mean()
