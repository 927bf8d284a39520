"""Heatmap figures: Fig. 1 (layers of one deterministic net) and Fig. 6 (det vs Bayesian).

Both show only the top-k % most relevant pixels (k = 30 in the paper's figures, SPEC §6),
after scaling the heatmaps of one row jointly to [−1, 1] by their largest ``|R|``, on a
diverging colour map centred at 0 (red positive, blue negative relevance, white 0).
"""
from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from bayeslrp.errors import BayesLRPError
from bayeslrp.metrics import topk_mask

from .frames import RULE_TITLES, k_label, metric_k, select, series_label
from .rundir import HeatmapSet
from .style import HEATMAP_CMAP, new_figure, styled

__all__ = ["POINT_CHOICES", "det_vs_bayes_heatmaps", "layer_heatmaps", "normalised_topk",
           "showcase_point"]

FIGURE_K = 30


def normalised_topk(maps: Sequence[np.ndarray], k: float = FIGURE_K) -> list[np.ndarray]:
    """Scale heatmaps jointly to [−1, 1] and zero every pixel outside each one's top-k %.

    Parameters
    ----------
    maps : sequence of numpy.ndarray
        Heatmaps ``[H, W]`` of one figure row.
    k : float
        Percentage of pixels kept (largest ``|R|``; zero-relevance pixels are never "kept").

    Returns
    -------
    list of numpy.ndarray
        Heatmaps with values in [−1, 1]; all zero when every input is zero.
    """
    scale = max((float(np.abs(m).max()) for m in maps), default=0.0)
    out = []
    for m in maps:
        scaled = m / scale if scale > 0 else np.zeros_like(m, dtype=np.float64)
        mask = topk_mask(torch.from_numpy(scaled[None]), k=k, ties="nonzero")[0].numpy()
        out.append(np.where(mask, scaled, 0.0))
    return out


def _show_image(ax, image: np.ndarray) -> None:
    """Show a ``[C, H, W]`` image: grey for one channel (or the channel mean for two), RGB
    for three or more (the first three). Values in [0, 1] are shown as they are; an image of
    other pixel bounds (a user's dataset, e.g. [-1, 1]) is stretched from its own range."""
    lo, hi = float(image.min()), float(image.max())
    if lo < 0 or hi > 1:
        image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    if image.shape[0] in (1, 2):
        ax.imshow(image.mean(0), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(np.moveaxis(image[:3], 0, -1), 0, 1), interpolation="nearest")
    _bare(ax)


def _show_relevance(ax, relevance: np.ndarray):
    _bare(ax)
    return ax.imshow(relevance, cmap=HEATMAP_CMAP, vmin=-1, vmax=1, interpolation="nearest")


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _common_point(sets: Sequence[HeatmapSet]) -> int:
    common = set(sets[0].points.tolist())
    for s in sets[1:]:
        common &= set(s.points.tolist())
    if not common:
        raise BayesLRPError("the heatmap files share no saved point; rerun the experiment")
    return min(common)


@styled
def layer_heatmaps(maps: Sequence[HeatmapSet], point: int | None = None,
                   k: float = FIGURE_K):
    """Fig. 1: heatmaps of one deterministic network at each learnable layer for x and x̃.

    Parameters
    ----------
    maps : sequence of HeatmapSet
        One set per layer, all of the same model, attack and rule.
    point : int, optional
        Test index to show; default: the smallest index saved in every set.
    k : float
        Percentage of most relevant pixels shown (30 in the paper).

    Returns
    -------
    matplotlib.figure.Figure
        A header row with x and x̃, then one row per layer (R(x), R(x̃)), each row scaled
        jointly to [−1, 1]; one colour bar.
    """
    maps = sorted(maps, key=lambda s: s.key.layer)
    if not maps:
        raise BayesLRPError("layer_heatmaps needs at least one layer's heatmaps")
    ids = {(s.key.model, s.key.attack, s.key.rule, s.key.n_samples) for s in maps}
    if len(ids) > 1:
        raise BayesLRPError(f"layer_heatmaps needs heatmaps of one model, attack and rule; got "
                            f"{sorted(ids)}")
    point = _common_point(maps) if point is None else int(point)
    key = maps[0].key
    rows = len(maps) + 1
    fig = new_figure(4.1, 1.45 * rows + 0.45)
    axes = fig.subplots(rows, 2, squeeze=False)
    first = maps[0]
    i = first.index_of(point)
    _show_image(axes[0, 0], first.x[i])
    _show_image(axes[0, 1], first.x_adv[i])
    axes[0, 0].set_title("x")
    axes[0, 1].set_title(f"x̃ ({key.attack})")
    image = None
    for row, hm in enumerate(maps, start=1):
        j = hm.index_of(point)
        clean, adv = normalised_topk([hm.R_clean[j], hm.R_adv[j]], k)
        image = _show_relevance(axes[row, 0], clean)
        _show_relevance(axes[row, 1], adv)
        axes[row, 0].set_ylabel(f"layer {hm.key.layer}")
        if row == 1:
            axes[row, 0].set_title("R(x)")
            axes[row, 1].set_title("R(x̃)")
    fig.colorbar(image, ax=axes[1:, :].ravel().tolist(), shrink=0.8,
                 label="relevance (row-normalised)")
    fig.suptitle(f"{key.model}: {RULE_TITLES.get(key.rule, key.rule)}, top-{k:g}% pixels, "
                 f"test point {point}")
    return fig


def _outcome(df: pd.DataFrame, model: str, attack: str, rule: str, layer: int,
             n_samples: int, k: float | None) -> pd.DataFrame:
    rows = select(df, model=model, attack=attack, rule=rule, layer=layer, n_samples=n_samples,
                  k=k)
    rows = rows.drop_duplicates("point").set_index("point")
    return rows.assign(failed=(rows["pred_clean"] == rows["label"])
                       & (rows["pred_adv"] == rows["label"]))


#: Fig. 6 point choices (``figures.fig6_point``): the default and the original code's.
POINT_CHOICES = ("first_failed", "original")


def showcase_point(df: pd.DataFrame, det_maps: HeatmapSet, bay_maps: HeatmapSet,
                   k: float | None = None, choice: str = "first_failed") -> tuple[int, str]:
    """Choose the image of Fig. 6 (and of the top-k pixel figure) among the points saved for
    both models.

    ``choice="first_failed"`` (default): the first saved point (by test index) on which the
    attack failed (still correctly classified) for both models; else the first on which it
    failed for the deterministic model; else, when it failed nowhere, the point with the
    highest softmax robustness of the deterministic model.

    ``choice="original"`` (the original code): among the points where the attack failed on
    both models and the Bayesian LRP robustness is not 1, the one with the lowest
    deterministic LRP robustness (ties: the smallest test index); when there is none, the
    default choice, and the returned sentence says so.

    Returns
    -------
    (int, str)
        The test index and a sentence saying how it was chosen.
    """
    if choice not in POINT_CHOICES:
        raise BayesLRPError(f"figures.fig6_point must be one of {', '.join(POINT_CHOICES)}; "
                            f"got {choice!r}")
    dk, bk = det_maps.key, bay_maps.key
    kk = metric_k(df, k)
    det = _outcome(df, dk.model, dk.attack, dk.rule, dk.layer, dk.n_samples, kk)
    bay = _outcome(df, bk.model, bk.attack, bk.rule, bk.layer, bk.n_samples, kk)
    common = sorted(set(det_maps.points.tolist()) & set(bay_maps.points.tolist())
                    & set(det.index) & set(bay.index))
    if not common:
        raise BayesLRPError(f"no point has saved heatmaps and results for both {dk.model} and "
                            f"{bk.model}; rerun the experiment")
    both = [p for p in common if det.at[p, "failed"] and bay.at[p, "failed"]]
    prefix = ""
    if choice == "original":
        candidates = [p for p in both if bay.at[p, "lrp_robustness"] != 1.0]
        if candidates:
            best = min(candidates, key=lambda p: (det.at[p, "lrp_robustness"], p))
            return best, (f"the original's choice: the attack failed on both models, "
                          f"{bk.model}'s LRP robustness is not 1, and {dk.model}'s LRP "
                          f"robustness ({det.at[best, 'lrp_robustness']:.2f}) is the lowest "
                          f"of the {len(candidates)} such saved points")
        prefix = ("no saved point fits the original's choice (attack failed on both, "
                  f"{bk.model}'s robustness not 1), so the default: ")
    if both:
        return both[0], prefix + "the attack failed on both models (first such saved point)"
    det_only = [p for p in common if det.at[p, "failed"]]
    if det_only:
        return det_only[0], prefix + (
            f"the attack failed on {dk.model} (first such saved point; it succeeded on every "
            f"saved point of {bk.model} where it failed on {dk.model})")
    best = max(common, key=lambda p: (det.at[p, "softmax_robustness"], -p))
    return best, prefix + (f"the attack failed on no saved point of {dk.model}; showing the "
                           f"point with its highest softmax robustness instead")


def _row_title(df: pd.DataFrame, key, kk, point: int) -> str:
    """A Fig. 6 row's title: the attack's outcome and both robustness values of the point."""
    rows = select(df, model=key.model, attack=key.attack, rule=key.rule, layer=key.layer,
                  n_samples=key.n_samples, k=kk, point=point)
    method = str(rows["method"].iloc[0]) if len(rows) else ""
    name = series_label(key.model, method, key.n_samples)
    if rows.empty:
        return f"{name}: no results row for point {point}"
    r = rows.iloc[0]
    outcome = "failed" if r["pred_adv"] == r["label"] == r["pred_clean"] else (
        "succeeded" if r["success"] else "n/a (misclassified before it)")
    return (f"{name} — attack {outcome}, prediction {int(r['pred_clean'])} → "
            f"{int(r['pred_adv'])}\nLRP robustness {r['lrp_robustness']:.2f} "
            f"({k_label(df, kk)}) · softmax robustness {r['softmax_robustness']:.2f}")


@styled
def det_vs_bayes_heatmaps(df: pd.DataFrame, det_maps: HeatmapSet, bay_maps: HeatmapSet,
                          point: int | None = None, k: float = FIGURE_K,
                          choice: str = "first_failed"):
    """Fig. 6: deterministic vs Bayesian heatmaps of x and x̃ for a failed attack.

    Parameters
    ----------
    df : pandas.DataFrame
        Results table (for the robustness values and attack outcomes of the point).
    det_maps, bay_maps : HeatmapSet
        Saved heatmaps of the deterministic and the Bayesian model (same attack, rule, layer).
    point : int, optional
        Test index; default chosen by :func:`showcase_point` (the choice is stated in the
        figure's title).
    k : float
        Percentage of most relevant pixels shown.
    choice : {"first_failed", "original"}
        How :func:`showcase_point` picks the point when ``point`` is not given.

    Returns
    -------
    matplotlib.figure.Figure
        One row per model: x, x̃ (attacked against that model), R(x), R(x̃); each row scaled
        jointly to [−1, 1]. Row titles give the LRP robustness (at the results' k) and the
        softmax robustness of the point.
    """
    dk, bk = det_maps.key, bay_maps.key
    if (dk.attack, dk.rule, dk.layer) != (bk.attack, bk.rule, bk.layer):
        raise BayesLRPError(f"det_vs_bayes_heatmaps needs one attack, rule and layer; got {dk} "
                            f"and {bk}")
    kk = metric_k(df)
    if point is None:
        point, note = showcase_point(df, det_maps, bay_maps, kk, choice)
    else:
        note = "point chosen by the caller"
    fig = new_figure(6.3, 4.7)
    subfigs = fig.subfigures(2, 1)
    image = None
    for subfig, hm in zip(subfigs, (det_maps, bay_maps)):
        key = hm.key
        subfig.suptitle(_row_title(df, key, kk, point), fontsize=9)
        axes = subfig.subplots(1, 4)
        j = hm.index_of(point)
        _show_image(axes[0], hm.x[j])
        _show_image(axes[1], hm.x_adv[j])
        clean, adv = normalised_topk([hm.R_clean[j], hm.R_adv[j]], k)
        image = _show_relevance(axes[2], clean)
        _show_relevance(axes[3], adv)
        for ax, title in zip(axes, ("x", "x̃", "R(x)", "R(x̃)")):
            ax.set_title(title)
        subfig.colorbar(image, ax=axes[2:].tolist(), shrink=0.85)
    label = int(select(df, point=point)["label"].iloc[0]) if len(select(df, point=point)) else "?"
    fig.suptitle(f"{dk.attack}, {RULE_TITLES.get(dk.rule, dk.rule)}, layer {dk.layer}, test "
                 f"point {point} (label {label}), top-{k:g}% pixels\n"
                 f"{textwrap.fill(note, 95)}", fontsize=8.5)
    return fig
