"""The report's first panel: the answer, per dataset, architecture and attack.

For every model compared with its baseline (the config's ``compare.baseline``): the median
per-image difference of LRP robustness at each layer with its stars (the ``baseline<model``
tests of ``tests.parquet``; Bayesian models at their largest sample count), the model's test
accuracy and the attack's success rate on it.
"""
from __future__ import annotations

import pandas as pd

from bayeslrp.plots.frames import BAYESIAN, metric_k, ordered_rules

from .tables import attack_success_table

__all__ = ["headline_table"]


def _label(method: str, own: bool) -> str:
    if own:
        return "Own"
    return "Bay" if method in BAYESIAN else "Adv" if method == "adv" else method


def headline_table(tests: pd.DataFrame | None, results: pd.DataFrame,
                   models: list[dict]) -> pd.DataFrame:
    """One row per dataset × arch × attack × rule × compared model; one column per layer."""
    if tests is None or tests.empty or results.empty:
        return pd.DataFrame()
    kk = metric_k(results)
    part = tests[(tests["test"] == "baseline<model") & (tests["k"].astype(float) == float(kk))]
    if part.empty:
        return pd.DataFrame()
    largest = part.groupby("model")["n_samples"].transform("max")
    part = part[part["n_samples"] == largest]
    arch = dict(zip(results["model"], results["arch"]))
    own = (set(results.loc[results["own_sample"] >= 0, "model"])
           if "own_sample" in results.columns else set())
    accuracy = {m["name"]: m.get("test_accuracy") for m in models}
    success = attack_success_table(results)
    success = success.sort_values("n_samples").groupby(["model", "attack"]).tail(1)
    success = {(m, a): s for m, a, s in zip(success["model"], success["attack"],
                                             success["success rate"])}
    rows = []
    keys = ["dataset", "attack", "rule", "model", "baseline", "method", "n_samples"]
    for key, g in part.groupby(keys, sort=False):
        rec = dict(zip(keys, key))
        row = {"dataset": rec["dataset"], "arch": arch.get(rec["model"], ""),
               "attack": rec["attack"], "rule": rec["rule"],
               "comparison": f"{_label(rec['method'], rec['model'] in own)}−Det: "
                             f"{rec['model']} − {rec['baseline']}"
                             + (f" ({rec['n_samples']} samples)"
                                if rec["method"] in BAYESIAN and rec["model"] not in own
                                else "")}
        for r in g.sort_values("layer").itertuples(index=False):
            row[f"layer {int(r.layer)}"] = f"{r.median_diff:+.3f} {r.stars}"
        acc = accuracy.get(rec["model"])
        row["test accuracy"] = "–" if acc is None else f"{acc:.4f}"
        rate = success.get((rec["model"], rec["attack"]))
        row["attack success"] = "–" if rate is None or rate != rate else f"{rate:.3f}"
        rows.append(row)
    out = pd.DataFrame(rows)
    rule_rank = {r: i for i, r in enumerate(ordered_rules(out["rule"].unique()))}
    out = out.assign(_r=out["rule"].map(rule_rank)).sort_values(
        ["dataset", "arch", "attack", "_r", "comparison"], kind="mergesort").drop(columns="_r")
    layer_cols = sorted((c for c in out.columns if c.startswith("layer ")),
                        key=lambda c: int(c.split()[1]))
    fixed = ["dataset", "arch", "attack", "rule", "comparison"]
    return out[fixed + layer_cols + ["test accuracy", "attack success"]].reset_index(drop=True)
