"""Per-image differences against an explicit baseline, their tests, and Spearman ρ."""
from __future__ import annotations

import pandas as pd

__all__ = ["GROUP", "RESULT_COLUMNS", "RESULT_ORDER", "baseline_map", "differences",
           "mann_whitney_tests", "spearman_table"]

#: Columns of ``results.parquet`` in order (schema in docs/experiments.md).
RESULT_COLUMNS = ("dataset", "model", "method", "arch", "attack", "attack_mode", "rule",
                  "layer", "n_samples", "k", "k_pixels", "point", "label", "pred_clean",
                  "pred_adv", "success", "lrp_robustness", "nnz", "softmax_robustness", "source_model",
                  "own_sample")
RESULT_ORDER = ["dataset", "model", "attack", "rule", "layer", "n_samples", "k", "point"]
GROUP = ["dataset", "attack", "rule", "layer", "k"]


def differences(results: pd.DataFrame, pairs: list) -> pd.DataFrame:
    """Per-image ``model − baseline`` differences of LRP and softmax robustness."""
    cols = GROUP + ["point"]
    frames = []
    for model, baseline in pairs:
        mine = results[results["model"] == model]
        base = results[results["model"] == baseline]
        base = base[cols + ["lrp_robustness", "softmax_robustness", "n_samples"]]
        if base["n_samples"].nunique() > 1:  # a Bayesian baseline: compare at its largest n
            base = base[base["n_samples"] == base["n_samples"].max()]
        base = base.drop(columns="n_samples").rename(columns={
            "lrp_robustness": "baseline_robustness",
            "softmax_robustness": "baseline_softmax_robustness"})
        merged = mine.merge(base, on=cols, how="inner", validate="many_to_one")
        merged = merged.assign(baseline=baseline,
                               diff=merged["lrp_robustness"] - merged["baseline_robustness"],
                               softmax_diff=merged["softmax_robustness"]
                               - merged["baseline_softmax_robustness"])
        frames.append(merged[["dataset", "model", "method", "arch", "baseline", "attack",
                              "attack_mode", "rule", "layer", "n_samples", "k", "point",
                              "lrp_robustness", "baseline_robustness", "diff",
                              "softmax_robustness", "baseline_softmax_robustness",
                              "softmax_diff"]])
    columns = ["dataset", "model", "method", "arch", "baseline", "attack", "attack_mode",
               "rule", "layer", "n_samples", "k", "point", "lrp_robustness",
               "baseline_robustness", "diff", "softmax_robustness",
               "baseline_softmax_robustness", "softmax_diff"]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["dataset", "model", "attack", "rule", "layer", "n_samples", "k",
                            "point"], kind="mergesort").reset_index(drop=True)


def mann_whitney_tests(diffs: pd.DataFrame, own: set | frozenset = frozenset()) -> pd.DataFrame:
    """One-sided Mann-Whitney tests with stars.

    ``baseline<model``: the baseline's LRP robustness is stochastically lower than the
    model's (the Bay − Det and Adv − Det comparisons). ``adv<bayes``: the adversarially
    trained model's LRP robustness is stochastically lower than that of a Bayesian model with
    the same baseline, on the same images (paper 000, §VII-H). The models in ``own`` (posterior
    samples used as deterministic nets) are not Bayesian models there.
    """
    from bayeslrp import stats

    rows = []
    keys = ["dataset", "baseline", "model", "method", "attack", "rule", "layer", "n_samples", "k"]
    for key, g in diffs.groupby(keys, sort=True):
        mw = stats.mann_whitney(g["baseline_robustness"], g["lrp_robustness"], "less")
        rec = dict(zip(keys, key))
        rows.append({**rec, "test": "baseline<model", "other": rec["baseline"],
                     "other_n_samples": 1, "n_images": int(len(g)),
                     "median_diff": float(g["diff"].median()),
                     "median_other_diff": 0.0, "u": mw.u, "pvalue": mw.pvalue,
                     "stars": mw.stars})
    adv = diffs[diffs["method"] == "adv"]
    bay = diffs[diffs["method"].isin(["vi", "hmc"]) & ~diffs["model"].isin(sorted(own))]
    for key, b in bay.groupby(keys, sort=True):
        rec = dict(zip(keys, key))
        for adv_model, a in adv[(adv["dataset"] == rec["dataset"])
                                & (adv["baseline"] == rec["baseline"])
                                & (adv["attack"] == rec["attack"])
                                & (adv["rule"] == rec["rule"])
                                & (adv["layer"] == rec["layer"])
                                & (adv["k"] == rec["k"])].groupby("model", sort=True):
            mw = stats.mann_whitney(a["lrp_robustness"], b["lrp_robustness"], "less")
            rows.append({**rec, "test": "adv<bayes", "other": adv_model, "other_n_samples": 1,
                         "n_images": int(len(b)), "median_diff": float(b["diff"].median()),
                         "median_other_diff": float(a["diff"].median()), "u": mw.u,
                         "pvalue": mw.pvalue, "stars": mw.stars})
    columns = keys + ["test", "other", "other_n_samples", "n_images", "median_diff",
                      "median_other_diff", "u", "pvalue", "stars"]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    out = pd.DataFrame(rows)[columns]
    return out.sort_values(["dataset", "model", "test", "other", "attack", "rule", "layer",
                            "n_samples", "k"], kind="mergesort").reset_index(drop=True)


def spearman_table(results: pd.DataFrame) -> pd.DataFrame:
    from bayeslrp import stats

    keys = ["dataset", "model", "method", "arch", "attack", "rule", "layer", "n_samples", "k"]
    rows = []
    for key, g in results.groupby(keys, sort=True):
        res = stats.spearman(g["lrp_robustness"], g["softmax_robustness"])
        rows.append({**dict(zip(keys, key)), "rho": res.rho, "pvalue": res.pvalue, "n": res.n})
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in keys + ["rho", "pvalue", "n"]})
    return pd.DataFrame(rows)


def baseline_map(differences_table: pd.DataFrame) -> dict[str, str]:
    """``{model: baseline}`` of a run, read from its differences table.

    The one baseline rule: the pairs the compare stage made from the config's
    ``compare.baseline`` (no comparisons: an empty map). Figures, report and CLI summary all
    use it.
    """
    if differences_table is None or differences_table.empty:
        return {}
    pairs = differences_table[["model", "baseline"]].drop_duplicates()
    return {str(m): str(b) for m, b in zip(pairs["model"], pairs["baseline"])}
