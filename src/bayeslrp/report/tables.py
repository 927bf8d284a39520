"""Summary tables of a run: accuracies, attack success, robustness, tests, heatmap sparsity.

Every function takes plain inputs (the results table, ``models.json`` entries) and returns a
``pandas.DataFrame`` with readable column names, sorted for display, so that the CLI can print
them and the HTML report can render them.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from bayeslrp.metrics import topk_count
from bayeslrp.plots.frames import BAYESIAN, k_label, metric_k, ordered_rules, series_label
from bayeslrp.stats import spearman

__all__ = ["KNOWN_PIXELS", "accuracy_table", "attack_success_table", "comparison_label",
           "k_labels", "layer_pivot", "mann_whitney_display", "mann_whitney_table",
           "median_robustness_table", "method_kind", "nnz_display", "nnz_table",
           "selection_size", "spearman_display", "spearman_table"]

#: Pixels per image of the built-in datasets, used when no saved heatmap tells the size.
KNOWN_PIXELS = {"mnist": 784, "fashion_mnist": 784, "cifar10": 1024, "digits": 64}
_METHOD_ORDER = {"det": 0, "adv": 1, "vi": 2, "hmc": 3}


def k_labels(results: pd.DataFrame) -> dict[float, str]:
    """Display label of every top-k of a results table: ``top-20%``, ``top-12.5%`` or
    ``Top-100`` for a pixel count (:func:`bayeslrp.plots.frames.k_label`)."""
    return {float(k): k_label(results, k) for k in results["k"].unique()}


def selection_size(group: pd.DataFrame, k: float, n_pixels: int | None) -> int | None:
    """``K``, the pixels the top-k selection of these rows holds: their ``k_pixels`` (the
    count the metric used) when the table has it, else ``floor(k·P/100)``; ``None`` when
    neither is known."""
    if "k_pixels" in group.columns and group["k_pixels"].nunique() == 1:
        return int(group["k_pixels"].iloc[0])
    return topk_count(int(n_pixels), float(k)) if n_pixels else None


def method_kind(method: str, own: bool = False) -> str:
    """Short kind of a model in comparison labels: ``Det``, ``Adv``, ``Bay`` (any Bayesian method,
    ``Own`` (a posterior sample attacked with its own gradient), else the method name."""
    if own:
        return "Own"
    if method in BAYESIAN:
        return "Bay"
    return {"det": "Det", "adv": "Adv"}.get(method, str(method).capitalize())


def comparison_label(model: str, baseline: str, methods: Mapping[str, str],
                     own: set | frozenset = frozenset()) -> str:
    """``"Bay−Det"``, ``"Adv−Det"``, ``"Det−Bay"`` …: kinds of a model and its baseline."""
    return (f"{method_kind(methods.get(model, ''), model in own)}−"
            f"{method_kind(methods.get(baseline, ''), baseline in own)}")


def _own_models(results: pd.DataFrame) -> set:
    if "own_sample" not in results.columns:
        return set()
    return set(results.loc[results["own_sample"] >= 0, "model"])


def _rule_rank(rules: pd.Series) -> pd.Series:
    order = {r: i for i, r in enumerate(ordered_rules(rules.unique()))}
    return rules.map(order)


def _sort(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Sort for display: methods det, adv, vi, hmc; rules ε, γ, αβ; other keys natural."""
    if df.empty:
        return df.reset_index(drop=True)
    keys = {}
    for column in by:
        if column == "method":
            keys[column] = df[column].map(lambda m: _METHOD_ORDER.get(m, 9))
        elif column == "rule":
            keys[column] = _rule_rank(df[column])
        else:
            keys[column] = df[column]
    order = pd.DataFrame(keys).sort_values(by, kind="stable").index
    return df.loc[order].reset_index(drop=True)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = ", ".join(str(v) for v in value)
    else:
        out[prefix] = value


def _number(value: Any) -> float:
    """A models.json number, NaN where it is missing (null)."""
    return math.nan if value is None else float(value)


def accuracy_table(models: list[dict[str, Any]], results: pd.DataFrame) -> pd.DataFrame:
    """One row per model: test accuracy and training diagnostics from ``models.json``, and the
    clean accuracy on the attacked points from the results (at the model's largest sample
    count).

    Models that appear only in the results get NaN for the ``models.json`` fields.
    """
    rows: dict[str, dict[str, Any]] = {}
    for entry in models:
        name = str(entry.get("name", ""))
        row = {"model": name, "method": entry.get("method", ""), "arch": entry.get("arch", ""),
               "dataset": entry.get("dataset", ""),
               "test accuracy": entry.get("test_accuracy", math.nan),
               "posterior samples": entry.get("n_samples", math.nan)}
        calib = entry.get("calibration") or {}
        row["test NLL"] = _number(calib.get("nll"))
        row["test ECE (15 bins)"] = _number(calib.get("ece"))
        diagnostics: dict[str, Any] = {}
        _flatten("", entry.get("diagnostics") or {}, diagnostics)
        row.update({f"diag: {key}": value for key, value in diagnostics.items()})
        posterior: dict[str, Any] = {}
        _flatten("", entry.get("posterior") or {}, posterior)
        row.update({f"posterior: {key}": value for key, value in posterior.items()
                    if key != "n_samples"})
        rows[name] = row
    if not results.empty:
        firsts = results.drop_duplicates(["model", "n_samples", "point"])
        top = firsts.groupby("model")["n_samples"].transform("max")
        firsts = firsts[firsts["n_samples"] == top]
        for model, group in firsts.groupby("model", sort=True):
            row = rows.setdefault(str(model), {
                "model": str(model), "method": group["method"].iloc[0],
                "arch": group["arch"].iloc[0], "dataset": group["dataset"].iloc[0],
                "test accuracy": math.nan, "posterior samples": math.nan})
            row["accuracy on attacked points"] = float(
                (group["pred_clean"] == group["label"]).mean())
            row["attacked points"] = int(group["point"].nunique())
    table = pd.DataFrame(list(rows.values()))
    if table.empty:
        return pd.DataFrame(columns=["model", "method", "arch", "dataset", "test accuracy"])
    head = ["model", "method", "arch", "dataset", "test accuracy", "test NLL",
            "test ECE (15 bins)", "posterior samples", "accuracy on attacked points",
            "attacked points"]
    head = [c for c in head if c in table.columns]
    table = table[head + sorted(c for c in table.columns if c not in head)]
    return _sort(table, ["dataset", "arch", "method", "model"])


def attack_success_table(df: pd.DataFrame) -> pd.DataFrame:
    """Attack outcome per model × attack × sample count.

    ``success rate`` = successful attacks / originally correct points (SPEC §6: success =
    originally correct and now wrong); accuracies are on the attacked points.
    """
    keys = ["dataset", "arch", "model", "method", "attack", "attack_mode", "n_samples"]
    columns = keys + ["points", "clean accuracy", "adversarial accuracy", "success rate",
                      "failed attacks"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    firsts = df.drop_duplicates(keys + ["point"])
    correct = firsts["pred_clean"] == firsts["label"]
    frame = firsts.assign(_correct=correct, _adv_ok=firsts["pred_adv"] == firsts["label"],
                          _failed=correct & (firsts["pred_adv"] == firsts["label"]))
    out = frame.groupby(keys, sort=False).agg(
        points=("point", "nunique"), _correct=("_correct", "sum"), _adv=("_adv_ok", "mean"),
        _clean=("_correct", "mean"), _success=("success", "sum"), _failed=("_failed", "sum"),
    ).reset_index()
    out["clean accuracy"] = out["_clean"]
    out["adversarial accuracy"] = out["_adv"]
    out["success rate"] = np.where(out["_correct"] > 0,
                                   out["_success"] / out["_correct"].clip(lower=1), np.nan)
    out["failed attacks"] = out["_failed"].astype(int)
    return _sort(out[columns], ["dataset", "arch", "attack", "method", "model", "n_samples"])


def median_robustness_table(df: pd.DataFrame, k: float | None = None) -> pd.DataFrame:
    """Median LRP robustness per model × rule × sample count (rows) and layer (columns), with
    the median softmax robustness of the same images; ``k`` holds the top-k's label."""
    kk = metric_k(df, k)
    keys = ["dataset", "arch", "attack", "rule", "model", "method", "n_samples"]
    if kk is None:
        return pd.DataFrame(columns=keys)
    part = df[df["k"] == kk]
    wide = part.pivot_table(index=keys, columns="layer", values="lrp_robustness",
                            aggfunc="median")
    wide.columns = [f"layer {int(c)}" for c in wide.columns]
    soft = part.drop_duplicates(keys + ["point"]).groupby(keys)["softmax_robustness"].median()
    wide["softmax robustness"] = soft
    wide = wide.reset_index()
    wide.insert(len(keys), "k", k_label(df, kk))
    return _sort(wide, ["dataset", "arch", "attack", "rule", "method", "model", "n_samples"])


def mann_whitney_table(tests: pd.DataFrame | None, results: pd.DataFrame,
                       k: float | None = None,
                       differences: pd.DataFrame | None = None) -> pd.DataFrame:
    """The run's one-sided Mann-Whitney tests (``tests.parquet``), labelled for display.

    Every row and number is the compare stage's (:func:`bayeslrp.analysis.mann_whitney_tests`):
    the printed and the stored tests are the same. ``baseline < model``: the baseline's LRP
    robustness (the config's ``compare.baseline``) is stochastically lower than the model's
    (``Bay − Det``, ``Adv − Det``, SPEC §6); ``adv < model``: the adversarially trained
    model's is lower than the Bayesian model's (paper 000, appendix H).

    Parameters
    ----------
    tests : pandas.DataFrame or None
        ``tests.parquet`` (``None``: the run has none).
    results : pandas.DataFrame
        The results table (architectures, methods and top-k labels of the models).
    k : float, optional
        Only the tests at this top-k; default every test.
    differences : pandas.DataFrame, optional
        ``differences.parquet``, for the bootstrap intervals
        (:func:`bayeslrp.report.intervals.test_intervals`); without it they are NaN.

    Returns
    -------
    pandas.DataFrame
        One row per test, in the order of ``tests.parquet`` re-sorted for display:
        ``comparison`` (kinds, e.g. ``Bay−Det``), ``test`` (e.g. ``det < vi (10 samples)``),
        ``median difference`` (against the baseline; for ``adv < model``: the Bayesian
        model's minus the adversarial model's), ``ci low`` / ``ci high`` and
        ``diff 95% CI`` (the 95 % bootstrap interval of the median per-image difference;
        for ``adv < model`` of the paired ``Bay − Adv`` differences), ``n``, ``U``, ``p``
        and ``stars``.
    """
    from .intervals import format_interval, test_intervals

    columns = ["dataset", "arch", "attack", "rule", "layer", "k", "comparison", "model", "test",
               "median difference", "ci low", "ci high", "diff 95% CI", "n", "U", "p", "stars"]
    if tests is None or tests.empty or results.empty:
        return pd.DataFrame(columns=columns)
    part = tests if k is None else tests[tests["k"].astype(float) == float(k)]
    bounds = test_intervals(part, differences)
    arch = dict(zip(results["model"], results["arch"]))
    methods = dict(zip(results["model"], results["method"]))
    own, labels = _own_models(results), k_labels(results)
    rows = []
    for r, low, high in zip(part.itertuples(index=False), bounds["ci low"], bounds["ci high"]):
        label = series_label(r.model, "own" if r.model in own else r.method, r.n_samples)
        if r.test == "adv<bayes":
            kind, test = comparison_label(r.model, r.other, methods, own), f"{r.other} < {label}"
            median = r.median_diff - r.median_other_diff
        else:
            kind = comparison_label(r.model, r.baseline, methods, own)
            test, median = f"{r.baseline} < {label}", r.median_diff
        rows.append({"dataset": r.dataset, "arch": arch.get(r.model, ""),
                     "attack": r.attack, "rule": r.rule, "layer": int(r.layer),
                     "k": labels.get(float(r.k), f"{float(r.k):g}"),
                     "comparison": kind, "model": label, "test": test,
                     "median difference": float(median), "ci low": float(low),
                     "ci high": float(high), "diff 95% CI": format_interval(low, high),
                     "n": int(r.n_images), "U": r.u,
                     "p": r.pvalue, "stars": r.stars})
    table = pd.DataFrame(rows, columns=columns)
    return _sort(table, ["dataset", "arch", "attack", "rule", "layer"])


def spearman_table(df: pd.DataFrame, k: float | None = None) -> pd.DataFrame:
    """Spearman ρ between LRP and softmax robustness per model × sample count × layer."""
    keys = ["dataset", "arch", "attack", "rule", "layer", "model", "method", "n_samples"]
    kk = metric_k(df, k)
    if kk is None:
        return pd.DataFrame(columns=keys + ["rho", "p", "n"])
    rows = []
    for key, group in df[df["k"] == kk].groupby(keys, sort=False):
        res = spearman(group["lrp_robustness"], group["softmax_robustness"])
        rows.append(dict(zip(keys, key), rho=res.rho, p=res.pvalue, n=res.n))
    table = pd.DataFrame(rows, columns=keys + ["rho", "p", "n"])
    table.insert(len(keys), "k", k_label(df, kk))
    return _sort(table, ["dataset", "arch", "attack", "rule", "layer", "method", "model",
                         "n_samples"])


def nnz_table(df: pd.DataFrame, pixels: Mapping[str, int]) -> pd.DataFrame:
    """Share of clean heatmaps with fewer non-zero pixels than the top-k selection size.

    ``K``: the rows' ``k_pixels`` when present, else ``floor(k·P/100)`` with ``P`` =
    ``pixels[dataset]`` (:func:`selection_size`; NaN share when unknown). Such heatmaps have
    ties at zero inside ``Top_k`` (SPEC §6, ``ties="nonzero"``). ``k`` holds the top-k label.
    """
    keys = ["dataset", "arch", "model", "method", "n_samples", "rule", "layer", "k"]
    columns = keys + ["P", "K", "images", "share nnz < K"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    rows, labels = [], k_labels(df)
    for key, group in df.groupby(keys, sort=False):
        row = dict(zip(keys, key))
        n_pixels = pixels.get(str(row["dataset"]))
        K = selection_size(group, row["k"], n_pixels)
        share = float((group["nnz"] < K).mean()) if K is not None else math.nan
        rows.append({**row, "k": labels[float(row["k"])],
                     "P": n_pixels if n_pixels else math.nan,
                     "K": K if K is not None else math.nan,
                     "images": int(group["point"].nunique()), "share nnz < K": share})
    table = pd.DataFrame(rows, columns=columns)
    return _sort(table, ["dataset", "arch", "rule", "layer", "method", "model", "n_samples"])


def _p_text(p: float) -> str:
    if math.isnan(p):
        return "n.a."
    return f"{p:.1e}" if 0 < p < 1e-3 else f"{p:.3f}"


def layer_pivot(table: pd.DataFrame, index: list[str], cell) -> pd.DataFrame:
    """A display form of a long per-layer table: one column per layer, ``cell(row)`` text.

    Parameters
    ----------
    table : pandas.DataFrame
        A table with a ``layer`` column and the ``index`` columns.
    index : list of str
        Columns identifying a display row.
    cell : callable
        Maps one row (a ``pandas.Series``) to the cell text.
    """
    if table.empty:
        return pd.DataFrame(columns=index)
    frame = table.assign(_cell=[cell(row) for _, row in table.iterrows()])
    wide = frame.pivot(index=index, columns="layer", values="_cell")
    wide.columns = [f"layer {int(c)}" for c in wide.columns]
    wide = wide.reset_index()
    # Keep the row order of the long table.
    order = frame[index].drop_duplicates().reset_index(drop=True)
    return order.merge(wide, on=index, how="left").fillna("–")


def mann_whitney_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`mann_whitney_table` with one column per layer: median difference, its 95 %
    bootstrap interval, p, stars."""
    def cell(r) -> str:
        interval = r.get("diff 95% CI", "")
        interval = f" {interval}" if interval else ""
        return f"{r['median difference']:+.3f}{interval}  {_p_text(r['p'])} {r['stars']}"

    return layer_pivot(
        table, ["dataset", "arch", "attack", "rule", "k", "comparison", "test"], cell)


def spearman_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`spearman_table` with one column per layer: ρ and its p-value."""
    return layer_pivot(
        table, ["dataset", "arch", "attack", "rule", "model", "method", "n_samples", "k"],
        lambda r: "n.a." if math.isnan(r["rho"]) else f"{r['rho']:+.2f} ({_p_text(r['p'])})")


def nnz_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`nnz_table` with one column per layer holding the share of sparse heatmaps."""
    return layer_pivot(
        table, ["dataset", "arch", "rule", "model", "method", "n_samples", "k", "P", "K",
                "images"],
        lambda r: "n.a." if math.isnan(r["share nnz < K"]) else f"{r['share nnz < K']:.3f}")
