"""Paper 000 Fig. 5 / paper 001 Fig. 2: the top-k pixels that k-LRP robustness compares.

For one image, a single network and a Bayesian model: the image and its heatmap, the top-k
pixel set ``A`` of ``R(x)``, the attacked image and its heatmap, the set ``B`` of ``R(x̃)``
and the overlap ``A ∩ B``, whose share of ``A`` is the k-LRP robustness (SPEC §6). The sets
are computed from the saved heatmaps with the run's own selection
(:func:`bayeslrp.metrics.robustness_selections`, the run's ``metrics.ties`` and
``metrics.topk_mode``).
"""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from bayeslrp.errors import BayesLRPError
from bayeslrp.metrics import robustness_selections

from .frames import RULE_TITLES, k_label, metric_k, select, series_label
from .heatmaps import _bare, _show_image, _show_relevance, normalised_topk, showcase_point
from .rundir import HeatmapSet
from .style import new_figure, styled

__all__ = ["topk_pixels", "topk_sets"]

#: Overlap panel: neither, only in A (clean), only in B (attacked), in both.
_OVERLAP_COLORS = ListedColormap(["#ffffff", "#4c72b0", "#dd8452", "#2ca02c"])
_SELECTED = (0.84, 0.15, 0.16, 0.85)


def topk_sets(hm: HeatmapSet, point: int, k: float, mode: str = "abs",
              ties: str = "nonzero") -> tuple[np.ndarray, np.ndarray, float]:
    """``A``, ``B`` (boolean ``[H, W]``) and ``|A ∩ B| / |A|`` of one saved point.

    An empty ``A`` (an all-zero clean heatmap) gives the metric's convention: 1 when ``R(x̃)``
    is all zero too, else 0.
    """
    j = hm.index_of(point)
    R = torch.from_numpy(np.ascontiguousarray(hm.R_clean[j][None]))
    R_adv = torch.from_numpy(np.ascontiguousarray(hm.R_adv[j][None]))
    a, b = (m[0].numpy() for m in robustness_selections(R, R_adv, k=k, mode=mode, ties=ties))
    size = int(a.sum())
    if size == 0:
        return a, b, float(not np.any(hm.R_adv[j]))
    return a, b, float((a & b).sum()) / size


def _show_selection(ax, image: np.ndarray, mask: np.ndarray) -> None:
    """The image in faint grey with the selected pixels in red."""
    grey = image.mean(0) if image.ndim == 3 else image
    lo, hi = float(grey.min()), float(grey.max())
    grey = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
    ax.imshow(0.35 + 0.4 * grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    overlay = np.zeros(mask.shape + (4,))
    overlay[mask] = _SELECTED
    ax.imshow(overlay, interpolation="nearest")
    _bare(ax)


@styled
def topk_pixels(df: pd.DataFrame, det_maps: HeatmapSet, bay_maps: HeatmapSet,
                point: int | None = None, k: float | None = None, mode: str = "abs",
                ties: str = "nonzero", choice: str = "first_failed"):
    """The top-k pixels of an image before and after the attack, single vs Bayesian network.

    Parameters
    ----------
    df : pandas.DataFrame
        Results table (the attack's outcome and the point choice).
    det_maps, bay_maps : HeatmapSet
        Saved heatmaps of the single network and of the Bayesian model (same attack, rule,
        layer).
    point : int, optional
        Test index; default the point of Fig. 6 (:func:`showcase_point` with ``choice``).
    k : float, optional
        Top-k size (the results' ``k``); default the metrics' k (:func:`metric_k`).
    mode, ties : str
        The run's top-k selection (``metrics.topk_mode``, ``metrics.ties``).
    choice : {"first_failed", "original"}
        Point choice when ``point`` is not given.

    Returns
    -------
    matplotlib.figure.Figure
        One row per model: x, R(x), Top-k of R(x) (set A), x̃, R(x̃), the set B of R(x̃) and
        the overlap A ∩ B; the row title gives ``|A ∩ B| / |A|``.
    """
    dk, bk = det_maps.key, bay_maps.key
    if (dk.attack, dk.rule, dk.layer) != (bk.attack, bk.rule, bk.layer):
        raise BayesLRPError(f"topk_pixels needs one attack, rule and layer; got {dk} and {bk}")
    kk = metric_k(df, k)
    if kk is None:
        raise BayesLRPError("topk_pixels needs a results table with rows")
    note = "point chosen by the caller"
    if point is None:
        point, note = showcase_point(df, det_maps, bay_maps, kk, choice)
    label = k_label(df, kk)
    fig = new_figure(10.4, 4.4)
    subfigs = fig.subfigures(2, 1)
    for subfig, hm in zip(subfigs, (det_maps, bay_maps)):
        key = hm.key
        j = hm.index_of(point)
        a, b, robustness = topk_sets(hm, point, float(kk), mode, ties)
        rows = select(df, model=key.model, n_samples=key.n_samples)
        method = str(rows["method"].iloc[0]) if len(rows) else ""
        subfig.suptitle(f"{series_label(key.model, method, key.n_samples)} — |A ∩ B| / |A| = "
                        f"{int((a & b).sum())} / {int(a.sum())} = {robustness:.2f} ({label})",
                        fontsize=9)
        axes = subfig.subplots(1, 7)
        clean, adv = normalised_topk([hm.R_clean[j], hm.R_adv[j]], 100)
        _show_image(axes[0], hm.x[j])
        _show_relevance(axes[1], clean)
        _show_selection(axes[2], hm.x[j], a)
        _show_image(axes[3], hm.x_adv[j])
        _show_relevance(axes[4], adv)
        _show_selection(axes[5], hm.x_adv[j], b)
        axes[6].imshow(a.astype(int) + 2 * b.astype(int), cmap=_OVERLAP_COLORS, vmin=0, vmax=3,
                       interpolation="nearest")
        _bare(axes[6])
        for spine in axes[6].spines.values():  # the white background needs an outline
            spine.set_visible(True)
            spine.set_color("0.6")
        for ax, title in zip(axes, ("x", "R(x)", f"A = {label} of R(x)", "x̃", "R(x̃)",
                                    "B of R(x̃)", "A ∩ B")):
            ax.set_title(title, fontsize=8)
    fig.legend(handles=[Patch(color=_OVERLAP_COLORS(1), label="only in A (clean)"),
                        Patch(color=_OVERLAP_COLORS(2), label="only in B (attacked)"),
                        Patch(color=_OVERLAP_COLORS(3), label="in both")],
               loc="outside lower center", ncols=3, frameon=False, fontsize=7.5)
    fig.suptitle(f"{dk.attack}, {RULE_TITLES.get(dk.rule, dk.rule)}, layer {dk.layer}, test "
                 f"point {point}; heatmaps scaled per row to [−1, 1]\n"
                 f"{textwrap.fill(note, 150)}", fontsize=8.5)
    return fig
