"""Fig. 3 (and 10–15): boxplots of ``Adv − Det`` and ``Bay − Det`` over rules × datasets.

Each box is annotated with the stars of a one-sided Mann-Whitney U test of "the deterministic
LRP robustness is stochastically lower than this model's" (SPEC §6); a bracket between the
adversarially trained and each Bayesian box carries the paper's own comparison (appendix H):
"the adversarially trained robustness is stochastically lower than the Bayesian one".
"""
from __future__ import annotations

import textwrap

import pandas as pd

from bayeslrp.errors import BayesLRPError
from bayeslrp.stats import mann_whitney, stars

from .distributions import single_value
from .frames import (BAYESIAN, RULE_TITLES, dataset_rank, k_label, ordered_rules,
                     paired_differences, select, series_order)
from .style import new_figure, series_colors, styled

__all__ = ["box_series", "rule_boxplots"]


def box_series(diffs: pd.DataFrame, n_samples: int | None = None) -> list[tuple[str, str, int]]:
    """The compared models of one boxplot panel: every non-baseline model, Bayesian ones at
    ``n_samples`` (default: their largest sample count)."""
    out = []
    for model, method, n in series_order(diffs):
        if method in BAYESIAN:
            counts = sorted(select(diffs, model=model)["n_samples"].unique())
            wanted = n_samples if n_samples is not None else counts[-1]
            if n != wanted:
                continue
        out.append((model, method, n))
    return out


def _short(model: str, method: str, n: int) -> str:
    return f"{model}\n({n} samples)" if method in BAYESIAN else model


@styled
def rule_boxplots(df: pd.DataFrame, attack: str | None = None, layer: int | None = None,
                  n_samples: int | None = None, k: float | None = None,
                  baselines: dict[str, str] | None = None):
    """Fig. 3: LRP-robustness differences to the run's baselines, rules × datasets.

    Parameters
    ----------
    df : pandas.DataFrame
        Results table.
    attack : str, optional
        Attack to draw; may be omitted when the table holds one.
    layer : int, optional
        Layer index; default the last learnable layer of each dataset/architecture row.
    n_samples : int, optional
        Posterior samples of the Bayesian models; default the largest available.
    k : float, optional
        Top-k percentage (default 20 when present).
    baselines : dict of str to str, optional
        ``{model: baseline}``; default the run's (:func:`~bayeslrp.plots.frames.run_baselines`).

    Returns
    -------
    matplotlib.figure.Figure
        A grid with one row per (dataset, architecture) and one column per rule (ε, γ, αβ);
        each panel holds one box per compared model with significance stars.
    """
    attack = single_value(df, "attack", attack, "attack")
    part = select(df, attack=attack)
    diffs = paired_differences(part, k, baselines)
    if diffs.empty:
        raise BayesLRPError(f"no robustness differences for attack {attack}: the run compares "
                            f"no model with a baseline (compare.baseline)")
    groups = sorted({(str(d), str(a)) for d, a in zip(diffs["dataset"], diffs["arch"])},
                    key=lambda g: (dataset_rank(g[0]), g[1]))
    rules = ordered_rules(diffs["rule"].unique())
    colors = series_colors(series_order(diffs))
    n_bayes = len({m for m, meth, _ in series_order(diffs) if meth in BAYESIAN})
    top = 1.22 + 0.12 * max(n_bayes, 1)
    fig = new_figure(2.5 * len(rules) + 0.6, 2.7 * len(groups) + 0.6)
    axes = fig.subplots(len(groups), len(rules), squeeze=False, sharey=True)
    for r, (dataset, arch) in enumerate(groups):
        group = select(diffs, dataset=dataset, arch=arch)
        row_layer = layer if layer is not None else int(
            select(part, dataset=dataset, arch=arch)["layer"].max())
        for c, rule in enumerate(rules):
            ax = axes[r, c]
            panel = select(group, rule=rule, layer=row_layer)
            _panel(ax, panel, box_series(panel, n_samples), colors, top)
            if r == 0:
                ax.set_title(RULE_TITLES.get(rule, rule))
            if c == 0:
                ax.set_ylabel(f"{dataset} · {arch} · layer {row_layer}\n"
                              f"LRP robustness − {group['baseline'].iloc[0]}")
    fig.suptitle(_title(fig, attack, diffs, k_label(part, diffs["k"].iloc[0])), fontsize=8.5)
    return fig


def _title(fig, attack: str, diffs: pd.DataFrame, label: str) -> str:
    """The title, wrapped to the figure's width (one long line is clipped on both sides)."""
    base = ", ".join(sorted(diffs["baseline"].unique()))
    title = (f"{attack}: LRP robustness differences to {base} ({label}). Stars above a box: "
             f"one-sided Mann-Whitney U, {base} lower than the model; on a bracket: "
             f"adversarially trained lower than Bayesian")
    return textwrap.fill(title, max(40, int(fig.get_figwidth() * 14)))


def _panel(ax, panel: pd.DataFrame, series: list[tuple[str, str, int]], colors,
           top: float) -> None:
    ax.axhline(0.0, color="black", linestyle="--", linewidth=0.8)
    ax.set_ylim(-1.08, top)
    ax.set_yticks([-1, -0.5, 0, 0.5, 1])
    if panel.empty or not series:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
        ax.set_xticks([])
        return
    data, robust, labels = [], [], []
    for model, method, n in series:
        rows = select(panel, model=model, n_samples=n)
        data.append(rows["diff"].dropna().to_numpy())
        robust.append((rows["baseline_robustness"].to_numpy(), rows["robustness"].to_numpy()))
        labels.append(_short(model, method, n))
    positions = list(range(1, len(series) + 1))
    boxes = ax.boxplot(data, positions=positions, widths=0.55, patch_artist=True,
                       showfliers=True, flierprops={"markersize": 2, "alpha": 0.4},
                       medianprops={"color": "black"})
    for patch, key in zip(boxes["boxes"], series):
        patch.set_facecolor(colors[key])
        patch.set_alpha(0.75)
    ax.set_xticks(positions, labels)
    for pos, (base, model_rob) in zip(positions, robust):
        result = mann_whitney(base, model_rob, alternative="less")
        ax.text(pos, 1.04, stars(result.pvalue), ha="center", va="bottom", fontsize=8)
    # The paper's comparison: adversarially trained lower than Bayesian.
    adv = [i for i, s in enumerate(series) if s[1] == "adv"][:1]
    bayes = [i for i, s in enumerate(series) if s[1] in BAYESIAN]
    for level, j in enumerate(bayes):
        if not adv:
            break
        i = adv[0]
        result = mann_whitney(robust[i][1], robust[j][1], alternative="less")
        y = 1.2 + 0.12 * level
        ax.plot([positions[i], positions[i], positions[j], positions[j]],
                [y - 0.03, y, y, y - 0.03], color="0.3", linewidth=0.8)
        ax.text((positions[i] + positions[j]) / 2, y, stars(result.pvalue), ha="center",
                va="bottom", fontsize=7.5, color="0.3")
