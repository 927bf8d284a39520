"""Paper 001 Figs. 4–7: distributions of absolute LRP robustness per model and layer, for two
top-k sizes side by side.

Paper 001 draws, for one dataset and one Bayesian training method, the k-LRP robustness of
500 attacked test points of the deterministic network and of the Bayesian one with 10, 50
and 100 posterior samples, one row per learnable layer and one column per k (k = 10 and
k = 30 pixels, 001's k being a pixel count). Here every model of the dataset and
architecture is drawn (adversarially trained ones too).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bayeslrp.errors import BayesLRPError

from .distributions import single_value
from .frames import Percent, RULE_TITLES, k_label, pick_rule, select, series_label, series_order
from .style import new_figure, series_colors, styled

__all__ = ["PAPER_K_PIXELS", "distribution_ks", "robustness_distributions"]

#: Paper 001's two top-k sizes of Figs. 4–7, in pixels (``metrics.k_pixels``).
PAPER_K_PIXELS = (10, 30)
_BINS = np.linspace(0.0, 1.0, 21)


def _pixel_counts(df: pd.DataFrame) -> dict[float, int]:
    """``k → K`` for the k of ``df`` that came from a pixel count (``metrics.k_pixels``)."""
    if "k_pixels" not in df.columns:
        return {}
    out = {}
    for k in df["k"].unique():
        label = k_label(df, float(k))
        if label.startswith("Top-"):
            out[float(k)] = int(label.split("-", 1)[1])
    return out


def distribution_ks(df: pd.DataFrame) -> list[Percent]:
    """The two top-k sizes of the figure: paper 001's Top-10 and Top-30 when the run has
    both (``metrics.k_pixels: [10, 30]``), else the two smallest k of the run (percentages
    and pixel counts alike, by the share of pixels), else the only one."""
    present = sorted(float(k) for k in df["k"].unique())
    pixels = _pixel_counts(df)
    paper = sorted((k for k, K in pixels.items() if K in PAPER_K_PIXELS), key=pixels.get)
    if len(paper) == len(PAPER_K_PIXELS):
        return [Percent(k) for k in paper]
    return [Percent(k) for k in present[:2]]


@styled
def robustness_distributions(df: pd.DataFrame, dataset: str | None = None,
                             arch: str | None = None, attack: str | None = None,
                             rule: str | None = None, ks=None):
    """Paper 001 Figs. 4–7: histograms of k-LRP robustness, layers × two top-k sizes.

    Parameters
    ----------
    df : pandas.DataFrame
        Results table.
    dataset, arch, attack : str, optional
        The slice to draw; each may be omitted when the table holds only one value.
    rule : str, optional
        Explainer (default ε, else the first present).
    ks : sequence of float, optional
        The top-k sizes (the results' ``k``), one column each; default
        :func:`distribution_ks`.

    Returns
    -------
    matplotlib.figure.Figure
        One row per learnable layer (first on top), one column per k: a step histogram per
        model and sample count (share of images per bin of width 0.05 on [0, 1]), the median
        of each in the legend.
    """
    dataset = single_value(df, "dataset", dataset, "dataset")
    arch = single_value(select(df, dataset=dataset), "arch", arch, "architecture")
    part = select(df, dataset=dataset, arch=arch)
    attack = single_value(part, "attack", attack, "attack")
    rule = pick_rule(part, rule)
    part = select(part, attack=attack, rule=rule)
    ks = distribution_ks(part) if ks is None else [Percent(k) for k in ks]
    missing = [k for k in ks if not (part["k"] == float(k)).any()]
    if part.empty or not ks or missing:
        raise BayesLRPError(f"no robustness rows for {dataset}/{arch}/{attack}/{rule}"
                            + (f" at k={missing}" if missing else ""))
    layers = sorted(int(v) for v in part["layer"].unique())
    series = series_order(part)
    colors = series_colors(series)
    fig = new_figure(5.6 * len(ks) + 0.6, 1.8 * len(layers) + 0.8)
    axes = fig.subplots(len(layers), len(ks), squeeze=False, sharex=True)
    for col, k in enumerate(ks):
        for row, layer in enumerate(layers):
            ax = axes[row, col]
            _panel(ax, select(part, layer=layer, k=float(k)), series, colors)
            if row == 0:
                ax.set_title(k_label(df, float(k)))
            if col == 0:
                ax.set_ylabel(f"layer {layer}\nshare of images")
        axes[-1, col].set_xlabel("LRP robustness")
    n_images = int(part["point"].nunique())
    fig.suptitle(f"{dataset} · {arch} · {attack} · {RULE_TITLES.get(rule, rule)} · "
                 f"{n_images} images")
    return fig


def _panel(ax, rows: pd.DataFrame, series, colors) -> None:
    for model, method, n in series:
        values = select(rows, model=model, method=method, n_samples=n)["lrp_robustness"]
        values = values.to_numpy(dtype=np.float64)
        values = values[~np.isnan(values)]
        if values.size == 0:
            continue
        weights = np.full(values.size, 1.0 / values.size)
        ax.hist(values, bins=_BINS, weights=weights, histtype="step", linewidth=1.3,
                color=colors[(model, method, n)],
                label=f"{series_label(model, method, n)}: median {np.median(values):.2f}")
    ax.set_xlim(0, 1)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=6.5)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
