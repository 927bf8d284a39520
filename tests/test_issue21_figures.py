"""Issue 21 item 3: paper 001's robustness distributions, the top-k pixel figure and the
original's Fig. 6 point choice — on constructed tables, a fake run and a tiny real run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import bayeslrp as bl
from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment import runner
from bayeslrp.plots import HeatmapKey, HeatmapSet
from report_fixture import write_fake_run

# --------------------------------------------------------------------------- point choice

#: Constructed outcomes per point: (det failed, bay failed, det robustness, bay robustness).
#: Point 10: both failed but Bayesian robustness 1 -> excluded although det is lowest.
#: Point 11: only det failed. Points 12 and 14 tie at the lowest det robustness among the
#: candidates -> the smaller index, 12. Point 13: candidate with a higher det robustness.
OUTCOMES = {10: (True, True, 0.05, 1.0), 11: (True, False, 0.01, 0.5),
            12: (True, True, 0.20, 0.9), 13: (True, True, 0.40, 0.7),
            14: (True, True, 0.20, 0.6), 15: (False, True, 0.00, 0.3)}


def _table(outcomes) -> pd.DataFrame:
    rows = []
    for point, (det_failed, bay_failed, det_rob, bay_rob) in outcomes.items():
        for model, method, n, failed, rob in (("det", "det", 1, det_failed, det_rob),
                                              ("hmc", "hmc", 100, bay_failed, bay_rob)):
            rows.append({"dataset": "mnist", "model": model, "method": method, "arch": "fc2",
                         "attack": "fgsm", "attack_mode": "", "rule": "epsilon", "layer": 5,
                         "n_samples": n, "k": 20.0, "point": point, "label": 3,
                         "pred_clean": 3, "pred_adv": 3 if failed else 4, "success": not failed,
                         "lrp_robustness": rob, "nnz": 50, "softmax_robustness": 0.5 + point / 100})
    return pd.DataFrame(rows)


def _maps(model, n, points) -> HeatmapSet:
    b = len(points)
    zeros = np.zeros((b, 4, 4))
    return HeatmapSet(HeatmapKey(model, "fgsm", "epsilon", 5, n), zeros, zeros,
                      np.zeros((b, 1, 4, 4)), np.zeros((b, 1, 4, 4)), np.asarray(points))


def test_original_point_choice_on_a_constructed_table():
    df = _table(OUTCOMES)
    det, bay = _maps("det", 1, sorted(OUTCOMES)), _maps("hmc", 100, sorted(OUTCOMES))
    point, note = bl.plots.showcase_point(df, det, bay, choice="original")
    assert point == 12
    assert "original's choice" in note and "0.20" in note and "3 such saved points" in note
    # the default keeps its rule: the first point where the attack failed on both
    assert bl.plots.showcase_point(df, det, bay)[0] == 10
    assert bl.plots.showcase_point(df, det, bay, choice="first_failed")[0] == 10


def test_original_point_choice_falls_back_and_says_so():
    outcomes = {p: o for p, o in OUTCOMES.items() if p in (10, 11, 15)}  # no candidate
    df = _table(outcomes)
    det, bay = _maps("det", 1, sorted(outcomes)), _maps("hmc", 100, sorted(outcomes))
    point, note = bl.plots.showcase_point(df, det, bay, choice="original")
    assert point == 10 and note.startswith("no saved point fits the original's choice")
    with pytest.raises(BayesLRPError, match="fig6_point"):
        bl.plots.showcase_point(df, det, bay, choice="best")


def test_figure_settings_read_the_config():
    text = "figures: {fig6_point: original}\nmetrics: {ties: index, topk_mode: signed}\n"
    assert bl.plots.figure_settings(text) == bl.plots.FigureSettings("original", "index",
                                                                     "signed")
    assert bl.plots.figure_settings(None) == bl.plots.FigureSettings()
    assert bl.plots.figure_settings("name: x\n---\nfigures: {fig6_point: original}\n") \
        == bl.plots.FigureSettings()  # the first document decides
    with pytest.raises(BayesLRPError, match=r"figures\.fig6_point \(run/config.yaml\)"):
        bl.plots.figure_settings("figures: {fig6_point: best}\n", "run/config.yaml")


def test_config_figures_section_and_compat():
    from bayeslrp.experiment.config import load_config

    base = {"data": {"dataset": "synthetic", "n_points": 20, "shape": [1, 8, 8]},
            "models": [{"name": "det", "method": "det", "arch": "fc2", "hidden": 8}],
            "attacks": [{"method": "fgsm"}]}
    cfg = load_config(base)
    assert (cfg.figures.fig6_point, cfg.figures.heatmap_points) == ("first_failed", 8)
    assert load_config({**base, "compat": "original"}).figures.fig6_point == "original"
    explicit = {**base, "compat": "original", "figures": {"fig6_point": "first_failed"}}
    assert load_config(explicit).figures.fig6_point == "first_failed"
    with pytest.raises(BayesLRPError, match="config error at figures.heatmap_points"):
        load_config({**base, "figures": {"heatmap_points": 0}})


# --------------------------------------------------------------------------- k choice


def test_distribution_ks(tmp_path):
    def ks_of(name, ks):
        run = bl.plots.load_run(write_fake_run(tmp_path / name, attacks=("fgsm",),
                                               rules=("epsilon",), n_points=10, ks=ks))
        return [float(k) for k in bl.plots.distribution_ks(run.results)]

    # paper 001's Top-10 and Top-30 win over a smaller or larger percentage
    pixel = [(100 * 10 / 784, 10, True), (20.0, 156, False), (100 * 30 / 784, 30, True)]
    assert ks_of("a", pixel) == pytest.approx([100 * 10 / 784, 100 * 30 / 784])
    # other k: the two smallest
    assert ks_of("b", [(50.0, 392, False), (12.5, 98, False), (20.0, 156, False)]) \
        == [12.5, 20.0]
    # one k: that one
    assert ks_of("c", None) == [20.0]


# --------------------------------------------------------------------------- fake run figures


def test_robustness_distributions_panels_and_medians(tmp_path):
    ks = [(100 * 10 / 784, 10, True), (100 * 30 / 784, 30, True)]
    run = bl.plots.load_run(write_fake_run(tmp_path / "run", attacks=("fgsm",),
                                           rules=("epsilon",), ks=ks, n_points=30))
    df = run.results
    fig = bl.plots.robustness_distributions(df)
    axes = np.array(fig.get_axes()).reshape(3, 2)             # layers × k
    assert [ax.get_title() for ax in axes[0]] == ["Top-10", "Top-30"]
    for row, layer in enumerate((1, 3, 5)):
        for col, (k, _, _) in enumerate(ks):
            texts = [t.get_text() for t in axes[row, col].get_legend().get_texts()]
            assert len(texts) == 5                            # det, adv, hmc × 3 sample counts
            rows = df[(df.layer == layer) & (df.k == k) & (df.model == "hmc")
                      & (df.n_samples == 50)]
            expected = np.median(rows.lrp_robustness)
            assert f"hmc (50 samples): median {expected:.2f}" in texts
            # each histogram is a share of images: its bars sum to 1
            heights, _ = np.histogram(rows.lrp_robustness, bins=np.linspace(0, 1, 21))
            assert heights.sum() == len(rows) == 30
    with pytest.raises(BayesLRPError, match="k="):
        bl.plots.robustness_distributions(df, ks=[33.0])


def test_robustness_selections_give_the_metric():
    gen = torch.Generator().manual_seed(4)
    R = torch.randn(6, 8, 8, generator=gen)
    R[0, :6] = 0.0                                           # a sparse clean heatmap
    R_adv = R + 0.7 * torch.randn(6, 8, 8, generator=gen)
    for mode in ("abs", "signed"):
        for ties in ("nonzero", "index"):
            a, b = bl.metrics.robustness_selections(R, R_adv, k=25, mode=mode, ties=ties)
            ratio = (a & b).flatten(1).sum(1).double() / a.flatten(1).sum(1).double()
            expected = bl.metrics.lrp_robustness(R.double(), R_adv.double(), k=25, mode=mode,
                                                 ties=ties)
            torch.testing.assert_close(ratio, expected, rtol=0, atol=1e-12)
            assert torch.equal(a, bl.metrics.topk_mask(R, k=25, mode=mode, ties=ties))


def test_topk_pixels_figure_draws_the_sets(tmp_path):
    run = bl.plots.load_run(write_fake_run(tmp_path / "run", attacks=("fgsm",),
                                           rules=("epsilon",), n_points=20))
    det = run.heatmaps(HeatmapKey("det", "fgsm", "epsilon", 5, 1))
    bay = run.heatmaps(HeatmapKey("hmc", "fgsm", "epsilon", 5, 100))
    point, _ = bl.plots.showcase_point(run.results, det, bay)
    fig = bl.plots.topk_pixels(run.results, det, bay)
    assert f"test point {point}" in fig._suptitle.get_text()
    for subfig, hm in zip(fig.subfigs, (det, bay)):
        j = hm.index_of(point)
        R = torch.from_numpy(hm.R_clean[j][None])
        R_adv = torch.from_numpy(hm.R_adv[j][None])
        rob = float(bl.metrics.lrp_robustness(R, R_adv, k=20)[0])
        a, b = (m[0].numpy() for m in bl.metrics.robustness_selections(R, R_adv, k=20))
        assert subfig._suptitle.get_text().endswith(
            f"{int((a & b).sum())} / {int(a.sum())} = {rob:.2f} (top-20%)")
        overlap = np.asarray(subfig.axes[6].images[0].get_array())
        np.testing.assert_array_equal(overlap, a.astype(int) + 2 * b.astype(int))
        # ties="nonzero": |A| = min(K, nnz(R(x))), K = floor(0.2 · 784) = 156
        assert int(a.sum()) == min(156, int(np.count_nonzero(hm.R_clean[j])))


# --------------------------------------------------------------------------- tiny real run

TINY = {
    "name": "tiny21c", "seed": 3,
    "data": {"dataset": "synthetic", "n_points": 20, "shape": [1, 8, 8]},
    "models": [
        {"name": "det", "method": "det", "arch": "fc2", "hidden": 8, "epochs": 6,
         "batch_size": 64},
        {"name": "vi", "method": "vi", "arch": "fc2", "hidden": 8, "epochs": 6, "lr": 0.01,
         "batch_size": 64, "n_samples": 4},
    ],
    "attacks": [{"method": "fgsm", "eps": 0.01}],  # weak: the attack fails on some points
    "explain": {"rules": ["epsilon"], "layers": "all", "n_samples": [2, 4]},
    "metrics": {"k": [20], "k_pixels": [10, 30]},
    "compare": {"baseline": "det"},
    "figures": {"fig6_point": "original", "heatmap_points": 20},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = runner.run_experiment(TINY, tmp_path_factory.mktemp("tiny21c") / "run").run_dir
    report = bl.report.write_report(path)
    return path, report.read_text(encoding="utf-8")


def test_tiny_run_figures(tiny):
    path, _ = tiny
    run = bl.plots.load_run(path)
    df = run.results
    det = run.heatmaps(HeatmapKey("det", "fgsm", "epsilon", 5, 1))
    bay = run.heatmaps(HeatmapKey("vi", "fgsm", "epsilon", 5, 4))
    assert len(det.points) == 20                              # figures.heatmap_points
    index = bl.plots.read_figure_index(path)
    stems = {r["stem"]: r for r in index["figures"]}
    dist = stems["robustness_distributions__synthetic__fc2__fgsm__epsilon"]
    assert "Top-10 and Top-30, paper 001's k" in dist["caption"]
    # The original's choice, computed here from the results table alone.
    last = df[(df.layer == 5) & (df.k == 20)]
    d = last[last.model == "det"].set_index("point")
    b = last[(last.model == "vi") & (last.n_samples == 4)].set_index("point")
    failed = lambda t: (t.pred_clean == t.label) & (t.pred_adv == t.label)  # noqa: E731
    ok = failed(d) & failed(b).reindex(d.index) & (b.lrp_robustness.reindex(d.index) != 1.0)
    fig6 = stems["fig6_det_vs_bayes__vi__det__fgsm__epsilon"]
    assert "figures.fig6_point: original" in fig6["caption"]
    assert ok.any()                                           # the rule has candidates
    lowest = d.lrp_robustness[ok].min()
    expected = int(min(p for p in d.index[ok] if d.lrp_robustness[p] == lowest))
    assert "original's choice" in fig6["caption"]
    assert expected != bl.plots.showcase_point(df, det, bay)[0]  # differs from the default
    assert f"test point {expected} " in fig6["caption"]
    topk = stems["topk_pixels__vi__det__fgsm__epsilon"]
    assert f"test point {expected} " in topk["caption"]
    # the top-k figure's robustness is the metric's on the same heatmaps
    fig = bl.plots.topk_pixels(df, det, bay, choice="original")
    for subfig, rows in zip(fig.subfigs, (d, b)):
        assert subfig._suptitle.get_text().endswith(
            f"= {rows.lrp_robustness[expected]:.2f} (top-20%)")


def test_tiny_run_report_sections_and_intervals(tiny):
    path, text = tiny
    assert "LRP robustness distributions per model and layer, two top-k sizes" in text
    assert "The top-k pixels before and after the attack" in text
    run = bl.plots.load_run(path)
    table = bl.report.summary_tables(path)["mann_whitney"]
    diffs = run.differences
    row = table[(table.layer == 3) & (table.k == "top-20%") & (table.model == "vi (4 samples)")]
    assert len(row) == 1
    mine = diffs[(diffs.model == "vi") & (diffs.n_samples == 4) & (diffs.layer == 3)
                 & (diffs.k == 20)].sort_values("point")
    median, low, high = bl.analysis.median_diff_interval(mine["diff"].to_numpy())
    assert row["median difference"].item() == pytest.approx(median, abs=1e-12)
    assert (row["ci low"].item(), row["ci high"].item()) == (low, high)
    assert row["diff 95% CI"].item() == f"[{low:+.3f}, {high:+.3f}]"
    assert f"[{low:+.3f}, {high:+.3f}]" in text
    headline = bl.report.headline.headline_table(run.tests, run.results, run.models,
                                                 run.differences)
    cell = headline.loc[headline.comparison.str.contains("vi − det"), "layer 3 95% CI"]
    assert cell.item() == f"[{low:+.3f}, {high:+.3f}]"


def test_intervals_of_the_adv_bayes_tests(tmp_path):
    run = bl.plots.load_run(write_fake_run(tmp_path / "run", attacks=("fgsm",),
                                           rules=("epsilon",), n_points=30))
    table = bl.report.mann_whitney_table(run.tests, run.results, differences=run.differences)
    row = table[(table.test == "adv < hmc (50 samples)") & (table.layer == 3)]
    d = run.differences
    bay = d[(d.model == "hmc") & (d.n_samples == 50) & (d.layer == 3)].set_index("point")
    adv = d[(d.model == "adv") & (d.layer == 3)].set_index("point")
    paired = (bay["diff"] - adv["diff"].reindex(bay.index)).sort_index().to_numpy()
    _, low, high = bl.analysis.median_diff_interval(paired)
    assert (row["ci low"].item(), row["ci high"].item()) == (low, high)
    # without differences.parquet the intervals are empty, not invented
    bare = bl.report.mann_whitney_table(run.tests, run.results)
    assert bare["ci low"].isna().all() and (bare["diff 95% CI"] == "").all()
