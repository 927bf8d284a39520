"""bl.analysis: paired differences against explicit baselines, Mann-Whitney tests, Spearman ρ
and the baseline map, checked against hand-written pandas and SciPy on synthetic tables."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

import bayeslrp as bl
from analysis_fixture import BASELINES, OTHER_BASELINES, OTHER_MODELS, results_table
from bayeslrp import analysis

KEYS = ["dataset", "attack", "rule", "layer", "k", "point"]


def parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, engine="pyarrow")
    return buf.getvalue()


def expected_differences(results: pd.DataFrame, baselines: dict) -> pd.DataFrame:
    """The differences table written out by hand."""
    frames = []
    for model, base in baselines.items():
        b = results[results["model"] == base]
        b = b[b["n_samples"] == b["n_samples"].max()]
        b = b[KEYS + ["lrp_robustness", "softmax_robustness"]].rename(columns={
            "lrp_robustness": "baseline_robustness",
            "softmax_robustness": "baseline_softmax_robustness"})
        m = results[results["model"] == model].merge(b, on=KEYS)
        m["baseline"] = base
        m["diff"] = m["lrp_robustness"] - m["baseline_robustness"]
        m["softmax_diff"] = m["softmax_robustness"] - m["baseline_softmax_robustness"]
        frames.append(m)
    out = pd.concat(frames, ignore_index=True)[analysis.DIFFERENCE_COLUMNS]
    order = ["dataset", "model", "attack", "rule", "layer", "n_samples", "k", "point"]
    return out.sort_values(order, kind="mergesort").reset_index(drop=True)


@pytest.fixture(scope="module")
def results():
    return results_table()


@pytest.fixture(scope="module")
def diffs(results):
    return analysis.paired_differences(results, BASELINES)


def test_public_surface():
    assert bl.analysis is analysis
    assert list(analysis.TABLE_ORDER) == ["results.parquet", "differences.parquet",
                                          "tests.parquet", "spearman.parquet"]
    assert analysis.TABLE_ORDER["results.parquet"] == analysis.RESULT_ORDER


def test_paired_differences_equal_a_hand_join_byte_for_byte(results, diffs):
    expected = expected_differences(results, BASELINES)
    pd.testing.assert_frame_equal(diffs, expected)
    assert parquet(diffs) == parquet(expected)
    # every compared row found its baseline: fractional k, both archs, the own sample
    assert len(diffs) == int(results["model"].isin(list(BASELINES)).sum())
    assert set(diffs["k"]) == {20.0, 12.5}
    assert diffs.groupby("model")["baseline"].unique().map(list).to_dict() == {
        m: [b] for m, b in BASELINES.items()}


def test_baselines_as_a_map_or_as_pairs(results, diffs):
    pairs = analysis.paired_differences(results, list(BASELINES.items()))
    assert parquet(pairs) == parquet(diffs)


def test_bayesian_baseline_is_taken_at_its_largest_sample_count():
    results = results_table(OTHER_MODELS, seed=1)
    diffs = analysis.paired_differences(results, OTHER_BASELINES)
    assert set(diffs["model"]) == {"base_a", "base_b"} and set(diffs["baseline"]) == {"post"}
    row = diffs.iloc[7]
    post = results[(results["model"] == "post") & (results["n_samples"] == 5)]
    post = post.set_index(KEYS).loc[tuple(row[KEYS])]
    assert row["baseline_robustness"] == post["lrp_robustness"]
    assert parquet(diffs) == parquet(expected_differences(results, OTHER_BASELINES))


def test_baseline_tests_against_scipy(results, diffs):
    tests = analysis.mann_whitney_tests(diffs, own={"vi.own1"})
    base = tests[tests["test"] == "baseline<model"]
    groups = diffs.groupby(["model", "n_samples"] + KEYS[:-1]).ngroups
    assert len(base) == groups
    for _, row in base.iloc[::7].iterrows():
        pick = ((results["attack"] == row["attack"]) & (results["rule"] == row["rule"])
                & (results["layer"] == row["layer"]) & (results["k"] == row["k"]))
        mine = results[pick & (results["model"] == row["model"])
                       & (results["n_samples"] == row["n_samples"])]
        other = results[pick & (results["model"] == row["baseline"])]
        want = st.mannwhitneyu(other["lrp_robustness"], mine["lrp_robustness"],
                               alternative="less")
        assert row["u"] == pytest.approx(want.statistic)
        assert row["pvalue"] == pytest.approx(want.pvalue)
        assert row["stars"] == bl.stats.stars(want.pvalue)
        per_image = (mine.set_index("point")["lrp_robustness"]
                     - other.set_index("point")["lrp_robustness"])
        assert row["median_diff"] == pytest.approx(float(np.median(per_image)))
        assert row["n_images"] == len(mine) and row["other"] == row["baseline"]


def test_adv_below_bayes_tests_against_scipy(results, diffs):
    tests = analysis.mann_whitney_tests(diffs, own={"vi.own1"})
    paper = tests[tests["test"] == "adv<bayes"]
    # vi (2 counts) × attacks × rules × layers × k; no own sample, no other-arch model
    assert set(paper["model"]) == {"vi"} and set(paper["other"]) == {"adv"}
    assert len(paper) == 2 * 2 * 2 * 2 * 2
    row = paper[(paper["attack"] == "pgd") & (paper["rule"] == "gamma") & (paper["layer"] == 3)
                & (paper["k"] == 12.5) & (paper["n_samples"] == 4)].iloc[0]
    pick = ((results["attack"] == "pgd") & (results["rule"] == "gamma")
            & (results["layer"] == 3) & (results["k"] == 12.5))
    adv = results[pick & (results["model"] == "adv")]["lrp_robustness"]
    bay = results[pick & (results["model"] == "vi") & (results["n_samples"] == 4)]
    want = st.mannwhitneyu(adv, bay["lrp_robustness"], alternative="less")
    assert row["pvalue"] == pytest.approx(want.pvalue) and row["u"] == pytest.approx(
        want.statistic)
    without_own = analysis.mann_whitney_tests(diffs)
    assert "vi.own1" in set(without_own.loc[without_own["test"] == "adv<bayes", "model"])


def test_adv_below_bayes_takes_plugin_posteriors(results):
    """A posterior method from a plug-in joins the adv<bayes tests: by the explicit
    ``bayesian`` set the compare stage passes, or by its registered ``bayesian`` flag."""
    from bayeslrp.plugins.models import MODEL_METHODS
    from bayeslrp.plugins.models.vi import VIMethod

    toy = results.copy()
    toy.loc[toy["model"] == "vi", "method"] = "toy_posterior"
    toy_diffs = analysis.paired_differences(toy, BASELINES)
    paper = lambda t: t[t["test"] == "adv<bayes"]  # noqa: E731
    # an unregistered method is not Bayesian by default (vi.own1 keeps method vi; chmc has
    # no adv model on its architecture)
    assert set(paper(analysis.mann_whitney_tests(toy_diffs))["model"]) == {"vi.own1"}
    explicit = paper(analysis.mann_whitney_tests(toy_diffs, {"vi.own1"}, bayesian={"vi"}))
    reference = paper(analysis.mann_whitney_tests(analysis.paired_differences(
        results, BASELINES), {"vi.own1"}))
    assert len(explicit) == len(reference) == 32
    assert explicit["pvalue"].tolist() == reference["pvalue"].tolist()

    class ToyPosterior(VIMethod):
        name = "toy_posterior"

    MODEL_METHODS.register(ToyPosterior)
    try:
        registered = paper(analysis.mann_whitney_tests(toy_diffs, {"vi.own1"}))
    finally:
        MODEL_METHODS.unregister("toy_posterior")
    assert registered["pvalue"].tolist() == reference["pvalue"].tolist()


def test_tables_are_sorted_by_table_order(results, diffs):
    tests = analysis.mann_whitney_tests(diffs, own={"vi.own1"})
    for table, name in ((diffs, "differences.parquet"), (tests, "tests.parquet")):
        order = analysis.TABLE_ORDER[name]
        resorted = table.sort_values(order, kind="mergesort").reset_index(drop=True)
        pd.testing.assert_frame_equal(table, resorted)
    assert list(tests.columns) == analysis.TEST_COLUMNS


def test_spearman_table_against_scipy(results):
    table = analysis.spearman_table(results)
    assert list(table.columns) == analysis.SPEARMAN_COLUMNS
    row = table[(table["model"] == "vi") & (table["n_samples"] == 2)
                & (table["attack"] == "fgsm") & (table["rule"] == "epsilon")
                & (table["layer"] == 3) & (table["k"] == 20.0)].iloc[0]
    rows = results[(results["model"] == "vi") & (results["n_samples"] == 2)
                   & (results["attack"] == "fgsm") & (results["rule"] == "epsilon")
                   & (results["layer"] == 3) & (results["k"] == 20.0)]
    want = st.spearmanr(rows["lrp_robustness"], rows["softmax_robustness"])
    assert row["rho"] == pytest.approx(want.statistic) and row["n"] == len(rows)
    assert row["pvalue"] == pytest.approx(want.pvalue)


def test_nothing_to_compare_gives_empty_tables_with_the_columns(results):
    diffs = analysis.paired_differences(results, {})
    assert diffs.empty and list(diffs.columns) == analysis.DIFFERENCE_COLUMNS
    tests = analysis.mann_whitney_tests(diffs)
    assert tests.empty and list(tests.columns) == analysis.TEST_COLUMNS
    spear = analysis.spearman_table(results.iloc[:0])
    assert spear.empty and list(spear.columns) == analysis.SPEARMAN_COLUMNS
    assert analysis.baseline_map(diffs) == {}


def test_baseline_map_from_differences_or_results(results, diffs):
    assert analysis.baseline_map(diffs) == BASELINES
    assert analysis.baseline_map(analysis.mann_whitney_tests(diffs)) == BASELINES
    assert analysis.baseline_map(None) == {}
    # a results table with the config's compare.baseline: the same pairs
    assert analysis.baseline_map(results, ["det", "cdet"]) == BASELINES
    assert analysis.baseline_map(results, "det") == {"adv": "det", "vi": "det",
                                                     "vi.own1": "det"}
    assert analysis.baseline_map(results) == {}  # no compare section: no comparisons
    other = results_table(OTHER_MODELS)
    assert analysis.baseline_map(other, ["post"]) == OTHER_BASELINES
