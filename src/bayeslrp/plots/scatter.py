"""Fig. 4 (and 16): LRP robustness vs softmax robustness, one panel per layer."""
from __future__ import annotations

import pandas as pd

from bayeslrp.errors import BayesLRPError
from bayeslrp.stats import spearman

from .distributions import single_value
from .frames import RULE_TITLES, k_label, metric_k, pick_rule, select, series_label, series_order
from .style import new_figure, series_colors, styled

__all__ = ["robustness_scatter"]


@styled
def robustness_scatter(df: pd.DataFrame, dataset: str | None = None, arch: str | None = None,
                       attack: str | None = None, rule: str | None = None,
                       k: float | None = None, n_samples: list[int] | None = None):
    """Fig. 4: per-image LRP robustness against softmax robustness, one panel per layer.

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
    n_samples : list of int, optional
        Sample counts of the Bayesian models to show (default all).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per layer, one colour per model (and sample count), Spearman ρ between
        the two robustness values in the legend.
    """
    dataset = single_value(df, "dataset", dataset, "dataset")
    arch = single_value(select(df, dataset=dataset), "arch", arch, "architecture")
    part = select(df, dataset=dataset, arch=arch)
    attack = single_value(part, "attack", attack, "attack")
    rule = pick_rule(part, rule)
    kk = metric_k(part, k)
    label, part = k_label(part, kk), select(part, attack=attack, rule=rule, k=kk)
    if part.empty:
        raise BayesLRPError(f"no results for {dataset}/{arch}/{attack}/{rule}")
    if n_samples is not None:
        keep = (part["method"].isin(["det", "adv"])) | part["n_samples"].isin(list(n_samples))
        part = part[keep]
    layers, series = sorted(int(v) for v in part["layer"].unique()), series_order(part)
    colors = series_colors(series)
    fig = new_figure(3.0 * len(layers) + 0.4, 4.3)
    axes = fig.subplots(1, len(layers), squeeze=False, sharex=True, sharey=True)[0]
    for ax, layer in zip(axes, layers):
        at_layer = part[part["layer"] == layer]
        for model, method, n in series:
            rows = select(at_layer, model=model, n_samples=n)
            if rows.empty:
                continue
            rho = spearman(rows["lrp_robustness"], rows["softmax_robustness"]).rho
            ax.scatter(rows["softmax_robustness"], rows["lrp_robustness"], s=9, alpha=0.55,
                       color=colors[(model, method, n)], edgecolors="none",
                       label=f"{series_label(model, method, n)}: ρ = {rho:.2f}")
        ax.set(xlim=(-0.03, 1.03), ylim=(-0.03, 1.03))
        ax.set_title(f"layer {layer}")
        ax.set_xlabel("softmax robustness")
        legend = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False,
                           ncol=1, markerscale=1.6)
        for handle in legend.legend_handles:
            handle.set_alpha(1.0)
    axes[0].set_ylabel(f"LRP robustness ({label})")
    fig.suptitle(f"{dataset} · {arch} · {attack} · {RULE_TITLES.get(rule, rule)}")
    return fig
