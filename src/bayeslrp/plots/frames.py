"""Data-frame transforms shared by the figures and the report.

* :func:`metric_k` / :func:`select` — pick one slice of the results table;
* :func:`run_baselines` / :func:`paired_differences` — per-image robustness differences
  against the run's explicit baselines (the config's ``compare.baseline``, SPEC §6:
  ``Bay − Det``, ``Adv − Det``), computed by :mod:`bayeslrp.analysis`;
* :func:`topk_label` / :func:`k_label` — ``top-20%`` or ``Top-100`` (a pixel count);
* :func:`series_label` — the name of one model at one sample count in legends and tables;
* :func:`mark_own_samples` — own-attack posterior samples are single networks in figures.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from bayeslrp.errors import BayesLRPError

__all__ = ["BAYESIAN", "JOIN_KEYS", "OWN_SAMPLE", "Percent", "RULE_ORDER", "RULE_TITLES",
           "dataset_rank", "det_bayes_pairs", "k_label", "mark_own_samples", "metric_k",
           "ordered_rules", "paired_differences", "pick_rule", "run_baselines", "select",
           "series_label", "series_order", "topk_label"]

log = logging.getLogger("bayeslrp.plots")

#: Methods whose models are posterior ensembles (explained with n posterior samples).
class _BayesianMethods:
    """The model methods whose models are posteriors: the plug-ins with ``bayesian = True``
    (VI, HMC, deep ensembles, MC dropout, Laplace, weight noise, and any registered later).
    Read from the registry at each use, so a user's plug-in counts as soon as it is
    registered. Supports ``in``, iteration and ``len`` (pandas ``isin`` takes it)."""

    @staticmethod
    def _names() -> tuple[str, ...]:
        from bayeslrp.plugins.models import MODEL_METHODS

        return tuple(cls.name for cls in MODEL_METHODS if cls.bayesian)

    def __contains__(self, method: object) -> bool:
        return method in self._names()

    def __iter__(self):
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return f"BAYESIAN{self._names()}"


#: Methods drawn and labelled as posteriors (``"hmc (100 samples)"``, ``Bay``).
BAYESIAN = _BayesianMethods()
#: Columns identifying the same image under the same attack and explanation (the join of SPEC).
JOIN_KEYS = ["dataset", "arch", "attack", "rule", "layer", "k", "point"]
RULE_ORDER = ("epsilon", "gamma", "alphabeta")
DATASET_ORDER = ("mnist", "fashion_mnist", "cifar10")
#: Display names of the explainers (the LRP rules, the gradient family, the presets); any
#: other explainer is shown by its registered name.
RULE_TITLES = {"epsilon": "ε rule", "gamma": "γ rule", "alphabeta": "αβ rule",
               "gradient": "gradient", "grad_x_input": "gradient × input",
               "integrated_gradients": "integrated gradients", "smoothgrad": "SmoothGrad",
               "noisegrad": "NoiseGrad", "fusiongrad": "FusionGrad",
               "epsilon_plus": "LRP ε-plus composite",
               "epsilon_alpha2_beta1": "LRP ε-α2β1 composite",
               "epsilon_gamma_box": "LRP ε-γ-box composite", "composite": "LRP composite"}
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


def run_baselines(df: pd.DataFrame,
                  baselines: Mapping[str, str] | None = None) -> dict[str, str]:
    """The explicit ``{model: baseline}`` map of a run (the one baseline rule).

    ``baselines`` when given; else the map a table read by :func:`bayeslrp.plots.load_run`
    carries (``df.attrs["baselines"]``, from the run's ``differences.parquet``, i.e. the
    config's ``compare.baseline``; empty when the run compares nothing).

    Raises
    ------
    BayesLRPError
        For a bare table without a map: no rule guesses a baseline from model names.
    """
    if baselines is not None:
        return {str(m): str(b) for m, b in dict(baselines).items()}
    if "baselines" not in df.attrs:
        raise BayesLRPError("the results table carries no baseline map: read it with "
                            "bl.plots.load_run(RUN_DIR) or pass baselines="
                            "bl.analysis.baseline_map(differences)")
    return {str(m): str(b) for m, b in dict(df.attrs["baselines"]).items()}


def paired_differences(df: pd.DataFrame, k: float | None = None,
                       baselines: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per-image LRP-robustness differences of every compared model against its baseline.

    The numbers are :func:`bayeslrp.analysis.paired_differences` (those of the run's
    ``differences.parquet``) at one k, with the figure columns added.

    Parameters
    ----------
    df : pandas.DataFrame
        Results table.
    k : float, optional
        Top-k percentage; see :func:`metric_k`.
    baselines : mapping of str to str, optional
        ``{model: baseline}``; default the run's map (:func:`run_baselines`).

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`JOIN_KEYS` plus ``model, method, n_samples, attack_mode, baseline,
        robustness, baseline_robustness, diff, softmax_robustness, series``; empty (with
        these columns) when there is nothing to compare.
    """
    from bayeslrp import analysis

    columns = JOIN_KEYS + ["model", "method", "n_samples", "attack_mode", "baseline",
                           "robustness", "baseline_robustness", "diff", "softmax_robustness",
                           "series"]
    mapping = run_baselines(df, baselines)
    kk = metric_k(df, k)
    if kk is None or not mapping:
        return pd.DataFrame(columns=columns)
    df = df[df["k"] == kk]
    out = analysis.paired_differences(df, mapping)
    dropped = int(df["model"].isin(list(mapping)).sum()) - len(out)
    if dropped > 0:
        log.warning("%d rows have no matching baseline row and are left out of the "
                    "differences", dropped)
    if out.empty:
        return pd.DataFrame(columns=columns)
    out = out.assign(robustness=out["lrp_robustness"])
    out["series"] = [series_label(m, meth, n) for m, meth, n in
                     zip(out["model"], out["method"], out["n_samples"])]
    return out[columns].reset_index(drop=True)


def det_bayes_pairs(df: pd.DataFrame,
                    baselines: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``(single network, Bayesian model)`` pairs of the run's comparisons, for Fig. 6.

    Every compared pair (model, baseline) of which exactly one is a posterior (``vi``,
    ``hmc``; own-attack samples are single networks), with the single network first, sorted.
    """
    mapping = run_baselines(df, baselines)
    methods = dict(zip(df["model"], df["method"]))
    pairs = set()
    for model, base in mapping.items():
        a, b = methods.get(model), methods.get(base)
        if a is None or b is None or (a in BAYESIAN) == (b in BAYESIAN):
            continue
        pairs.add((base, model) if a in BAYESIAN else (model, base))
    return sorted(pairs)


def _short_decimal(k: float) -> bool:
    return round(float(k), 3) == float(k)


def topk_label(k: float, k_pixels: int | None = None,
               percents: Iterable[float] | None = None) -> str:
    """Label of a top-k selection: ``"top-20%"``, ``"top-12.5%"``, or ``"Top-100"`` for a
    pixel count (``metrics.k_pixels``).

    Parameters
    ----------
    k : float
        The results' ``k`` (a percentage; ``100·K/P`` for a pixel count).
    k_pixels : int, optional
        ``K``, the pixels selected (the results' ``k_pixels``; absent in older run dirs).
    percents : iterable of float, optional
        The config's ``metrics.k``: a ``k`` not among them came from a pixel count. Unknown
        (``None``): a ``k`` with more than three decimals is taken for a pixel count.
    """
    if k_pixels is not None:
        pixel = (float(k) not in {float(p) for p in percents} if percents is not None
                 else not _short_decimal(k))
        if pixel:
            return f"Top-{int(k_pixels)}"
    return f"top-{Percent(k)}%"


def k_label(df: pd.DataFrame, k: float | None) -> str:
    """:func:`topk_label` of the rows of ``df`` at ``k`` (``"–"`` for ``None``); the config's
    percentages from ``df.attrs["k_percents"]`` (set by :func:`bayeslrp.plots.load_run`)."""
    if k is None:
        return "–"
    k_pixels = None
    if "k_pixels" in df.columns:
        counts = df.loc[df["k"] == float(k), "k_pixels"].unique()
        k_pixels = int(counts[0]) if len(counts) == 1 else None
    return topk_label(k, k_pixels, df.attrs.get("k_percents"))
