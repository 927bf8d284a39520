"""The run report: summary tables and one self-contained HTML file.

* :func:`summary_tables` — accuracies, attack success, median robustness and Mann-Whitney
  p-values of a run directory, as ``pandas.DataFrame`` objects (printed by the CLI at the end
  of a run);
* :func:`report_tables` — those plus Spearman ρ and the share of sparse heatmaps;
* :func:`write_report` — ``RUN_DIR/report.html``: every table, the figures embedded as base64
  PNG data URIs, the configuration and the manifest; no external resources.

The table functions themselves live in :mod:`bayeslrp.report.tables`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from bayeslrp.fileio import atomic_write_text, sha256_file
from bayeslrp.plots.frames import RULE_TITLES, k_label, metric_k, ordered_rules
from bayeslrp.plots.make import make_all_figures, read_figure_index
from bayeslrp.plots.rundir import RunData, load_run

from .drivers import difference_drivers_table, drivers_display
from .html import esc, figure_html, key_value_table, page, table_html
from .headline import headline_table
from .manifest_tables import runs_table, stage_timings_table
from .manifold import manifold_section
from .tables import (KNOWN_PIXELS, accuracy_table, attack_success_table, mann_whitney_display,
                     mann_whitney_table, median_robustness_table, nnz_display, nnz_table,
                     spearman_display, spearman_table)

__all__ = ["REPORT_NAME", "accuracy_table", "attack_success_table", "difference_drivers_table",
           "mann_whitney_table",
           "median_robustness_table", "nnz_table", "pixels_per_dataset", "render_report",
           "report_tables", "spearman_table",
           "summary_tables", "write_report"]

log = logging.getLogger("bayeslrp.report")

REPORT_NAME = "report.html"


def _as_run(run_dir: str | Path | RunData) -> RunData:
    return run_dir if isinstance(run_dir, RunData) else load_run(run_dir)


def pixels_per_dataset(run: RunData) -> dict[str, int]:
    """Pixels per image of every dataset in the run: from a saved heatmap of one of its
    models when there is one, else the built-in size of a known dataset."""
    model_dataset = dict(zip(run.results["model"], run.results["dataset"]))
    pixels: dict[str, int] = {}
    for key in run.heatmap_keys():
        dataset = model_dataset.get(key.model)
        if dataset is not None and dataset not in pixels:
            R = run.heatmaps(key).R_clean
            pixels[str(dataset)] = int(R.shape[1] * R.shape[2])
    for dataset in run.results["dataset"].unique():
        if dataset not in pixels and dataset in KNOWN_PIXELS:
            pixels[str(dataset)] = KNOWN_PIXELS[dataset]
    return pixels


def summary_tables(run_dir: str | Path | RunData) -> dict[str, pd.DataFrame]:
    """The tables printed at the end of a run.

    Parameters
    ----------
    run_dir : str, Path or RunData
        A finished run directory (or one already read with
        :func:`bayeslrp.plots.load_run`).

    Returns
    -------
    dict of str to pandas.DataFrame
        ``accuracy`` (:func:`accuracy_table`), ``attack_success``
        (:func:`attack_success_table`), ``median_robustness``
        (:func:`median_robustness_table`) and ``mann_whitney`` (:func:`mann_whitney_table`).

    Raises
    ------
    BayesLRPError
        When the run directory is missing, empty or has no readable results.
    """
    run = _as_run(run_dir)
    df = run.results
    return {
        "accuracy": accuracy_table(run.models, df),
        "attack_success": attack_success_table(df),
        "median_robustness": median_robustness_table(df),
        "mann_whitney": mann_whitney_table(run.tests, df, differences=run.differences),
    }


def report_tables(run_dir: str | Path | RunData) -> dict[str, pd.DataFrame]:
    """:func:`summary_tables` plus ``spearman`` (:func:`spearman_table`), ``nnz``
    (:func:`nnz_table`) and ``drivers`` (:func:`difference_drivers_table`)."""
    run = _as_run(run_dir)
    tables = summary_tables(run)
    tables["spearman"] = spearman_table(run.results)
    pixels = pixels_per_dataset(run)
    tables["nnz"] = nnz_table(run.results, pixels)
    tables["drivers"] = difference_drivers_table(run.results, pixels, metric_k(run.results),
                                                 baselines=run.baselines)
    return tables


# --------------------------------------------------------------------------- HTML sections


_SECTIONS = [
    ("headline", "The answer first"),
    ("overview", "Overview"),
    ("models", "Models and accuracy"),
    ("attacks", "Attack success"),
    ("figures", "Figures"),
    ("robustness", "Median robustness"),
    ("tests", "Mann-Whitney tests"),
    ("spearman", "Spearman correlation"),
    ("sparsity", "Sparse heatmaps"),
    ("drivers", "What drives the difference"),
    ("manifold", "Off the data manifold (Theorem IV.1)"),
    ("config", "Configuration"),
    ("manifest", "Versions and timings"),
]


def _overview(run: RunData) -> str:
    df = run.results
    k = metric_k(df)

    def values(column: str) -> str:
        items = ordered_rules(df[column].unique()) if column == "rule" else \
            sorted(df[column].unique().tolist())
        return ", ".join(str(v) for v in items) or "–"

    items = [("results rows", len(df)), ("datasets", values("dataset")),
             ("architectures", values("arch")), ("models", values("model")),
             ("attacks", values("attack")), ("explainers", values("rule")),
             ("layers", values("layer")), ("posterior samples", values("n_samples")),
             ("attacked points", int(df["point"].nunique()) if len(df) else 0),
             ("top-k for metrics", k_label(df, k)),
             ("baselines (compare.baseline)",
              ", ".join(f"{m} − {b}" for m, b in sorted(run.baselines.items())) or "none"),
             ("results.parquet sha256", sha256_file(run.path / "results.parquet"))]
    return key_value_table(items)


_FIGURE_GROUPS = {
    "fig1": "Fig. 1 — heatmaps at every layer of a deterministic network",
    "fig2": "Fig. 2 — distributions of per-image robustness differences",
    "fig3": "Fig. 3 — robustness differences over explainers, with tests",
    "fig4": "Fig. 4 — explanation robustness vs softmax robustness",
    "fig6": "Fig. 6 — deterministic vs Bayesian heatmaps",
    "topk": "The top-k pixels before and after the attack (paper 000 Fig. 5, 001 Fig. 2)",
    "robustness": "LRP robustness distributions per model and layer, two top-k sizes (paper "
                  "001 Figs. 4–7)",
    "manifold": "Off-manifold share of gradients and heatmaps vs posterior samples",
}


def _by_explainer(items: list[tuple[str | None, str]]) -> str:
    """A figure group's galleries, one per explainer (with its heading when there are several)."""
    explainers = {e for e, _ in items if e is not None}
    if len(explainers) < 2:
        return f"<div class=\"gallery\">{''.join(html for _, html in items)}</div>"
    order = ordered_rules(explainers)
    parts = []
    for explainer in [*order, None]:
        chosen = [html for e, html in items if e == explainer]
        if chosen:
            title = RULE_TITLES.get(explainer, explainer) if explainer else "other"
            parts.append(f"<h4>{esc(title)}</h4><div class=\"gallery\">{''.join(chosen)}</div>")
    return "".join(parts)


def _figures(run: RunData) -> str:
    index = read_figure_index(run.path)
    groups: dict[str, list[str]] = {}
    for i, record in enumerate(index["figures"]):
        group = str(record.get("stem", "")).split("_", 1)[0]
        png_name = next((f for f in record.get("files", []) if f.endswith(".png")), None)
        path = run.path / "figures" / str(png_name) if png_name else None
        if path is None or not path.is_file():
            html_part = (f'<p class="note">{esc(record.get("title", ""))}: PNG file missing; '
                         f"rerun <code>bayeslrp plot</code>.</p>")
        else:
            html_part = figure_html(path.read_bytes(), str(record.get("title", "")),
                                    str(record.get("caption", "")), f"fig-{i}")
        groups.setdefault(group, []).append((record.get("explainer"), html_part))
    parts = []
    for group, items in groups.items():
        heading = _FIGURE_GROUPS.get(group, group)
        parts.append(f"<h3>{esc(heading)}</h3>{_by_explainer(items)}")
    if not parts:
        parts.append('<p class="note">No figures were drawn.</p>')
    if index["skipped"]:
        items = "".join(f"<li><b>{esc(s.get('figure', ''))}</b>: {esc(s.get('reason', ''))}"
                        f"</li>" for s in index["skipped"])
        parts.append(f'<h3>Figures not drawn</h3><ul class="skipped">{items}</ul>')
    return "\n".join(parts)


def _manifest(manifest: dict[str, Any]) -> str:
    if not manifest:
        return '<p class="note">manifest.json not found.</p>'
    runs = runs_table(manifest)
    timings = stage_timings_table(manifest)
    n_artifacts = len(manifest.get("artifacts") or {})
    return (f"<h3>Runs</h3>{table_html(runs, 'No runs recorded.')}"
            f"<h3>Timings of the latest run, per stage</h3>"
            f"{table_html(timings, 'No stage timings recorded.')}"
            f'<p class="note">{n_artifacts} artifacts in the store; every task\'s label, key '
            f"and seconds are in manifest.json.</p>")


_NOTES = {
    "headline": "Median per-image difference of k-LRP robustness, model − baseline (the "
                "config's compare.baseline), at each layer, with the stars of the one-sided "
                "Mann-Whitney test that the baseline is lower (tests.parquet); Bayesian models "
                "at their largest sample count, and next to each its 95 % percentile bootstrap "
                "interval over images (2000 resamples, seed 0). Positive: the model's "
                "explanations survive the attack better. Then the test accuracy of the model and of its baseline and "
                "the attack's success rate on each.",
    "models": "Test accuracy and training diagnostics as recorded in models.json (HMC: "
              "acceptance rate, divergences, step size; VI: ELBO); accuracy on attacked "
              "points from the results, at the largest sample count. Test NLL and ECE (15 "
              "equal-width confidence bins) of the predictive mean over all samples; "
              "posterior: mean pairwise disagreement of the samples' predicted classes, "
              "weight distances between samples (relative to the mean weight norm) and to "
              "the reference (relative to its norm; init_model = the det MAP HMC started "
              "from, vi_mean = VI's means), share of samples repeating their predecessor "
              "(HMC rejections), predictive ESS of the true-class probability (MCMC "
              "chains) — docs/calibration.md.",
    "attacks": "Success = originally correct and now wrong (SPEC §6); success rate = "
               "successes / originally correct points. Failed attacks: still correct.",
    "robustness": "Median k-LRP robustness per layer and median softmax robustness "
                  "1 − ‖p(x) − p(x̃)‖∞ over the attacked points.",
    "tests": "The one-sided Mann-Whitney U tests of tests.parquet. “baseline < model”: the "
             "baseline's (compare.baseline) LRP robustness is stochastically lower than the "
             "model's (Bay−Det, Adv−Det). "
             "“adv < model”: the adversarially trained model's robustness is lower than the "
             "Bayesian model's (paper 000, appendix H). Each cell: median per-image difference "
             "of LRP robustness, its 95 % percentile bootstrap interval over images (2000 "
             "resamples, seed 0; for “adv < model” the interval of the median of the paired "
             "per-image differences model − adv), p-value and stars (n.s. > 0.05, "
             "* ≤ 0.05, ** ≤ 0.01, *** ≤ 0.001, **** ≤ 0.0001).",
    "spearman": "Spearman rank correlation ρ between LRP robustness and softmax robustness "
                "of the same images; each cell: ρ (two-sided p-value).",
    "drivers": "Median k-LRP robustness of every condition: the baseline (compare.baseline; "
               "usually the deterministic net, Det), "
               "the Bayesian explanation with n samples (Bayn), one posterior sample "
               "attacked with its own gradient (Own sample j), transfer attacks (“on "
               "x̃(B)”: explained on the points crafted against model B) and each attack "
               "and attack mode. Tests against the baseline on the same attack's points, "
               "one-sided (baseline lower): Wilcoxon signed-rank (paired by image; stars) "
               "and Mann-Whitney U (unpaired). Last column: share of clean heatmaps with "
               "fewer than K non-zero pixels.",
    "sparsity": "Share of clean heatmaps R(x) with fewer non-zero pixels than the top-k "
                "selection size K = floor(k·P/100) (for a pixel count Top-K: K), per layer "
                "(P pixels per image). Such images are scored on their non-zero pixels only "
                "(ties=\"nonzero\", SPEC §6).",
}


def render_report(run: RunData) -> str:
    """The report of ``run`` as an HTML string (figures read from ``RUN_DIR/figures``)."""
    tables = report_tables(run)
    title = f"bayeslrp report — {run.path.resolve().name}"
    manifold = manifold_section(run.path)
    sections = [(sid, name) for sid, name in _SECTIONS if sid != "manifold" or manifold]
    nav = "".join(f'<li><a href="#{sid}">{esc(name)}</a></li>' for sid, name in sections)
    config = (f"<pre>{esc(run.config_text)}</pre>" if run.config_text is not None
              else '<p class="note">config.yaml not found.</p>')
    content = {
        "headline": table_html(headline_table(run.tests, run.results, run.models,
                                              run.differences),
                               "No comparisons: the config has no compare.baseline."),
        "overview": _overview(run),
        "models": table_html(tables["accuracy"], "No models recorded."),
        "attacks": table_html(tables["attack_success"]),
        "figures": _figures(run),
        "robustness": table_html(tables["median_robustness"]),
        "tests": table_html(mann_whitney_display(tables["mann_whitney"]),
                            "No comparisons: the config has no compare.baseline."),
        "spearman": table_html(spearman_display(tables["spearman"])),
        "sparsity": table_html(nnz_display(tables["nnz"])),
        "drivers": table_html(drivers_display(tables["drivers"])),
        "manifold": manifold,
        "config": config,
        "manifest": _manifest(run.manifest),
    }
    body = [f"<header><h1>{esc(title)}</h1><p class=\"lead\">Robustness of LRP explanations "
            f"of deterministic and Bayesian networks under adversarial attack. Run directory: "
            f"<code>{esc(run.path)}</code></p><nav><ol>{nav}</ol></nav></header>"]
    for sid, name in sections:
        note = f'<p class="note">{esc(_NOTES[sid])}</p>' if sid in _NOTES else ""
        body.append(f'<section id="{sid}"><h2>{esc(name)}</h2>{note}{content[sid]}</section>')
    return page(title, "\n".join(body))


def write_report(run_dir: str | Path, figures: bool = True) -> Path:
    """Write ``RUN_DIR/report.html``, one self-contained HTML file.

    Parameters
    ----------
    run_dir : str or Path
        A finished run directory.
    figures : bool
        Redraw the figures first (:func:`bayeslrp.plots.make_all_figures`); with ``False``
        the figures already listed in ``RUN_DIR/figures/figures.json`` are embedded.

    Returns
    -------
    Path
        The report file.

    Raises
    ------
    BayesLRPError
        When the run directory is missing, empty or has no readable results.
    """
    run = load_run(run_dir)
    if figures:
        make_all_figures(run.path)
    path = atomic_write_text(run.path / REPORT_NAME, render_report(run))
    log.info("report written to %s", path)
    return path
