""""What drives the difference": the controls of the Bayesian-vs-deterministic comparison.

:func:`difference_drivers_table` puts, for every dataset × architecture × rule × layer × k,
the median LRP robustness of each condition side by side — the run's baseline (the config's
``compare.baseline``, usually the deterministic net Det), the Bayesian explanation with n
posterior samples (Bay1, Bay10, …), one posterior sample attacked
with its own gradient (``own_attack_sample``), transfer attacks (a model explained on the
points crafted against another, ``transfer_from``) and every attack (and so every attack
mode) — with a paired (Wilcoxon signed-rank) and an unpaired (Mann-Whitney U) one-sided test
against the baseline on the same attack's points, and the share of clean heatmaps with fewer
than K non-zero pixels.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from bayeslrp.analysis.bootstrap import median_diff_interval
from bayeslrp.plots.frames import BAYESIAN
from bayeslrp.stats import mann_whitney, stars, wilcoxon_signed_rank

from .tables import k_labels, selection_size

__all__ = ["DRIVER_COLUMNS", "condition_label", "difference_drivers_table", "drivers_display"]

DRIVER_COLUMNS = ["dataset", "arch", "rule", "layer", "k", "attack", "attack_mode",
                  "condition", "model", "source_model", "n_samples", "baseline", "images",
                  "median robustness", "median diff vs baseline", "diff 95% CI", "wilcoxon p",
                  "mann-whitney p", "stars", "share nnz < K"]
_KIND_ORDER = {"det": 0, "adv": 1, "vi": 2, "hmc": 2}


def condition_label(method: str, model: str, source_model: str, n_samples: int,
                    own_sample: int) -> str:
    """Short name of a results row's condition: ``Det``, ``Adv``, ``Bay10``, ``Own sample 3``,
    with `` on x̃(<model>)`` appended for a transfer attack."""
    if own_sample >= 0:
        name = f"Own sample {own_sample}"
    elif method in BAYESIAN:
        name = f"Bay{n_samples}"
    else:
        name = method.capitalize()
    return name if source_model == model else f"{name} on x̃({source_model})"


def _sort_key(row: pd.Series) -> tuple:
    transfer = row["source_model"] != row["model"]
    own = row["own_sample"] >= 0
    return (int(transfer), _KIND_ORDER.get(row["method"], 3), int(own), str(row["model"]),
            int(row["n_samples"]))


def _reference(group: pd.DataFrame, baselines: Mapping[str, str]):
    """The baseline of a group's compared models and its robustness per point (a Bayesian
    baseline at its largest sample count); ``(None, None)`` when the group has none."""
    names = sorted({baselines[m] for m in group["model"].unique() if m in baselines})
    if len(names) != 1 or not (group["model"] == names[0]).any():
        return None, None
    rows = group[group["model"] == names[0]]
    rows = rows[rows["n_samples"] == rows["n_samples"].max()]
    return names[0], rows.set_index("point")["lrp_robustness"]


def _condition_row(part: pd.DataFrame, s: dict, ref_model, ref) -> dict:
    rob = part.set_index("point")["lrp_robustness"]
    diff = w_p = mw_p = math.nan
    interval = ""
    if ref is not None and s["model"] != ref_model:
        common = ref.index.intersection(rob.index)
        diff, low, high = median_diff_interval((rob.loc[common] - ref.loc[common]).to_numpy())
        interval = "" if math.isnan(diff) else f"[{low:+.3f}, {high:+.3f}]"
        w_p = wilcoxon_signed_rank(ref.loc[common], rob.loc[common], "less").pvalue
        mw_p = mann_whitney(ref, rob, "less").pvalue
    modes = part["attack_mode"].unique()
    return {"attack_mode": str(modes[0]) if len(modes) == 1 else "",
            "condition": condition_label(s["method"], s["model"], s["source_model"],
                                         int(s["n_samples"]), int(s["own_sample"])),
            "model": s["model"], "source_model": s["source_model"],
            "n_samples": int(s["n_samples"]), "baseline": ref_model or "",
            "images": int(rob.index.nunique()), "median robustness": float(rob.median()),
            "median diff vs baseline": diff, "diff 95% CI": interval, "wilcoxon p": w_p,
            "mann-whitney p": mw_p,
            "stars": "" if math.isnan(w_p) else stars(w_p), "_order": _sort_key(pd.Series(s))}


def _with_controls(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``source_model`` / ``own_sample`` (none) when written before they existed."""
    return df.assign(**{c: v for c, v in (("source_model", df["model"]), ("own_sample", -1))
                        if c not in df.columns})


def difference_drivers_table(df: pd.DataFrame, pixels: Mapping[str, int],
                             k: float | None = None,
                             baselines: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Median robustness of every condition with tests against the run's baseline.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table (``RUN_DIR/results.parquet``). Tables written before the controls
        existed (no ``source_model`` / ``own_sample`` columns) are read as having none.
    pixels : mapping of str to int
        Pixels per image of each dataset (for ``K = floor(k·P/100)`` when the table has no
        ``k_pixels``); a missing dataset gives a NaN share.
    k : float, optional
        Only this top-k percentage (default: every k in the table).
    baselines : mapping of str to str, optional
        ``{model: baseline}`` (:func:`bayeslrp.analysis.baseline_map`); default the map of a
        table read by :func:`bayeslrp.plots.load_run` (``df.attrs["baselines"]``), else none.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`DRIVER_COLUMNS`. The reference of a condition (``baseline``) is the
        baseline of the compared models of the same dataset and architecture (a Bayesian
        one at its largest sample count) on the same attack's points (for a transfer
        attack: the points crafted against the source model). ``median diff vs baseline``
        is the median per-image difference condition − baseline, ``diff 95% CI`` its 95 %
        percentile bootstrap interval over images (2000 resamples, seed 0); ``wilcoxon p``
        (paired by image) and ``mann-whitney p`` (unpaired) test that the baseline's robustness is
        stochastically lower (one-sided); ``stars`` are the Wilcoxon p's. The baseline's
        own rows and groups without a baseline have NaN tests. ``share nnz < K``: clean
        heatmaps with fewer non-zero pixels than the top-k selection; ``k`` holds the
        top-k label.
    """
    if df.empty:
        return pd.DataFrame(columns=DRIVER_COLUMNS)
    baselines = (df.attrs.get("baselines") or {}) if baselines is None else baselines
    df = _with_controls(df if k is None else df[df["k"] == k])
    keys = ["dataset", "arch", "rule", "layer", "k", "attack"]
    series = ["model", "method", "source_model", "own_sample", "n_samples"]
    rows, labels = [], k_labels(df)
    for key, group in df.groupby(keys, sort=True):
        ref_model, ref = _reference(group, baselines)
        record = dict(zip(keys, key))
        K = selection_size(group, record["k"], pixels.get(str(record["dataset"])))
        for skey, part in group.groupby(series, sort=True):
            row = _condition_row(part, dict(zip(series, skey)), ref_model, ref)
            row["share nnz < K"] = float((part["nnz"] < K).mean()) if K else math.nan
            rows.append({**record, **row})
    if not rows:
        return pd.DataFrame(columns=DRIVER_COLUMNS)
    table = pd.DataFrame(rows)
    order = sorted(range(len(table)), key=lambda i: tuple(
        table.at[i, c] for c in keys) + table.at[i, "_order"])
    table = table.loc[order].reset_index(drop=True)
    table["k"] = table["k"].map(lambda v: labels[float(v)])
    return table[DRIVER_COLUMNS].astype({"n_samples": np.int64, "images": np.int64})


def drivers_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`difference_drivers_table` for the report: without ``source_model`` and
    ``n_samples``, which the condition names already hold (``Bay10``, ``… on x̃(B)``)."""
    return table.drop(columns=[c for c in ("source_model", "n_samples") if c in table.columns])
