""""What drives the difference": the controls of the Bayesian-vs-deterministic comparison.

:func:`difference_drivers_table` puts, for every dataset × architecture × rule × layer × k,
the median LRP robustness of each condition side by side — the deterministic net (Det), the
Bayesian explanation with n posterior samples (Bay1, Bay10, …), one posterior sample attacked
with its own gradient (``own_attack_sample``), transfer attacks (a model explained on the
points crafted against another, ``transfer_from``) and every attack (and so every attack
mode) — with a paired (Wilcoxon signed-rank) and an unpaired (Mann-Whitney U) one-sided test
against the deterministic net on the same attack's points, and the share of clean heatmaps
with fewer than K non-zero pixels.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from bayeslrp.metrics import topk_count
from bayeslrp.stats import mann_whitney, stars, wilcoxon_signed_rank

__all__ = ["DRIVER_COLUMNS", "condition_label", "difference_drivers_table"]

DRIVER_COLUMNS = ["dataset", "arch", "rule", "layer", "k", "attack", "attack_mode",
                  "condition", "model", "source_model", "n_samples", "images",
                  "median robustness", "median diff vs det", "wilcoxon p", "mann-whitney p",
                  "stars", "share nnz < K"]
_KIND_ORDER = {"det": 0, "adv": 1, "vi": 2, "hmc": 2}


def condition_label(method: str, model: str, source_model: str, n_samples: int,
                    own_sample: int) -> str:
    """Short name of a results row's condition: ``Det``, ``Adv``, ``Bay10``, ``Own sample 3``,
    with `` on x̃(<model>)`` appended for a transfer attack."""
    if own_sample >= 0:
        name = f"Own sample {own_sample}"
    elif method in ("vi", "hmc"):
        name = f"Bay{n_samples}"
    else:
        name = method.capitalize()
    return name if source_model == model else f"{name} on x̃({source_model})"


def _sort_key(row: pd.Series) -> tuple:
    transfer = row["source_model"] != row["model"]
    own = row["own_sample"] >= 0
    return (int(transfer), _KIND_ORDER.get(row["method"], 3), int(own), str(row["model"]),
            int(row["n_samples"]))


def difference_drivers_table(df: pd.DataFrame, pixels: Mapping[str, int],
                             k: int | None = None) -> pd.DataFrame:
    """Median robustness of every condition with tests against the deterministic net.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table (``RUN_DIR/results.parquet``). Tables written before the controls
        existed (no ``source_model`` / ``own_sample`` columns) are read as having none.
    pixels : mapping of str to int
        Pixels per image of each dataset (for ``K = floor(k·P/100)``); a missing dataset gives
        a NaN share.
    k : int, optional
        Only this top-k percentage (default: every k in the table).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`DRIVER_COLUMNS`. The reference of a condition is the ``det`` model of
        the same dataset and architecture (the first by name when there are several) on the
        same attack's points (for a transfer attack: the points crafted against the source
        model). ``median diff vs det`` is the median per-image difference condition − Det;
        ``wilcoxon p`` (paired by image) and ``mann-whitney p`` (unpaired) test that Det's
        robustness is stochastically lower (one-sided); ``stars`` are the Wilcoxon p's. The
        reference rows have NaN tests. ``share nnz < K``: clean heatmaps with fewer non-zero
        pixels than the top-k selection.
    """
    if df.empty:
        return pd.DataFrame(columns=DRIVER_COLUMNS)
    df = df.copy()
    if "source_model" not in df.columns:
        df["source_model"] = df["model"]
    if "own_sample" not in df.columns:
        df["own_sample"] = -1
    if k is not None:
        df = df[df["k"] == k]
    keys = ["dataset", "arch", "rule", "layer", "k", "attack"]
    series = ["model", "method", "source_model", "own_sample", "n_samples"]
    rows = []
    for key, group in df.groupby(keys, sort=True):
        ref_rows = group[(group["method"] == "det") & (group["own_sample"] < 0)]
        ref_model = sorted(ref_rows["model"].unique())[0] if len(ref_rows) else None
        ref = (ref_rows[ref_rows["model"] == ref_model].set_index("point")["lrp_robustness"]
               if ref_model is not None else None)
        record = dict(zip(keys, key))
        n_pixels = pixels.get(str(record["dataset"]))
        K = topk_count(int(n_pixels), int(record["k"])) if n_pixels else None
        for skey, part in group.groupby(series, sort=True):
            s = dict(zip(series, skey))
            rob = part.set_index("point")["lrp_robustness"]
            diff = w_p = mw_p = math.nan
            if ref is not None and s["model"] != ref_model:
                common = ref.index.intersection(rob.index)
                diff = float((rob.loc[common] - ref.loc[common]).median())
                w_p = wilcoxon_signed_rank(ref.loc[common], rob.loc[common], "less").pvalue
                mw_p = mann_whitney(ref, rob, "less").pvalue
            modes = part["attack_mode"].unique()
            rows.append({
                **record, "attack_mode": str(modes[0]) if len(modes) == 1 else "",
                "condition": condition_label(s["method"], s["model"], s["source_model"],
                                             int(s["n_samples"]), int(s["own_sample"])),
                "model": s["model"], "source_model": s["source_model"],
                "n_samples": int(s["n_samples"]), "images": int(rob.index.nunique()),
                "median robustness": float(rob.median()), "median diff vs det": diff,
                "wilcoxon p": w_p, "mann-whitney p": mw_p,
                "stars": "" if math.isnan(w_p) else stars(w_p),
                "share nnz < K": float((part["nnz"] < K).mean()) if K else math.nan,
                "_order": _sort_key(pd.Series(s)),
            })
    if not rows:
        return pd.DataFrame(columns=DRIVER_COLUMNS)
    table = pd.DataFrame(rows)
    order = sorted(range(len(table)), key=lambda i: tuple(
        table.at[i, c] for c in keys) + table.at[i, "_order"])
    table = table.loc[order].reset_index(drop=True)
    return table[DRIVER_COLUMNS].astype({"n_samples": np.int64, "images": np.int64})
