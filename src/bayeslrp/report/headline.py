"""The report's first panel: the answer, per dataset, architecture and attack.

For every model compared with its baseline (the config's ``compare.baseline``): the median
per-image difference of LRP robustness at each layer with its stars (the ``baseline<model``
tests of ``tests.parquet``; Bayesian models at their largest sample count) and its 95 %
bootstrap interval (``differences.parquet``, :mod:`bayeslrp.report.intervals`), the test
accuracy of the model and of its baseline, and the attack's success rate on both.
"""
from __future__ import annotations

import pandas as pd

from bayeslrp.plots.frames import BAYESIAN, k_label, metric_k, ordered_rules

from .intervals import format_interval, test_intervals
from .tables import _own_models, attack_success_table, comparison_label

__all__ = ["headline_table"]


def _success_rates(results: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Attack success rate per (model, attack), Bayesian models at their largest n."""
    table = attack_success_table(results)
    table = table.sort_values("n_samples").groupby(["model", "attack"]).tail(1)
    return {(m, a): s for m, a, s in zip(table["model"], table["attack"],
                                         table["success rate"])}


def _fmt(value, digits: int) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def _largest_n_tests(tests: pd.DataFrame, k) -> pd.DataFrame:
    part = tests[(tests["test"] == "baseline<model") & (tests["k"].astype(float) == float(k))]
    largest = part.groupby("model")["n_samples"].transform("max")
    return part[part["n_samples"] == largest]


def headline_table(tests: pd.DataFrame | None, results: pd.DataFrame,
                   models: list[dict], differences: pd.DataFrame | None = None) -> pd.DataFrame:
    """The headline panel of the report.

    Parameters
    ----------
    tests : pandas.DataFrame or None
        ``tests.parquet`` (its ``baseline<model`` tests at the results' k, see
        :func:`bayeslrp.plots.frames.metric_k`).
    results : pandas.DataFrame
        The results table (architectures, methods, attack outcomes).
    models : list of dict
        ``models.json`` entries (test accuracies).
    differences : pandas.DataFrame, optional
        ``differences.parquet``, for the intervals (empty cells without it).

    Returns
    -------
    pandas.DataFrame
        One row per dataset × arch × attack × rule × compared model: ``comparison`` (e.g.
        ``Bay−Det: vi − det (50 samples)``), per layer the median difference and its stars
        (``layer L``) and the 95 % bootstrap interval of that median (``layer L 95% CI``),
        test accuracy and attack success of model and baseline; empty without comparisons.
    """
    if tests is None or tests.empty or results.empty:
        return pd.DataFrame()
    kk = metric_k(results)
    part = _largest_n_tests(tests, kk)
    if part.empty:
        return pd.DataFrame()
    part = part.join(test_intervals(part, differences))
    arch, methods = dict(zip(results["model"], results["arch"])), \
        dict(zip(results["model"], results["method"]))
    own = _own_models(results)
    accuracy = {m.get("name"): m.get("test_accuracy") for m in models}
    success = _success_rates(results)
    rows = []
    keys = ["dataset", "attack", "rule", "model", "baseline", "method", "n_samples"]
    for key, g in part.groupby(keys, sort=False):
        rec = dict(zip(keys, key))
        model, base = rec["model"], rec["baseline"]
        samples = (f" ({rec['n_samples']} samples)"
                   if rec["method"] in BAYESIAN and model not in own else "")
        row = {"dataset": rec["dataset"], "arch": arch.get(model, ""), "attack": rec["attack"],
               "rule": rec["rule"], "k": k_label(results, kk),
               "comparison": f"{comparison_label(model, base, methods, own)}: "
                             f"{model} − {base}{samples}"}
        for _, r in g.sort_values("layer").iterrows():
            layer = int(r["layer"])
            row[f"layer {layer}"] = f"{r['median_diff']:+.3f} {r['stars']}"
            row[f"layer {layer} 95% CI"] = format_interval(r["ci low"], r["ci high"])
        row["test accuracy"] = _fmt(accuracy.get(model), 4)
        row["baseline test accuracy"] = _fmt(accuracy.get(base), 4)
        row["attack success"] = _fmt(success.get((model, rec["attack"])), 3)
        row["baseline attack success"] = _fmt(success.get((base, rec["attack"])), 3)
        rows.append(row)
    out = pd.DataFrame(rows)
    rule_rank = {r: i for i, r in enumerate(ordered_rules(out["rule"].unique()))}
    out = out.assign(_r=out["rule"].map(rule_rank)).sort_values(
        ["dataset", "arch", "attack", "_r", "comparison"], kind="mergesort").drop(columns="_r")
    layer_cols = sorted((c for c in out.columns if c.startswith("layer ")),
                        key=lambda c: (int(c.split()[1]), c))  # each layer, then its CI
    fixed = ["dataset", "arch", "attack", "rule", "k", "comparison"]
    tail = ["test accuracy", "baseline test accuracy", "attack success",
            "baseline attack success"]
    return out[fixed + layer_cols + tail].fillna("–").reset_index(drop=True)
