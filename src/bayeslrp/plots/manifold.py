"""The manifold figure: normal share of the mean of the first n samples against n.

One panel per measured quantity (prediction gradient, loss gradient, each explainer's
heatmap); one line per model with several samples (median over the attacked points, band from
the 25th to the 75th percentile); models with one sample (det, adv) as horizontal dashed
references; the random-subspace control as a dotted grey line. Theorem IV.1 of paper 000
predicts the Bayesian lines fall with n, towards 0 in its large-data limit.
"""
from __future__ import annotations

import pandas as pd

from bayeslrp.errors import BayesLRPError

from .style import new_figure, styled

__all__ = ["main_setting", "manifold_figure", "share_quantiles"]

QUANTITY_TITLES = {"prediction": "∇ₓ logit (prediction)", "loss": "∇ₓ loss",
                   "perturbation": "perturbation x̃ − x"}


def main_setting(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of the main neighbourhood setting (the one with per-sample rows, else the most
    frequent ``k``/``dim``)."""
    samples = table[table["kind"] == "sample"]
    source = samples if len(samples) else table
    k, dim = source.groupby(["k", "dim"]).size().idxmax()
    return table[(table["k"] == k) & (table["dim"] == dim)]


def share_quantiles(table: pd.DataFrame) -> pd.DataFrame:
    """Median and quartiles of the share of the mean rows per model, quantity, basis and n."""
    means = table[table["kind"] == "mean"]
    grouped = means.groupby(["model", "method", "quantity", "basis", "n"])["share"]
    return grouped.quantile([0.25, 0.5, 0.75]).unstack().rename(
        columns={0.25: "q25", 0.5: "median", 0.75: "q75"}).reset_index()


def _title(quantity: str) -> str:
    if quantity.startswith("heatmap:"):
        return f"heatmap, {quantity.split(':', 1)[1]} rule"
    return QUANTITY_TITLES.get(quantity, quantity)


@styled
def manifold_figure(table: pd.DataFrame, dataset: str | None = None,
                    arch: str | None = None):
    """Normal share of the mean of the first n samples vs n, one panel per quantity.

    Parameters
    ----------
    table : pandas.DataFrame
        ``manifold.parquet`` (or a slice of it).
    dataset, arch : str, optional
        Restrict to one dataset / architecture.

    Returns
    -------
    matplotlib.figure.Figure
    """
    part = table[table["quantity"] != "perturbation"]
    if dataset is not None:
        part = part[part["dataset"] == dataset]
    if arch is not None:
        part = part[part["arch"] == arch]
    if part.empty:
        raise BayesLRPError("no manifold rows to draw")
    stats = share_quantiles(main_setting(part))
    quantities = sorted(stats["quantity"].unique(), key=lambda q: (q.startswith("heatmap"), q))
    fig = new_figure(3.2 * len(quantities) + 0.6, 3.8)
    axes = fig.subplots(1, len(quantities), squeeze=False, sharey=True)[0]
    multi = sorted(stats.loc[stats["n"] > 1, "model"].unique())
    n_max = int(stats["n"].max())
    for ax, quantity in zip(axes, quantities):
        q = stats[(stats["quantity"] == quantity) & (stats["basis"] == "pca")]
        for i, model in enumerate(multi):
            rows = q[q["model"] == model].sort_values("n")
            line, = ax.plot(rows["n"], rows["median"], marker="o", ms=3, label=model)
            ax.fill_between(rows["n"], rows["q25"], rows["q75"], alpha=0.2,
                            color=line.get_color())
        for model in sorted(set(q["model"]) - set(multi)):
            value = float(q.loc[q["model"] == model, "median"].iloc[0])
            ax.axhline(value, ls="--", lw=1, color="0.3")
            ax.annotate(model, (1, value), fontsize=7, va="bottom", color="0.3")
        control = stats[(stats["quantity"] == quantity) & (stats["basis"] == "random")]
        if len(control):
            ax.axhline(float(control["median"].median()), ls=":", lw=1, color="0.6",
                       label="random subspace")
        ax.set_xscale("log")
        ax.set_xlim(0.9, max(n_max, 2) * 1.1)
        ax.set_title(_title(quantity), fontsize=9)
        ax.set_xlabel("posterior samples averaged, n")
    axes[0].set_ylabel("normal share ‖P⊥g‖ / ‖g‖ (median, IQR)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5),
                   fontsize=8, frameon=False)
    return fig
