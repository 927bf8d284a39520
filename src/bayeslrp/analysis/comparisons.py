"""Per-image differences against explicit baselines, their tests, Spearman ρ and the run's
baseline map.

Every function takes and returns plain ``pandas.DataFrame`` objects with the columns of the
run-directory tables (``results.parquet``, ``differences.parquet``, ``tests.parquet``,
``spearman.parquet``; schema in ``docs/experiments.md``). The compare stage writes their
output as it is, so the tables of a run and the numbers of the figures, the report and the
CLI summary come from the same code.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

__all__ = ["DIFFERENCE_COLUMNS", "DIFFERENCES_FILE", "GROUP", "RESULTS_FILE", "RESULT_COLUMNS",
           "RESULT_ORDER", "SPEARMAN_COLUMNS", "SPEARMAN_FILE", "TABLE_ORDER", "TESTS_FILE",
           "TEST_COLUMNS", "baseline_map", "mann_whitney_tests",
           "paired_differences", "spearman_table", "with_explainer_column"]

#: File names of the run-directory tables.
RESULTS_FILE, DIFFERENCES_FILE = "results.parquet", "differences.parquet"
TESTS_FILE, SPEARMAN_FILE = "tests.parquet", "spearman.parquet"

#: Columns of ``results.parquet`` in order (schema in docs/experiments.md).
RESULT_COLUMNS = ("dataset", "model", "method", "arch", "attack", "attack_mode", "rule",
                  "explainer", "layer", "n_samples", "k", "k_pixels", "point", "label", "pred_clean",
                  "pred_adv", "success", "lrp_robustness", "nnz", "softmax_robustness",
                  "source_model", "own_sample")
#: Sort order of ``results.parquet``.
RESULT_ORDER = ["dataset", "model", "attack", "rule", "layer", "n_samples", "k", "point"]
#: Columns that identify the same images under the same attack and explanation (with
#: ``point``: the same image) across models.
GROUP = ["dataset", "attack", "rule", "layer", "k"]

#: Columns of ``differences.parquet`` in order.
DIFFERENCE_COLUMNS = ["dataset", "model", "method", "arch", "baseline", "attack",
                      "attack_mode", "rule", "explainer", "layer", "n_samples", "k", "point",
                      "lrp_robustness", "baseline_robustness", "diff", "softmax_robustness",
                      "baseline_softmax_robustness", "softmax_diff"]
_TEST_KEYS = ["dataset", "baseline", "model", "method", "attack", "rule", "explainer", "layer",
              "n_samples", "k"]
#: Columns of ``tests.parquet`` in order.
TEST_COLUMNS = _TEST_KEYS + ["test", "other", "other_n_samples", "n_images", "median_diff",
                             "median_other_diff", "u", "pvalue", "stars"]
_SPEARMAN_KEYS = ["dataset", "model", "method", "arch", "attack", "rule", "explainer", "layer",
                  "n_samples", "k"]
#: Columns of ``spearman.parquet`` in order.
SPEARMAN_COLUMNS = _SPEARMAN_KEYS + ["rho", "pvalue", "n"]

#: Sort order of each run-directory table (also when the tables of several config documents
#: are concatenated).
TABLE_ORDER = {
    RESULTS_FILE: RESULT_ORDER,
    DIFFERENCES_FILE: ["dataset", "model", "attack", "rule", "layer", "n_samples", "k", "point"],
    TESTS_FILE: ["dataset", "model", "test", "other", "attack", "rule", "layer", "n_samples",
                 "k"],
    SPEARMAN_FILE: ["dataset", "model", "attack", "rule", "layer", "n_samples", "k"],
}


def with_explainer_column(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with an ``explainer`` column after ``rule`` (a copy of it) when it has none.

    ``explainer`` names the explanation method of each row as the config lists it; ``rule``
    is its older name, kept so that existing analyses still read. Tables written before
    ``explainer`` existed gain it here.
    """
    if "explainer" in table.columns or "rule" not in table.columns:
        return table
    out = table.copy()
    out.insert(int(out.columns.get_loc("rule")) + 1, "explainer", out["rule"])
    return out


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _pairs(baselines: Mapping[str, str] | Iterable) -> list[tuple[str, str]]:
    items = baselines.items() if isinstance(baselines, Mapping) else baselines
    return [(str(model), str(baseline)) for model, baseline in items]


def _baseline_rows(results: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """The baseline's robustness per image; a Bayesian baseline at its largest sample count."""
    cols = GROUP + ["point"]
    base = results[results["model"] == baseline]
    base = base[cols + ["lrp_robustness", "softmax_robustness", "n_samples"]]
    if base["n_samples"].nunique() > 1:
        base = base[base["n_samples"] == base["n_samples"].max()]
    return base.drop(columns="n_samples").rename(columns={
        "lrp_robustness": "baseline_robustness",
        "softmax_robustness": "baseline_softmax_robustness"})


def paired_differences(results: pd.DataFrame,
                       baselines: Mapping[str, str] | Iterable) -> pd.DataFrame:
    """Per-image ``model − baseline`` differences of LRP and softmax robustness.

    Each model's rows are joined with its baseline's rows of the same image, dataset, attack,
    rule, layer and k (:data:`GROUP` and ``point``; SPEC §6: ``Bay − Det``, ``Adv − Det`` on
    the same images). A baseline with several sample counts (a Bayesian baseline) is taken at
    its largest; the model keeps every sample count.

    Parameters
    ----------
    results : pandas.DataFrame
        A results table (columns :data:`RESULT_COLUMNS`).
    baselines : mapping of str to str, or iterable of (str, str)
        The explicit baseline of every compared model, ``{model: baseline}`` or
        ``[(model, baseline), …]`` (the config's ``compare.baseline``, see
        :func:`baseline_map`). Models without a baseline are not compared.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`DIFFERENCE_COLUMNS`, sorted by ``TABLE_ORDER["differences.parquet"]``;
        ``diff = lrp_robustness − baseline_robustness``, ``softmax_diff`` likewise. Empty
        (object columns) when nothing is compared.

    Raises
    ------
    pandas.errors.MergeError
        When the baseline has two rows for one image (a malformed results table).
    """
    cols = GROUP + ["point"]
    results = with_explainer_column(results)
    frames = []
    for model, baseline in _pairs(baselines):
        mine = results[results["model"] == model]
        merged = mine.merge(_baseline_rows(results, baseline), on=cols, how="inner",
                            validate="many_to_one")
        merged = merged.assign(baseline=baseline,
                               diff=merged["lrp_robustness"] - merged["baseline_robustness"],
                               softmax_diff=merged["softmax_robustness"]
                               - merged["baseline_softmax_robustness"])
        frames.append(merged[DIFFERENCE_COLUMNS])
    if not frames:
        return _empty(DIFFERENCE_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(TABLE_ORDER[DIFFERENCES_FILE], kind="mergesort").reset_index(
        drop=True)



def _baseline_tests(diffs: pd.DataFrame) -> list[dict]:
    from bayeslrp import stats

    rows = []
    for key, g in diffs.groupby(_TEST_KEYS, sort=True):
        mw = stats.mann_whitney(g["baseline_robustness"], g["lrp_robustness"], "less")
        rec = dict(zip(_TEST_KEYS, key))
        rows.append({**rec, "test": "baseline<model", "other": rec["baseline"],
                     "other_n_samples": 1, "n_images": int(len(g)),
                     "median_diff": float(g["diff"].median()),
                     "median_other_diff": 0.0, "u": mw.u, "pvalue": mw.pvalue,
                     "stars": mw.stars})
    return rows


def _registered_bayesian(diffs: pd.DataFrame) -> set[str]:
    """Models whose method is registered as a posterior method (``ModelMethod.bayesian``)."""
    from bayeslrp.plugins.models import MODEL_METHODS

    methods = {m for m in diffs["method"].unique()
               if m in MODEL_METHODS.names() and MODEL_METHODS.get(m).bayesian}
    return set(diffs.loc[diffs["method"].isin(sorted(methods)), "model"])


def _adv_bayes_tests(diffs: pd.DataFrame, own, bayesian) -> list[dict]:
    from bayeslrp import stats

    rows = []
    adv = diffs[diffs["method"] == "adv"]
    if bayesian is None:
        bayesian = _registered_bayesian(diffs)
    bay = diffs[diffs["model"].isin(sorted(set(bayesian) - set(own)))]
    for key, b in bay.groupby(_TEST_KEYS, sort=True):
        rec = dict(zip(_TEST_KEYS, key))
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
    return rows


def mann_whitney_tests(diffs: pd.DataFrame, own: set | frozenset = frozenset(),
                       bayesian: Iterable[str] | None = None) -> pd.DataFrame:
    """One-sided Mann-Whitney U tests with stars (SPEC §6) of a differences table.

    ``baseline<model``: the baseline's LRP robustness is stochastically lower than the
    model's (the ``Bay − Det`` and ``Adv − Det`` comparisons), one test per model, sample
    count, dataset, attack, rule, layer and k. ``adv<bayes``: an adversarially trained
    model's LRP robustness is stochastically lower than that of a Bayesian model with the
    same baseline, on the same images (paper 000, §VII-H).

    Parameters
    ----------
    diffs : pandas.DataFrame
        A differences table (:func:`paired_differences`).
    own : set of str
        Models that are posterior samples attacked with their own gradient (used as
        deterministic nets): not Bayesian models in the ``adv<bayes`` tests.
    bayesian : iterable of str, optional
        The Bayesian models (posteriors explained and attacked as one) of the ``adv<bayes``
        tests; the compare stage passes the config's. Default: every model whose method is
        registered with ``bayesian = True`` in
        :data:`bayeslrp.plugins.models.MODEL_METHODS` (``vi``, ``hmc`` and plug-ins).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TEST_COLUMNS`, sorted by ``TABLE_ORDER["tests.parquet"]``.
        ``median_diff``: median per-image difference of the model against its baseline;
        ``median_other_diff``: that of the adversarially trained model (``adv<bayes``; 0 for
        ``baseline<model``); ``u``: U of the first (lower) sample; ``pvalue`` and ``stars``.
    """
    diffs = with_explainer_column(diffs)
    rows = _baseline_tests(diffs) + _adv_bayes_tests(diffs, own, bayesian)
    if not rows:
        return _empty(TEST_COLUMNS)
    out = pd.DataFrame(rows)[TEST_COLUMNS]
    return out.sort_values(TABLE_ORDER[TESTS_FILE], kind="mergesort").reset_index(drop=True)


def spearman_table(results: pd.DataFrame) -> pd.DataFrame:
    """Spearman ρ between LRP robustness and softmax robustness of the same images.

    Parameters
    ----------
    results : pandas.DataFrame
        A results table (columns :data:`RESULT_COLUMNS`).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SPEARMAN_COLUMNS`: one row per dataset, model, attack, rule, layer,
        sample count and k (in that sort order); ``rho``, its two-sided ``pvalue`` and the
        number of pairs ``n`` (:func:`bayeslrp.stats.spearman`).
    """
    from bayeslrp import stats

    rows = []
    results = with_explainer_column(results)
    for key, g in results.groupby(_SPEARMAN_KEYS, sort=True):
        res = stats.spearman(g["lrp_robustness"], g["softmax_robustness"])
        rows.append({**dict(zip(_SPEARMAN_KEYS, key)), "rho": res.rho, "pvalue": res.pvalue,
                     "n": res.n})
    if not rows:
        return _empty(SPEARMAN_COLUMNS)
    return pd.DataFrame(rows)


def baseline_map(table: pd.DataFrame | None,
                 baselines: str | Iterable[str] | None = None) -> dict[str, str]:
    """``{model: baseline}`` of a run: the one baseline rule of figures, report and CLI.

    Parameters
    ----------
    table : pandas.DataFrame or None
        A run's differences table (``differences.parquet``, or ``tests.parquet``): the pairs
        it holds, which the compare stage made from the config's ``compare.baseline``. Or a
        results table together with ``baselines``.
    baselines : str or iterable of str, optional
        The config's ``compare.baseline`` names, for a results table: every other model is
        compared with the first of them of its dataset and architecture (as the compare
        stage pairs them). Ignored for a table with a ``baseline`` column.

    Returns
    -------
    dict of str to str
        Compared model → its baseline; empty when the run compares nothing (no
        ``compare`` section, no table, or a results table without ``baselines``).
    """
    if table is None or table.empty:
        return {}
    if "baseline" in table.columns:
        pairs = table[["model", "baseline"]].drop_duplicates()
        return {str(m): str(b) for m, b in zip(pairs["model"], pairs["baseline"])}
    if baselines is None:
        return {}
    names = [baselines] if isinstance(baselines, str) else [str(b) for b in baselines]
    models = table[["dataset", "arch", "model"]].drop_duplicates()
    where = {(str(d), str(a), str(m)) for d, a, m in models.itertuples(index=False)}
    out: dict[str, str] = {}
    for dataset, arch, model in sorted(where):
        if model in names:
            continue
        match = [b for b in names if (dataset, arch, b) in where]
        if match:
            out[model] = match[0]
    return out
