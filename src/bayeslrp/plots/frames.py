"""Data-frame transforms shared by the figures and the report.

* :func:`metric_k` / :func:`select` — pick one slice of the results table;
* :func:`paired_differences` — per-image robustness differences against the deterministic
  baseline of the same dataset and architecture (SPEC §6: ``Bay − Det``, ``Adv − Det``);
* :func:`series_label` — the name of one model at one sample count in legends and tables;
* :func:`mark_own_samples` — own-attack posterior samples are single networks in figures.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bayeslrp.errors import BayesLRPError

__all__ = ["BAYESIAN", "JOIN_KEYS", "OWN_SAMPLE", "RULE_ORDER", "RULE_TITLES", "baseline_models",
           "dataset_rank", "mark_own_samples", "metric_k", "ordered_rules", "paired_differences",
           "pick_rule", "select", "series_label", "series_order"]

log = logging.getLogger("bayeslrp.plots")

#: Methods whose models are posterior ensembles (explained with n posterior samples).
BAYESIAN = ("vi", "hmc")
#: Columns identifying the same image under the same attack and explanation (the join of SPEC).
JOIN_KEYS = ["dataset", "arch", "attack", "rule", "layer", "k", "point"]
RULE_ORDER = ("epsilon", "gamma", "alphabeta")
DATASET_ORDER = ("mnist", "fashion_mnist", "cifar10")
RULE_TITLES = {"epsilon": "ε rule", "gamma": "γ rule", "alphabeta": "αβ rule"}
#: Figure method of a posterior sample attacked with its own gradient (own_attack_sample control):
#: one network, drawn like the deterministic models, not as a posterior.
OWN_SAMPLE = "own"
_METHOD_ORDER = {"det": 0, "adv": 1, "vi": 2, "hmc": 3, OWN_SAMPLE: 4}


class Percent(float):
    """A top-k percentage that prints compactly (``20``, ``12.5``) in labels."""

    def __str__(self) -> str:
        return f"{float(self):.6g}"

    def __format__(self, spec: str) -> str:
        return str(self) if not spec else float.__format__(self, spec)


def metric_k(df: pd.DataFrame, k: float | None = None) -> Percent | None:
    """The top-k percentage to analyse (fractions allowed).

    ``k`` when given (it must occur in ``df``), else the only ``k`` present, else 20 (SPEC §6)
    when present, else the smallest. ``None`` for an empty table.
    """
    present = [Percent(v) for v in sorted(float(v) for v in df["k"].unique())]
    if k is not None:
        if float(k) not in present:
            raise BayesLRPError(f"k={k} is not in the results (present: "
                                f"{[str(p) for p in present]})")
        return Percent(k)
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return Percent(20) if 20 in present else present[0]


def select(df: pd.DataFrame, **match) -> pd.DataFrame:
    """Rows whose columns equal every ``match`` item (``None`` values are ignored)."""
    mask = np.ones(len(df), dtype=bool)
    for column, value in match.items():
        if value is not None:
            mask &= (df[column] == value).to_numpy()
    return df[mask]


def ordered_rules(rules) -> list[str]:
    """Rules in the paper's order (ε, γ, αβ), unknown ones after, alphabetically."""
    rules = set(rules)
    return [r for r in RULE_ORDER if r in rules] + sorted(rules - set(RULE_ORDER))


def dataset_rank(dataset: str) -> tuple[int, str]:
    """Sort key of datasets in the paper's order (MNIST, Fashion-MNIST, CIFAR-10, others)."""
    return (DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER),
            dataset)


def pick_rule(df: pd.DataFrame, rule: str | None) -> str | None:
    """``rule`` when given; else ε when present (the paper's default), else the first rule."""
    rules = ordered_rules(df["rule"].unique())
    if rule is not None:
        if rule not in rules:
            raise BayesLRPError(f"rule {rule!r} is not in the results (present: {rules})")
        return rule
    return rules[0] if rules else None


def series_label(model: str, method: str, n_samples: int) -> str:
    """Legend name of a model: ``"hmc (100 samples)"`` for posteriors, else the model name."""
    if method in BAYESIAN:
        return f"{model} ({int(n_samples)} samples)"
    if method == OWN_SAMPLE:
        return f"{model} (own attack)"
    return str(model)


def mark_own_samples(df: pd.DataFrame) -> pd.DataFrame:
    """Give rows of own-attack posterior samples the method :data:`OWN_SAMPLE`.

    Their ``method`` column keeps the parent's (``vi``/``hmc``) in the results table; in figures
    they are single networks and must not be drawn or counted as posteriors. Tables without an
    ``own_sample`` column are returned unchanged.
    """
    if "own_sample" not in df.columns or not (df["own_sample"] >= 0).any():
        return df
    out = df.copy()
    out.loc[out["own_sample"] >= 0, "method"] = OWN_SAMPLE
    return out


def series_order(frame: pd.DataFrame) -> list[tuple[str, str, int]]:
    """Distinct ``(model, method, n_samples)`` sorted det, adv, vi, hmc, then by n_samples."""
    combos = frame[["model", "method", "n_samples"]].drop_duplicates().itertuples(index=False)
    return sorted(((str(m), str(meth), int(n)) for m, meth, n in combos),
                  key=lambda t: (_METHOD_ORDER.get(t[1], 9), t[0], t[2]))


def baseline_models(df: pd.DataFrame) -> dict[tuple[str, str], str]:
    """The baseline model of every ``(dataset, arch)``.

    A table read from a run directory (:func:`bayeslrp.plots.load_run`) carries the run's
    baselines — the config's ``compare.baseline``, as ``df.attrs["baselines"]`` — and those are
    used, whatever their method or name. A bare table without them falls back to its only
    deterministic model per dataset and architecture (or the one named ``det``).

    Raises
    ------
    BayesLRPError
        A bare table with several deterministic models per dataset/arch, none named ``det``.
    """
    if "baselines" in df.attrs:
        chosen = set(df.attrs["baselines"].values())
        rows = df.loc[df["model"].isin(chosen), ["dataset", "arch", "model"]].drop_duplicates()
        return {(str(d), str(a)): str(m) for d, a, m in rows.itertuples(index=False)}
    out: dict[tuple[str, str], str] = {}
    dets = df.loc[df["method"] == "det", ["dataset", "arch", "model"]].drop_duplicates()
    for (dataset, arch), group in dets.groupby(["dataset", "arch"], sort=True):
        names = sorted(group["model"].unique())
        if len(names) > 1:
            if "det" not in names:
                raise BayesLRPError(
                    f"{dataset}/{arch} has several deterministic models ({', '.join(names)}) and "
                    f"none is named 'det'; name the baseline 'det' in the config")
            names = ["det"]
        out[(str(dataset), str(arch))] = names[0]
    return out


def paired_differences(df: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """Per-image LRP-robustness differences of every non-baseline model against the baseline.

    Rows of each adversarially trained or Bayesian model are joined with the rows of the
    deterministic model of the same dataset and architecture on :data:`JOIN_KEYS` (same image,
    attack, rule, layer and k).

    Parameters
    ----------
    df : pandas.DataFrame
        Results table.
    k : int, optional
        Top-k percentage; see :func:`metric_k`.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`JOIN_KEYS` plus ``model, method, n_samples, attack_mode, baseline,
        robustness, baseline_robustness, diff, softmax_robustness, series``; empty (with
        these columns) when there is nothing to compare.
    """
    columns = JOIN_KEYS + ["model", "method", "n_samples", "attack_mode", "baseline",
                           "robustness", "baseline_robustness", "diff", "softmax_robustness",
                           "series"]
    kk = metric_k(df, k)
    if kk is None:
        return pd.DataFrame(columns=columns)
    df = df[df["k"] == kk]
    frames = []
    for (dataset, arch), base in baseline_models(df).items():
        group = df[(df["dataset"] == dataset) & (df["arch"] == arch)]
        base_rows = group.loc[group["model"] == base, JOIN_KEYS + ["lrp_robustness"]]
        base_rows = base_rows.drop_duplicates(JOIN_KEYS).rename(
            columns={"lrp_robustness": "baseline_robustness"})
        others = group[group["model"] != base]
        if others.empty or base_rows.empty:
            continue
        joined = others.merge(base_rows, on=JOIN_KEYS, how="inner")
        dropped = len(others) - len(joined)
        if dropped:
            log.warning("%d rows of %s/%s have no matching %s row and are left out of the "
                        "differences", dropped, dataset, arch, base)
        joined = joined.assign(baseline=base, robustness=joined["lrp_robustness"],
                               diff=joined["lrp_robustness"] - joined["baseline_robustness"])
        frames.append(joined)
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)
    out["series"] = [series_label(m, meth, n) for m, meth, n in
                     zip(out["model"], out["method"], out["n_samples"])]
    return out[columns]
