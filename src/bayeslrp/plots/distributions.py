"""Fig. 2 (and 7–9): distributions of per-image LRP-robustness differences, one panel per layer."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bayeslrp.errors import BayesLRPError

from .frames import RULE_TITLES, k_label, paired_differences, pick_rule, select, series_order
from .style import new_figure, series_colors, styled

__all__ = ["difference_distributions", "single_value"]

_BINS = np.linspace(-1.0, 1.0, 41)


def single_value(df: pd.DataFrame, column: str, value, what: str):
    """``value`` when given; else the only value of ``column`` (error when there are several)."""
    present = sorted(df[column].unique().tolist())
    if value is not None:
        if value not in present:
            raise BayesLRPError(f"{what} {value!r} is not in the results (present: {present})")
        return value
    if len(present) != 1:
        raise BayesLRPError(f"the results hold several values of {what} ({present}); pick one")
    return present[0]


@styled
def difference_distributions(df: pd.DataFrame, dataset: str | None = None,
                             arch: str | None = None, attack: str | None = None,
                             rule: str | None = None, k: float | None = None,
                             baselines: dict[str, str] | None = None):
    """Fig. 2: histograms of ``model − baseline`` LRP-robustness differences per layer.

    Parameters
    ----------
    df : pandas.DataFrame
        Results table.
    dataset, arch, attack : str, optional
        The slice to draw; each may be omitted when the table holds only one value.
    rule : str, optional
        LRP rule (default ε, else the first present).
    k : float, optional
        Top-k percentage (default 20 when present).
    baselines : dict of str to str, optional
        ``{model: baseline}``; default the run's (:func:`~bayeslrp.plots.frames.run_baselines`).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per layer (rows, first layer on top): a step histogram per compared model
        and sample count (share of images per bin of width 0.05), a vertical line at 0 and the
        median of each distribution in the legend and as a dotted line.
    """
    dataset = single_value(df, "dataset", dataset, "dataset")
    arch = single_value(select(df, dataset=dataset), "arch", arch, "architecture")
    part = select(df, dataset=dataset, arch=arch)
    attack = single_value(part, "attack", attack, "attack")
    rule = pick_rule(part, rule)
    diffs = select(paired_differences(part, k, baselines), attack=attack, rule=rule)
    if diffs.empty:
        raise BayesLRPError(f"no robustness differences for {dataset}/{arch}/{attack}/{rule}: "
                            f"the run compares no model with a baseline (compare.baseline)")
    layers = sorted(int(v) for v in part["layer"].unique())
    series = series_order(diffs)
    colors = series_colors(series)
    baseline = str(diffs["baseline"].iloc[0])
    n_images = int(diffs["point"].nunique())
    fig = new_figure(8.6, 1.75 * len(layers) + 0.7)
    axes = fig.subplots(len(layers), 1, squeeze=False, sharex=True)[:, 0]
    for ax, layer in zip(axes, layers):
        _layer_panel(ax, diffs[diffs["layer"] == layer], series, colors, baseline, n_images)
        ax.set_ylabel(f"layer {layer}\nshare of images")
    axes[-1].set_xlabel(f"LRP robustness difference (model − {baseline}); dotted lines: "
                        f"medians")
    fig.suptitle(f"{dataset} · {arch} · {attack} · {RULE_TITLES.get(rule, rule)} · "
                 f"{k_label(part, diffs['k'].iloc[0])} · {n_images} images")
    return fig


def _layer_panel(ax, at_layer: pd.DataFrame, series, colors, baseline: str,
                 n_images: int) -> None:
    """One layer's histograms: a step histogram and a dotted median line per series."""
    for model, method, n in series:
        rows = select(at_layer, model=model, n_samples=n)
        values = rows["diff"].to_numpy()
        values = values[~np.isnan(values)]
        if values.size == 0:
            continue
        weights = np.full(values.size, 1.0 / values.size)
        color = colors[(model, method, n)]
        median = float(np.median(values))
        count = "" if values.size == n_images else f", n={values.size}"
        ax.hist(values, bins=_BINS, weights=weights, histtype="stepfilled", alpha=0.12,
                color=color)
        ax.hist(values, bins=_BINS, weights=weights, histtype="step", linewidth=1.4,
                color=color, label=f"{rows['series'].iloc[0]} − {baseline}: "
                                   f"median {median:+.2f}{count}")
        ax.axvline(median, color=color, linestyle=":", linewidth=1.2)
    ax.axvline(0.0, color="black", linestyle="--", linewidth=0.9)
    ax.set_xlim(-1, 1)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
