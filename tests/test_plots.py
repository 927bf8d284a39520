"""Figures from a fake run directory: panel counts, values drawn against independent
computations, file writing and the skipping of figures whose inputs are absent."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

import bayeslrp as bl
from bayeslrp.errors import BayesLRPError
from bayeslrp.plots import HeatmapKey
from report_fixture import write_fake_run

P = 28 * 28


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = write_fake_run(tmp_path_factory.mktemp("run") / "run", seed=3)
    return bl.plots.load_run(path)


#: The explainers of the ``made`` run, every one with saved heatmaps.
EXPLAINERS = ("epsilon", "gamma", "alphabeta")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A full fake run with every figure drawn once (shared by the file tests)."""
    path = write_fake_run(tmp_path_factory.mktemp("made") / "run", seed=5, attacks=("pgd",),
                          n_points=30, heatmap_rules=EXPLAINERS)
    return path, bl.plots.make_all_figures(path)


def image_axes(fig):
    return [ax for ax in fig.get_axes() if ax.images and ax.get_label() != "<colorbar>"]


def legend_texts(ax):
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


# --------------------------------------------------------------------------- heatmaps


def test_normalised_topk_matches_hand_computation():
    a = np.array([[1.0, -4.0], [2.0, 0.0]])
    b = np.array([[0.5, 8.0], [-1.0, 0.25]])
    out_a, out_b = bl.plots.normalised_topk([a, b], k=50)
    # Joint scale 8; top 2 of |a| are -4 and 2, of |b| are 8 and -1.
    np.testing.assert_allclose(out_a, [[0.0, -0.5], [0.25, 0.0]])
    np.testing.assert_allclose(out_b, [[0.0, 1.0], [-0.125, 0.0]])
    zeros = bl.plots.normalised_topk([np.zeros((2, 2))], k=50)[0]
    assert not zeros.any()


def test_layer_heatmaps_one_row_per_layer(run):
    keys = run.heatmap_keys(model="det", attack="fgsm", rule="epsilon")
    assert [k.layer for k in keys] == [1, 3, 5]
    sets = [run.heatmaps(k) for k in keys]
    fig = bl.plots.layer_heatmaps(sets)
    axes = image_axes(fig)
    assert len(axes) == 2 * (len(keys) + 1)          # header row (x, x̃) + R(x), R(x̃) per layer
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.get_axes()) == 1
    point = int(min(sets[0].points))
    assert f"test point {point}" in fig._suptitle.get_text()
    relevance = axes[2:]
    for row in range(len(keys)):
        pair = [np.asarray(relevance[2 * row + c].images[0].get_array()) for c in (0, 1)]
        for img in pair:
            assert img.min() >= -1 and img.max() <= 1
            assert np.count_nonzero(img) <= math.floor(30 * P / 100)
            im = relevance[2 * row].images[0]
            assert im.get_clim() == (-1, 1) and im.get_cmap().name == "bwr"
        # The row is scaled jointly: its largest |R| is exactly 1.
        assert max(np.abs(p).max() for p in pair) == pytest.approx(1.0)


def test_layer_heatmaps_rejects_mixed_models(run):
    mixed = [run.heatmaps(HeatmapKey("det", "fgsm", "epsilon", 1, 1)),
             run.heatmaps(HeatmapKey("adv", "fgsm", "epsilon", 3, 1))]
    with pytest.raises(BayesLRPError, match="one model"):
        bl.plots.layer_heatmaps(mixed)


def _failed(df, model, n, point):
    row = df[(df.model == model) & (df.attack == "fgsm") & (df.rule == "epsilon")
             & (df.layer == 5) & (df.n_samples == n) & (df.point == point)].iloc[0]
    return row.pred_clean == row.label == row.pred_adv


def test_det_vs_bayes_shows_first_failed_attack(run):
    det = run.heatmaps(HeatmapKey("det", "fgsm", "epsilon", 5, 1))
    bay = run.heatmaps(HeatmapKey("hmc", "fgsm", "epsilon", 5, 100))
    df = run.results
    expected = next(int(p) for p in sorted(det.points)
                    if _failed(df, "det", 1, p) and _failed(df, "hmc", 100, p))
    point, note = bl.plots.showcase_point(df, det, bay)
    assert point == expected and "failed on both" in note
    assert point != min(det.points)                   # the first saved point was a success
    fig = bl.plots.det_vs_bayes_heatmaps(df, det, bay)
    assert len(image_axes(fig)) == 8                  # 2 models × (x, x̃, R(x), R(x̃))
    titles = [sf._suptitle.get_text() for sf in fig.subfigs]
    rob = df[(df.model == "det") & (df.attack == "fgsm") & (df.rule == "epsilon")
             & (df.layer == 5) & (df.point == point)].iloc[0]
    assert f"LRP robustness {rob.lrp_robustness:.2f}" in titles[0]
    assert f"softmax robustness {rob.softmax_robustness:.2f}" in titles[0]
    assert "attack failed" in titles[0] and "hmc (100 samples)" in titles[1]
    assert f"test point {point}" in fig._suptitle.get_text()


def test_det_vs_bayes_falls_back_to_highest_softmax_robustness(tmp_path):
    path = write_fake_run(tmp_path / "run", seed=1, det_never_fails=True, attacks=("fgsm",),
                          rules=("epsilon",), n_points=20)
    run = bl.plots.load_run(path)
    det = run.heatmaps(HeatmapKey("det", "fgsm", "epsilon", 5, 1))
    bay = run.heatmaps(HeatmapKey("hmc", "fgsm", "epsilon", 5, 100))
    df = run.results
    rows = df[(df.model == "det") & (df.rule == "epsilon") & (df.layer == 5)
              & df.point.isin(det.points)]
    expected = int(rows.loc[rows.softmax_robustness.idxmax(), "point"])
    point, note = bl.plots.showcase_point(df, det, bay)
    assert point == expected and "failed on no saved point" in note
    fig = bl.plots.det_vs_bayes_heatmaps(df, det, bay)
    # the note is wrapped to the figure's width
    assert "highest softmax robustness" in " ".join(fig._suptitle.get_text().split())


# --------------------------------------------------------------------------- statistics figures


def test_paired_differences_against_manual_join(run):
    df = run.results
    diffs = bl.plots.paired_differences(df)
    assert len(diffs) == int((df.model != "det").sum())
    row = diffs[(diffs.model == "hmc") & (diffs.n_samples == 50) & (diffs.attack == "pgd")
                & (diffs.rule == "gamma") & (diffs.layer == 3)].iloc[4]
    pick = (df.attack == "pgd") & (df.rule == "gamma") & (df.layer == 3) & (df.point == row.point)
    det = df[pick & (df.model == "det")].lrp_robustness.item()
    bay = df[pick & (df.model == "hmc") & (df.n_samples == 50)].lrp_robustness.item()
    assert row["diff"] == pytest.approx(bay - det)


def test_difference_distributions_panels_and_medians(run):
    df = run.results
    fig = bl.plots.difference_distributions(df, attack="fgsm")
    axes = fig.get_axes()
    assert len(axes) == 3
    for ax in axes:
        assert any(np.allclose(line.get_xdata(), 0) for line in ax.get_lines())
    pick = (df.attack == "fgsm") & (df.rule == "epsilon") & (df.layer == 3)
    det = df[pick & (df.model == "det")].set_index("point").lrp_robustness
    adv = df[pick & (df.model == "adv")].set_index("point").lrp_robustness
    expected = np.median((adv - det.loc[adv.index]).to_numpy())
    assert f"adv − det: median {expected:+.2f}" in legend_texts(axes[1])
    assert len(legend_texts(axes[1])) == 4            # adv + hmc at 10, 50, 100 samples


def test_rule_boxplots_grid_and_stars(tmp_path):
    path = write_fake_run(tmp_path / "run", seed=2, datasets=("mnist", "fashion_mnist"),
                          attacks=("fgsm",), n_points=25, n_heatmap_points=2)
    df = bl.plots.load_run(path).results
    fig = bl.plots.rule_boxplots(df)
    axes = fig.get_axes()
    assert len(axes) == 2 * 3                          # datasets × rules
    # Independent check of the star above the hmc box, fashion_mnist row, γ column.
    pick = (df.dataset == "fashion_mnist") & (df.rule == "gamma") & (df.layer == 5)
    det = df[pick & (df.method == "det")].lrp_robustness.to_numpy()
    bay = df[pick & (df.method == "hmc") & (df.n_samples == 100)].lrp_robustness.to_numpy()
    p = st.mannwhitneyu(det, bay, alternative="less").pvalue
    texts = [t.get_text() for t in axes[4].texts]     # row 1, column 1
    assert bl.stats.stars(p) == texts[1]
    assert axes[0].get_xticklabels()[1].get_text() == "hmc_mnist\n(100 samples)"


def test_robustness_scatter_spearman_in_legend(run):
    df = run.results
    fig = bl.plots.robustness_scatter(df, attack="pgd")
    axes = fig.get_axes()
    assert len(axes) == 3
    rows = df[(df.attack == "pgd") & (df.rule == "epsilon") & (df.layer == 5)
              & (df.model == "hmc") & (df.n_samples == 100)]
    rho = st.spearmanr(rows.lrp_robustness, rows.softmax_robustness).statistic
    assert f"hmc (100 samples): ρ = {rho:.2f}" in legend_texts(axes[2])
    assert len(legend_texts(axes[2])) == 5            # det, adv, hmc × 3 sample counts


def test_figure_functions_need_a_slice_when_ambiguous(run):
    with pytest.raises(BayesLRPError, match="several values of attack"):
        bl.plots.robustness_scatter(run.results)


# --------------------------------------------------------------------------- files


def test_save_figure_writes_png_and_pdf(tmp_path, run):
    fig = bl.plots.robustness_scatter(run.results, attack="fgsm")
    files = bl.plots.save_figure(fig, tmp_path / "sub" / "scatter")
    assert [f.name for f in files] == ["scatter.png", "scatter.pdf"]
    assert files[0].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert files[1].read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["scatter.pdf",
                                                                   "scatter.png"]


def test_make_all_figures_writes_every_figure(made):
    path, files = made
    names = {f.name for f in files}
    stems = {n.rsplit(".", 1)[0] for n in names}
    for stem in stems:
        assert f"{stem}.png" in names and f"{stem}.pdf" in names
    prefixes = sorted({s.split("__")[0] for s in stems})
    assert prefixes == ["fig1_layer_heatmaps", "fig2_differences", "fig3_rule_boxplots",
                        "fig4_scatter", "fig6_det_vs_bayes", "robustness_distributions",
                        "topk_pixels"]
    # every figure of one explanation method is drawn once per explainer; Fig. 3 has them all
    for prefix in ("fig1_layer_heatmaps", "fig2_differences", "fig4_scatter",
                   "fig6_det_vs_bayes", "robustness_distributions", "topk_pixels"):
        drawn = sorted(s.rsplit("__", 1)[1] for s in stems if s.startswith(prefix))
        assert drawn == sorted(EXPLAINERS * (len(drawn) // len(EXPLAINERS))), prefix
        assert len(drawn) >= len(EXPLAINERS), prefix
    for f in files:
        assert f.parent == path / "figures" and f.stat().st_size > 1000
    index = json.loads((path / "figures" / "figures.json").read_text())
    assert {r["stem"] for r in index["figures"]} == stems and index["skipped"] == []
    assert all(r["caption"] and r["title"] for r in index["figures"])


def test_make_all_figures_skips_bayesian_figures_without_bayesian_model(tmp_path, caplog):
    path = write_fake_run(tmp_path / "run", methods=("det", "adv"), attacks=("fgsm",),
                          rules=("epsilon",), n_points=20, n_heatmap_points=2)
    with caplog.at_level("WARNING", logger="bayeslrp.plots"):
        files = bl.plots.make_all_figures(path)
    stems = {f.stem for f in files}
    assert not any(s.startswith("fig6") for s in stems)
    assert not any(s.startswith("topk_pixels") for s in stems)
    assert {s.split("__")[0] for s in stems} == {"fig1_layer_heatmaps", "fig2_differences",
                                                 "fig3_rule_boxplots", "fig4_scatter",
                                                 "robustness_distributions"}
    assert "no Bayesian model" in caplog.text
    index = bl.plots.read_figure_index(path)
    assert any("no Bayesian model" in s["reason"] for s in index["skipped"])


def test_make_all_figures_with_only_a_deterministic_model_and_no_heatmaps(tmp_path):
    path = write_fake_run(tmp_path / "run", methods=("det",), attacks=("fgsm",),
                          rules=("epsilon",), n_points=20, heatmap_rules=())
    files = bl.plots.make_all_figures(path)
    assert {f.stem.split("__")[0] for f in files} == {"fig4_scatter",
                                                      "robustness_distributions"}
    reasons = " ".join(s["reason"] for s in bl.plots.read_figure_index(path)["skipped"])
    assert "no heatmaps saved" in reasons and "no robustness differences" in reasons


def test_make_all_figures_on_an_empty_results_table(tmp_path):
    path = write_fake_run(tmp_path / "run", methods=("det",), attacks=("fgsm",),
                          rules=("epsilon",), n_points=10, heatmap_rules=())
    df = pd.read_parquet(path / "results.parquet")
    df.iloc[:0].to_parquet(path / "results.parquet", index=False)
    assert bl.plots.make_all_figures(path) == []
    assert bl.plots.read_figure_index(path)["skipped"][0]["reason"] == \
        "the results table has no rows"


def test_missing_or_empty_run_dir_is_one_line_error(tmp_path):
    for target in (tmp_path / "nope", tmp_path):
        with pytest.raises(BayesLRPError) as info:
            bl.plots.make_all_figures(target)
        assert "\n" not in str(info.value)
    (tmp_path / "config.yaml").write_text("a: 1\n")
    with pytest.raises(BayesLRPError, match="no results.parquet"):
        bl.plots.make_all_figures(tmp_path)


def test_results_with_a_missing_column_are_rejected(tmp_path):
    path = write_fake_run(tmp_path / "run", methods=("det",), attacks=("fgsm",),
                          rules=("epsilon",), n_points=10, heatmap_rules=())
    df = pd.read_parquet(path / "results.parquet").drop(columns=["nnz"])
    df.to_parquet(path / "results.parquet", index=False)
    with pytest.raises(BayesLRPError, match=re.escape("lacks the columns nnz")):
        bl.plots.load_run(path)


def test_own_sample_models_are_single_networks_in_figures():
    from bayeslrp.plots.frames import (OWN_SAMPLE, mark_own_samples, series_label,
                                       series_order)

    df = pd.DataFrame({"model": ["det", "hmc", "hmc.own3"], "method": ["det", "hmc", "hmc"],
                       "n_samples": [1, 100, 1], "own_sample": [-1, -1, 3]})
    marked = mark_own_samples(df)
    assert list(marked["method"]) == ["det", "hmc", OWN_SAMPLE]
    assert list(df["method"]) == ["det", "hmc", "hmc"]  # the input is not modified
    assert series_order(marked) == [("det", "det", 1), ("hmc", "hmc", 100),
                                    ("hmc.own3", OWN_SAMPLE, 1)]
    assert series_label("hmc.own3", OWN_SAMPLE, 1) == "hmc.own3 (own attack)"
    assert series_label("hmc", "hmc", 100) == "hmc (100 samples)"
    no_column = df.drop(columns="own_sample")
    assert mark_own_samples(no_column) is no_column


# --------------------------------------------------------------------------- baselines, k


OTHER = [("base_a", "det"), ("base_b", "det"), ("post", "vi")]


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    """Two deterministic models, neither named det, compared with a VI baseline."""
    return write_fake_run(tmp_path_factory.mktemp("other") / "run", seed=11, models=OTHER,
                          baseline="post", attacks=("fgsm",), rules=("epsilon", "gamma"),
                          n_samples=(10, 50), n_points=20, n_heatmap_points=2)


def test_figures_use_the_runs_explicit_baselines(other_run):
    run = bl.plots.load_run(other_run)
    assert run.baselines == {"base_a": "post", "base_b": "post"}
    diffs = bl.plots.paired_differences(run.results)
    assert set(diffs["baseline"]) == {"post"} and set(diffs["model"]) == {"base_a", "base_b"}
    stored = run.differences
    stored = stored[stored["k"] == 20]
    np.testing.assert_array_equal(diffs["diff"].to_numpy(), stored["diff"].to_numpy())
    files = bl.plots.make_all_figures(other_run)
    stems = {f.stem for f in files}
    assert {s.split("__")[0] for s in stems} == {"fig1_layer_heatmaps", "fig2_differences",
                                                 "fig3_rule_boxplots", "fig4_scatter",
                                                 "fig6_det_vs_bayes", "robustness_distributions",
                                                 "topk_pixels"}
    assert {s for s in stems if s.startswith("topk")} == {
        "topk_pixels__post__base_a__fgsm__epsilon", "topk_pixels__post__base_b__fgsm__epsilon"}
    assert {s for s in stems if s.startswith("fig6")} == {
        "fig6_det_vs_bayes__post__base_a__fgsm__epsilon",
        "fig6_det_vs_bayes__post__base_b__fgsm__epsilon"}
    fig = bl.plots.rule_boxplots(run.results)
    assert "post" in fig._suptitle.get_text()


def test_a_bare_table_needs_an_explicit_baseline_map(other_run):
    bare = pd.read_parquet(other_run / "results.parquet")
    with pytest.raises(BayesLRPError, match="no baseline map"):
        bl.plots.paired_differences(bare)
    diffs = bl.plots.paired_differences(bare, baselines={"base_a": "post"})
    assert set(diffs["model"]) == {"base_a"}


def test_without_comparisons_difference_figures_are_skipped(tmp_path):
    path = write_fake_run(tmp_path / "run", baseline=None, attacks=("fgsm",),
                          rules=("epsilon",), n_samples=(10,), n_points=15, n_heatmap_points=2)
    assert not (path / "differences.parquet").exists()
    files = bl.plots.make_all_figures(path)
    # absolute robustness (paper 001 Figs. 4-7) needs no comparison
    assert {f.stem.split("__")[0] for f in files} == {"fig1_layer_heatmaps", "fig4_scatter",
                                                      "robustness_distributions"}
    reasons = " ".join(s["reason"] for s in bl.plots.read_figure_index(path)["skipped"])
    assert "no robustness differences" in reasons and "compare.baseline" in reasons
    # an empty differences table (a compare stage without pairs) reads the same
    empty = bl.analysis.paired_differences(pd.read_parquet(path / "results.parquet"), {})
    empty.to_parquet(path / "differences.parquet")
    assert bl.plots.load_run(path).baselines == {}
    assert {f.stem.split("__")[0] for f in bl.plots.make_all_figures(path)} == {
        "fig1_layer_heatmaps", "fig4_scatter", "robustness_distributions"}


PIXEL_K = 100 * 100 / 784  # metrics.k_pixels: [100] on 28×28 images


def test_fractional_and_pixel_count_k_in_figures(tmp_path):
    from bayeslrp.plots.frames import k_label, metric_k, topk_label

    path = write_fake_run(tmp_path / "run", methods=("det", "hmc"), attacks=("fgsm",),
                          rules=("epsilon",), n_samples=(10,), n_points=15, n_heatmap_points=2,
                          ks=((12.5, 98, False), (PIXEL_K, 100, True)))
    run = bl.plots.load_run(path)
    df = run.results
    assert run.k_percents == (12.5,) and df["k"].dtype == np.float64
    assert metric_k(df) == 12.5 and str(metric_k(df)) == "12.5"
    assert metric_k(df, PIXEL_K) == PIXEL_K
    assert k_label(df, 12.5) == "top-12.5%" and k_label(df, PIXEL_K) == "Top-100"
    # without the config: a k with more than three decimals came from a pixel count
    assert topk_label(PIXEL_K, 100) == "Top-100" and topk_label(15.625, 10) == "top-15.625%"
    assert topk_label(15.625, 10, percents=[20.0]) == "Top-10"
    assert topk_label(20.0) == "top-20%"
    fig = bl.plots.difference_distributions(df, k=PIXEL_K)
    assert "Top-100" in fig._suptitle.get_text()
    fig = bl.plots.robustness_scatter(df)
    assert fig.get_axes()[0].get_ylabel() == "LRP robustness (top-12.5%)"
    bl.plots.make_all_figures(path)
    captions = " ".join(r["caption"] for r in bl.plots.read_figure_index(path)["figures"])
    assert "top-12.5% pixels" in captions
