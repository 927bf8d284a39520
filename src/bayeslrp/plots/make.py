"""Draw every figure a run directory supports: ``make_all_figures(run_dir)``.

Which figures are drawn follows from what the run holds. A figure whose inputs are absent
(no Bayesian model, no saved heatmaps, no comparisons — the config has no
``compare.baseline`` …) is skipped with a logged reason, also recorded in
``figures/figures.json`` next to the caption of every drawn figure. Differences are always
against the run's baselines (``differences.parquet``, :func:`bayeslrp.analysis.baseline_map`).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from bayeslrp.errors import BayesLRPError
from bayeslrp.fileio import atomic_write_json

from .boxplots import rule_boxplots
from .distributions import difference_distributions
from .frames import (BAYESIAN, RULE_TITLES, det_bayes_pairs, k_label, mark_own_samples,
                     metric_k, ordered_rules, paired_differences, select)
from .manifold import manifold_figure
from .heatmaps import FIGURE_K, det_vs_bayes_heatmaps, layer_heatmaps, showcase_point
from .robustness import PAPER_K_PIXELS, distribution_ks, robustness_distributions
from .rundir import RunData, load_run
from .scatter import robustness_scatter
from .settings import FigureSettings, figure_settings
from .style import FORMATS, save_figure
from .topk import topk_pixels

__all__ = ["FigureRecord", "make_all_figures", "read_figure_index"]

log = logging.getLogger("bayeslrp.plots")

INDEX_NAME = "figures.json"


@dataclass
class FigureRecord:
    """One drawn figure: file stem (in ``figures/``), title, caption and files written."""

    stem: str
    title: str
    caption: str
    files: list[str] = field(default_factory=list)
    #: the one explanation method the figure shows (``None``: several or none)
    explainer: str | None = None


@dataclass
class _Plan:
    stem: str
    title: str
    caption: str
    draw: Callable
    explainer: str | None = None


def _safe(name: object) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-") or "x"


def _attacks(df: pd.DataFrame) -> list[str]:
    """Attacks in a stable order: FGSM first (the paper's showcase attack), then by name."""
    names = sorted(df["attack"].unique(), key=lambda a: (a != "fgsm", a))
    return [str(a) for a in names]


def _rule_name(rule: str) -> str:
    return RULE_TITLES.get(rule, f"{rule} rule")


def _explainers(df: pd.DataFrame) -> list[str]:
    """The explainers of ``df`` (the ``rule`` column) in display order: every figure that
    shows one explanation method is drawn once per explainer."""
    return [str(r) for r in ordered_rules(df["rule"].unique())]


# --------------------------------------------------------------------------- plans


def _plan_layer_heatmaps(run: RunData, skipped: list[dict]) -> list[_Plan]:
    df = run.results
    dets = sorted(df.loc[df["method"] == "det", "model"].unique())
    if not dets:
        skipped.append({"figure": "fig1", "reason": "the run has no deterministic model"})
        return []
    plans = []
    for model in dets:
        for rule in _explainers(select(df, model=model)):
            for attack in _attacks(select(df, model=model)):
                plan = _layer_heatmaps_plan(run, model, rule, attack, skipped)
                if plan is not None:
                    plans.append(plan)
    return plans


def _layer_heatmaps_plan(run: RunData, model: str, rule: str, attack: str,
                         skipped: list[dict]) -> _Plan | None:
    keys = run.heatmap_keys(model=model, attack=attack, rule=rule)
    if not keys:
        skipped.append({"figure": f"fig1 {model} {attack} {rule}",
                        "reason": f"no heatmaps saved for {model}/{attack}/{rule}"})
        return None
    n = min(k.n_samples for k in keys)
    keys = [k for k in keys if k.n_samples == n]

    def draw(keys=keys):
        return layer_heatmaps([run.heatmaps(k) for k in keys], k=FIGURE_K)

    return _Plan(
        f"fig1_layer_heatmaps__{_safe(model)}__{_safe(attack)}__{_safe(rule)}",
        f"Fig. 1 — layer heatmaps of {model} under {attack}, {_rule_name(rule)}",
        f"Heatmaps ({_rule_name(rule)}) of an image x and its {attack} adversarial "
        f"x̃ at every learnable layer ({', '.join(str(k.layer) for k in keys)}) of the "
        f"deterministic network {model}. Each row (one layer) is scaled jointly to "
        f"[−1, 1] and only its top-{FIGURE_K}% pixels by |R| are shown; red positive, "
        f"blue negative relevance.", draw, rule)


def _plan_det_vs_bayes(run: RunData, skipped: list[dict]) -> list[_Plan]:
    """Fig. 6 and the top-k pixel figure (000 Fig. 5 / 001 Fig. 2) of every compared pair
    of a single network and a Bayesian model: the same image, layer and heatmaps."""
    df = run.results
    if not df["method"].isin(BAYESIAN).any():
        skipped.append({"figure": "fig6/topk", "reason": "the run has no Bayesian model"})
        return []
    pairs = det_bayes_pairs(df, run.baselines)
    if not pairs:
        skipped.append({"figure": "fig6/topk", "reason": "no Bayesian model is compared with "
                        "a single network (compare.baseline)"})
        return []
    settings = figure_settings(run.config_text, str(run.path / "config.yaml"))
    plans = []
    for det, model in pairs:
        for rule in _explainers(select(df, model=model)):
            for attack in _attacks(select(df, model=model)):
                plans.extend(_det_vs_bayes_plans(run, det, model, rule, attack, settings,
                                                 skipped))
    return plans


def _det_vs_bayes_plans(run: RunData, det: str, model: str, rule: str, attack: str,
                        settings: FigureSettings, skipped: list[dict]) -> list[_Plan]:
    df = run.results
    bay_keys = run.heatmap_keys(model=model, attack=attack, rule=rule)
    det_keys = run.heatmap_keys(model=det, attack=attack, rule=rule)
    layers = sorted({k.layer for k in bay_keys} & {k.layer for k in det_keys})
    if not layers:
        skipped.append({"figure": f"fig6/topk {model} {attack} {rule}",
                        "reason": f"no heatmaps saved for both {det} and {model} "
                                  f"({attack}, {rule})"})
        return []
    layer = layers[-1]
    bkey = max((k for k in bay_keys if k.layer == layer), key=lambda k: k.n_samples)
    dkey = min((k for k in det_keys if k.layer == layer), key=lambda k: k.n_samples)
    choice = settings.fig6_point
    try:
        point, note = showcase_point(df, run.heatmaps(dkey), run.heatmaps(bkey),
                                     choice=choice)
    except BayesLRPError as exc:
        skipped.append({"figure": f"fig6/topk {model} {attack} {rule}", "reason": str(exc)})
        return []
    label = k_label(df, metric_k(df))

    def draw(dkey=dkey, bkey=bkey):
        # The figure repeats showcase_point's choice and states it in its title.
        return det_vs_bayes_heatmaps(df, run.heatmaps(dkey), run.heatmaps(bkey), k=FIGURE_K,
                                     choice=choice)

    def draw_topk(dkey=dkey, bkey=bkey):
        # The same choice as Fig. 6 (stated in the title).
        return topk_pixels(df, run.heatmaps(dkey), run.heatmaps(bkey), choice=choice,
                           mode=settings.topk_mode, ties=settings.ties)

    names = f"{_safe(model)}__{_safe(det)}__{_safe(attack)}__{_safe(rule)}"
    who = (f"the single network {det} (top row) and the Bayesian network {model} with "
           f"{bkey.n_samples} posterior samples (bottom row)")
    return [
        _Plan(f"fig6_det_vs_bayes__{names}",
              f"Fig. 6 — {det} vs {model} heatmaps under {attack}, {_rule_name(rule)}",
              f"Heatmaps ({_rule_name(rule)}, layer {layer}) of test point {point} and its "
              f"{attack} adversarial for {who}; top-{FIGURE_K}% pixels, each row scaled to "
              f"[−1, 1]. Point choice (figures.fig6_point: {choice}): {note}.", draw, rule),
        _Plan(f"topk_pixels__{names}",
              f"Top-k pixels — {det} vs {model} under {attack}, {_rule_name(rule)}",
              f"The pixel sets k-LRP robustness compares (paper 000 Fig. 5, 001 Fig. 2), "
              f"for test point {point} (the image of Fig. 6) at layer {layer}, for {who}: "
              f"the image x, its heatmap R(x) and A = its {label} pixels (red), the {attack} "
              f"adversarial x̃, R(x̃) and B = the top |A| pixels of R(x̃), and the overlap; "
              f"|A ∩ B| / |A| is the LRP robustness, recomputed from the saved heatmaps with "
              f"the run's selection (ties: {settings.ties}, mode: {settings.topk_mode}).",
              draw_topk, rule),
    ]


def _plan_distributions(run: RunData, skipped: list[dict]) -> list[_Plan]:
    """Paper 001 Figs. 4–7: absolute robustness per model and layer, two k side by side."""
    df = run.results
    plans = []
    pairs = df[["dataset", "arch"]].drop_duplicates().sort_values(["dataset", "arch"])
    for dataset, arch in pairs.itertuples(index=False):
        part = select(df, dataset=dataset, arch=arch)  # keeps df.attrs (k labels)
        ks = distribution_ks(part)
        labels = " and ".join(k_label(part, k) for k in ks)
        if labels == f"Top-{PAPER_K_PIXELS[0]} and Top-{PAPER_K_PIXELS[1]}":
            paper = f"{labels}, paper 001's k"
        elif len(ks) == 2:
            paper = (f"{labels}, the run's two smallest k (paper 001's Top-10 and Top-30 need "
                     f"metrics.k_pixels: [10, 30])")
        else:
            paper = f"{labels}, the run's only k"
        for rule in _explainers(part):
            for attack in _attacks(part):
                def draw(part=part, attack=attack, rule=rule, ks=ks):
                    return robustness_distributions(part, attack=attack, rule=rule, ks=ks)

                n_points = select(part, attack=attack, rule=rule)["point"].nunique()
                plans.append(_Plan(
                    f"robustness_distributions__{_safe(dataset)}__{_safe(arch)}__"
                    f"{_safe(attack)}__{_safe(rule)}",
                    f"LRP robustness distributions — {dataset} {arch}, {attack}, "
                    f"{_rule_name(rule)}",
                    f"Distributions of the k-LRP robustness ({_rule_name(rule)}) of "
                    f"{n_points} points attacked by {attack} on {dataset} ({arch}), as paper "
                    f"001 Figs. 4–7: one row per learnable layer, one column per top-k size "
                    f"— {paper}; one histogram per model and posterior sample count (bins "
                    f"of 0.05), medians in the legend.", draw, rule))
    if not plans:
        skipped.append({"figure": "robustness_distributions",
                        "reason": "the results table is empty"})
    return plans


def _plan_differences(run: RunData, skipped: list[dict]) -> list[_Plan]:
    df = run.results
    baselines = run.baselines
    diffs = paired_differences(df, baselines=baselines)
    if diffs.empty:
        skipped.append({"figure": "fig2/fig3", "reason": "no robustness differences: the run "
                        "compares no model with a baseline (no compare.baseline, or no "
                        "differences.parquet)"})
        return []
    label = k_label(df, diffs["k"].iloc[0])
    plans = []
    for (dataset, arch), group in diffs.groupby(["dataset", "arch"], sort=True):
        part = select(df, dataset=dataset, arch=arch)
        for rule in _explainers(group):
            for attack in _attacks(group):
                plans.append(_difference_plan(part, group, dataset, arch, attack, rule,
                                              label, baselines))
    for attack in _attacks(diffs):
        def draw(attack=attack):
            return rule_boxplots(df, attack=attack, baselines=baselines)

        plans.append(_Plan(
            f"fig3_rule_boxplots__{_safe(attack)}",
            f"Fig. 3 — robustness differences over explainers, {attack}",
            f"Explanation robustness differences to the baseline (compare.baseline) under "
            f"{attack} for every explainer (columns: LRP rules, other explanation methods) and "
            f"dataset/architecture (rows) at the last "
            f"learnable layer, {label} pixels; Bayesian models with their largest sample "
            f"count. Stars above a box: one-sided Mann-Whitney U test that the baseline's "
            f"robustness is stochastically lower than the model's; stars on a bracket: the "
            f"paper's test that the adversarially trained robustness is lower than the "
            f"Bayesian one (n.s. > 0.05, * ≤ 0.05, ** ≤ 0.01, *** ≤ 0.001, **** ≤ 0.0001).",
            draw))
    return plans


def _difference_plan(part: pd.DataFrame, group: pd.DataFrame, dataset: str, arch: str,
                     attack: str, rule: str, label: str, baselines: dict) -> _Plan:
    n_points = select(group, attack=attack, rule=rule)["point"].nunique()

    def draw():
        return difference_distributions(part, dataset, arch, attack, rule, baselines=baselines)

    return _Plan(
        f"fig2_differences__{_safe(dataset)}__{_safe(arch)}__{_safe(attack)}__{_safe(rule)}",
        f"Fig. 2 — robustness differences, {dataset} {arch}, {attack}, {_rule_name(rule)}",
        f"Per-image robustness differences to the baseline "
        f"{group['baseline'].iloc[0]} (compare.baseline) on {dataset} ({arch}), "
        f"{attack} attack, {_rule_name(rule)}, {label} pixels, {n_points} attacked points; one "
        f"panel per learnable layer, medians in the legend. Positive values: the model's "
        f"explanation changed less under attack than the baseline's.", draw, rule)


def _plan_scatter(run: RunData, skipped: list[dict]) -> list[_Plan]:
    df = run.results
    plans = []
    label = k_label(df, metric_k(df))
    for (dataset, arch), part in df.groupby(["dataset", "arch"], sort=True):
        for rule in _explainers(part):
            for attack in _attacks(part):
                plans.append(_scatter_plan(part, dataset, arch, attack, rule, label))
    if not plans:
        skipped.append({"figure": "fig4", "reason": "the results table is empty"})
    return plans


def _scatter_plan(part: pd.DataFrame, dataset: str, arch: str, attack: str, rule: str,
                  label: str) -> _Plan:
    def draw():
        return robustness_scatter(part, dataset, arch, attack, rule)

    return _Plan(
        f"fig4_scatter__{_safe(dataset)}__{_safe(arch)}__{_safe(attack)}__{_safe(rule)}",
        f"Fig. 4 — explanation vs softmax robustness, {dataset} {arch}, {attack}, "
        f"{_rule_name(rule)}",
        f"Per-image explanation robustness ({label}, {_rule_name(rule)}) against softmax "
        f"robustness 1 − ‖p(x) − p(x̃)‖∞ on {dataset} ({arch}) under {attack}, one "
        f"panel per learnable layer, one colour per model and sample count; ρ is "
        f"Spearman's rank correlation.", draw, rule)


def _plan_manifold(run: RunData, skipped: list[dict]) -> list[_Plan]:
    path = run.path / "manifold.parquet"
    if not path.is_file():
        return []  # the config has no analysis.manifold: nothing to say
    table = pd.read_parquet(path)
    plans = []
    for (dataset, arch), _part in table.groupby(["dataset", "arch"], sort=True):
        def draw(table=table, dataset=dataset, arch=arch):
            return manifold_figure(table, dataset, arch)

        plans.append(_Plan(
            f"manifold__{_safe(dataset)}__{_safe(arch)}",
            f"Off-manifold share vs posterior samples, {dataset} {arch}",
            "Normal share ‖(I − UUᵀ)g‖/‖g‖ of the mean over the first n posterior samples of "
            "each quantity g (input gradient of the explained logit, of the loss, each "
            "explainer's heatmap), U the tangent space of the data manifold at the attacked "
            "point (local PCA of its nearest training images); median over the points with "
            "the interquartile band. Dashed: single-network models; dotted: a random "
            "subspace of the same dimension. Paper 000 Theorem IV.1 predicts the Bayesian "
            "share to fall towards 0 as n grows (large-data limit).", draw))
    return plans


# --------------------------------------------------------------------------- driver


def read_figure_index(run_dir: str | Path) -> dict:
    """``figures/figures.json`` of a run: ``{"figures": [FigureRecord dicts], "skipped": […]}``.

    Returns ``{"figures": [], "skipped": []}`` when no index was written yet.
    """
    path = Path(run_dir) / "figures" / INDEX_NAME
    if not path.is_file():
        return {"figures": [], "skipped": []}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BayesLRPError(f"cannot read {path} ({exc}); rerun `bayeslrp plot`") from None
    return {"figures": list(index.get("figures", [])), "skipped": list(index.get("skipped", []))}


def make_all_figures(run_dir: str | Path, formats=FORMATS) -> list[Path]:
    """Draw every figure the run supports into ``RUN_DIR/figures/`` (PNG and PDF).

    Parameters
    ----------
    run_dir : str or Path
        A finished run directory (needs ``results.parquet``; heatmap figures need
        ``heatmaps/``).
    formats : iterable of str
        File formats to write.

    Returns
    -------
    list of Path
        The files written, figure by figure in the order PNG, PDF.

    Raises
    ------
    BayesLRPError
        When the run directory is missing, empty or has no readable results.
    """
    run = load_run(run_dir)
    run.results = mark_own_samples(run.results)
    out_dir = run.path / "figures"
    previous = read_figure_index(run.path)
    skipped: list[dict] = []
    plans: list[_Plan] = []
    if run.results.empty:
        skipped.append({"figure": "all", "reason": "the results table has no rows"})
    else:
        for planner in (_plan_layer_heatmaps, _plan_differences, _plan_scatter,
                        _plan_det_vs_bayes, _plan_distributions, _plan_manifold):
            plans.extend(planner(run, skipped))
    records: list[FigureRecord] = []
    written: list[Path] = []
    for plan in sorted(plans, key=lambda p: p.stem):
        try:
            fig = plan.draw()
        except BayesLRPError as exc:
            skipped.append({"figure": plan.stem, "reason": str(exc)})
            continue
        files = save_figure(fig, out_dir / plan.stem, formats)
        fig.clear()
        written.extend(files)
        records.append(FigureRecord(plan.stem, plan.title, plan.caption,
                                    [f.name for f in files], plan.explainer))
    for item in skipped:
        log.warning("figure %s skipped: %s", item["figure"], item["reason"])
    # Files this function drew last time but not now are stale: remove them.
    current = {f.name for f in written}
    for old in previous["figures"]:
        for name in old.get("files", []):
            stale = out_dir / Path(name).name
            if name not in current and stale.is_file():
                stale.unlink()
    atomic_write_json(out_dir / INDEX_NAME, {"figures": [asdict(r) for r in records],
                                             "skipped": skipped})
    return written
