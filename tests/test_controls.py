"""Controls of the Bayesian-vs-deterministic comparison (issue 8): attack modes side by side,
one posterior sample, a posterior sample attacked with its own gradient, transfer attacks, the
``compat: original`` switch and the "What drives the difference" table.

One tiny grid (synthetic 8×8 data, fc2 with 8 hidden units, det + VI with 3 samples) runs
every control; the own-attack rows are checked against direct calls to ``bl.attacks``,
``bl.lrp`` and ``bl.metrics`` on ``ens.select([j])``.
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

import bayeslrp as bl
from bayeslrp.ensemble import Ensemble
from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment import expand_grid, load_config, runner, stages
from bayeslrp.experiment.config import COMPAT_ORIGINAL, dump_config
from bayeslrp.experiment.store import Store
from bayeslrp import analysis as compare_tables

OWN_J = 1
CONTROLS = {
    "name": "controls",
    "seed": 5,
    "data": {"dataset": "synthetic", "n_points": 20, "shape": [1, 8, 8]},
    "models": [
        {"name": "det", "method": "det", "arch": "fc2", "hidden": 8, "epochs": 2,
         "batch_size": 64},
        {"name": "vi", "method": "vi", "arch": "fc2", "hidden": 8, "epochs": 2, "lr": 0.01,
         "batch_size": 64, "n_samples": 3, "own_attack_sample": OWN_J,
         "init_std": 0.01, "lr_schedule": "cosine"},
    ],
    "attacks": [
        {"name": "fgsm", "method": "fgsm"},
        {"name": "fgsm_pred", "method": "fgsm", "mode": "predictive"},
        {"name": "fgsm_psa", "method": "fgsm", "mode": "per_sample_average"},
        {"name": "from_det", "method": "fgsm", "transfer_from": "det"},
        {"name": "from_vi", "method": "fgsm", "transfer_from": "vi"},
    ],
    "explain": {"rules": ["epsilon"], "layers": [1, 5], "n_samples": [1, 3]},
    "metrics": {"k": [20]},
    "compare": {"baseline": "det"},
}
MODES = {"fgsm": "expected_gradient", "fgsm_pred": "predictive",
         "fgsm_psa": "per_sample_average"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return runner.run_experiment(CONTROLS, tmp_path_factory.mktemp("controls") / "run")


@pytest.fixture(scope="module")
def results(run):
    return pd.read_parquet(run.results)


def _grid():
    return expand_grid(load_config(CONTROLS))


def _model(run, label) -> Ensemble:
    key = _grid().by_label(label).key
    return Ensemble.load(Store(run.run_dir).get_path(key) / stages.MODEL_DIR)


def _images(run, label):
    return Store(run.run_dir).load_tensors(_grid().by_label(label).key, stages.IMAGES_FILE)["x"]


def _data(run):
    return Store(run.run_dir).load_tensors(_grid().by_label("data").key, stages.DATA_FILE)


# --------------------------------------------------------------------------- grid


def test_grid_has_the_control_tasks():
    g = _grid()
    labels = {t.label for t in g.tasks}
    assert "select[vi.own1]" in labels
    assert g.by_label("select[vi.own1]").deps == {"model": g.by_label("train[vi]").key}
    # a transfer attack is computed once, on its source model, and reused by the others
    assert "attack[det,from_det]" in labels and "attack[vi,from_det]" not in labels
    assert "attack[vi,from_vi]" in labels and "attack[det,from_vi]" not in labels
    assert g.by_label("explain[vi,from_det,epsilon,L5]").deps["images"] == \
        g.by_label("attack[det,from_det]").key
    # the transfer attack's images are those of the direct attack with the same settings
    assert g.by_label("attack[det,from_det]").key == g.by_label("attack[det,fgsm]").key
    assert g.by_label("metrics[vi,from_det,epsilon,L5]").coords["source_model"] == "det"
    assert ["vi.own1", "det"] in g.by_label("compare").params["pairs"]


def test_controls_leave_other_keys_alone():
    plain = copy.deepcopy(CONTROLS)
    plain["models"][1].pop("own_attack_sample")
    plain["attacks"] = plain["attacks"][:3]
    a, b = _grid(), expand_grid(load_config(plain))
    keys_a = {t.label: t.key for t in a.tasks}
    for t in b.tasks:
        if t.stage != "compare":
            assert keys_a[t.label] == t.key, t.label


# --------------------------------------------------------------------------- results


def test_every_control_has_its_columns_and_rows(results):
    df = results
    assert list(df.columns) == list(stages.RESULT_COLUMNS)
    for column in ("attack_mode", "n_samples", "source_model", "own_sample"):
        assert column in df.columns
    assert df["own_sample"].dtype.kind == "i"
    assert set(df["model"]) == {"det", "vi", "vi.own1"}
    # attack modes side by side, filled for the BNN, empty for det and the own-sample net
    vi = df[df["model"] == "vi"]
    for attack, mode in MODES.items():
        assert set(vi.loc[vi["attack"] == attack, "attack_mode"]) == {mode}
    direct = df[df["source_model"] == df["model"]]
    assert set(direct.loc[direct["model"].isin(["det", "vi.own1"]), "attack_mode"]) == {""}
    # n_samples = 1 (one posterior sample, no averaging) next to n = 3
    assert set(vi["n_samples"]) == {1, 3}
    # own-attack rows: S = 1, the sample index, the parent's method
    own = df[df["model"] == "vi.own1"]
    assert set(own["n_samples"]) == {1} and set(own["own_sample"]) == {OWN_J}
    assert set(own["method"]) == {"vi"}
    assert set(df.loc[df["model"] != "vi.own1", "own_sample"]) == {-1}
    # transfer rows name the attacked model
    src = df.set_index(["model", "attack"])["source_model"]
    assert set(src.loc[("vi", "from_det")]) == {"det"}
    assert set(src.loc[("det", "from_vi")]) == {"vi"}
    assert set(src.loc[("det", "from_det")]) == {"det"}
    assert set(src.loc[("vi", "fgsm")]) == {"vi"}
    assert set(src.loc[("vi.own1", "from_vi")]) == {"vi"}
    # the transfer attack's mode is that of the attack on its source model
    assert set(df.loc[(df["model"] == "det") & (df["attack"] == "from_vi"),
                      "attack_mode"]) == {"expected_gradient"}


def test_n_samples_one_is_the_first_sample(run, results):
    vi = _model(run, "train[vi]")
    d = _data(run)
    rows = results[(results["model"] == "vi") & (results["attack"] == "fgsm")
                   & (results["n_samples"] == 1) & (results["layer"] == 5)]
    first = vi.select([0])
    assert rows["pred_clean"].tolist() == first.predict_proba(d["x"]).argmax(1).tolist()


def test_own_attack_sample_equals_a_det_run_on_its_weights(run, results):
    """The own-sample rows equal a direct det pipeline on ``ens.select([j])``."""
    vi = _model(run, "train[vi]")
    net = vi.select([OWN_J])
    stored = _model(run, "select[vi.own1]")
    assert stored.n_samples == 1
    for name, value in net.params.items():
        assert torch.equal(stored.params[name], value), name
    d = _data(run)
    x, y = d["x"], d["y"]
    x_adv = bl.attacks.fgsm(net, x, y, eps=0.2)
    torch.testing.assert_close(_images(run, "attack[vi.own1,fgsm]"), x_adv, rtol=0, atol=0)
    for layer in (1, 5):
        R = bl.lrp.explain(net, x, rule="epsilon", layer=layer, epsilon=0.1)
        R_adv = bl.lrp.explain(net, x_adv, rule="epsilon", layer=layer, epsilon=0.1)
        expected = bl.metrics.lrp_robustness_details(R, R_adv, k=20, mode="abs",
                                                     ties="nonzero").robustness
        p, p_adv = net.predict_proba(x).double(), net.predict_proba(x_adv).double()
        rows = results[(results["model"] == "vi.own1") & (results["attack"] == "fgsm")
                       & (results["layer"] == layer)]
        assert rows["point"].tolist() == d["points"].tolist()
        np.testing.assert_allclose(rows["lrp_robustness"], expected.double().numpy(),
                                   rtol=0, atol=1e-12)
        assert rows["pred_clean"].tolist() == p.argmax(1).tolist()
        assert rows["pred_adv"].tolist() == p_adv.argmax(1).tolist()
        np.testing.assert_allclose(rows["softmax_robustness"],
                                   (1 - (p - p_adv).abs().amax(1)).numpy(), atol=1e-6)


def test_vi_training_options_reach_the_trainer(run):
    meta = _model(run, "train[vi]").meta
    assert (meta["init_std"], meta["lr_schedule"]) == (0.01, "cosine")


def test_models_json_lists_the_own_sample_model(run):
    import json

    models = {m["name"]: m for m in json.loads((run.run_dir / "models.json").read_text())}
    own = models["vi.own1"]
    assert (own["method"], own["n_samples"], own["own_sample"]) == ("vi", 1, OWN_J)
    x, y = bl.data.load("synthetic", "test", shape=(1, 8, 8), n_classes=10,
                        seed=stages.SYNTHETIC_DATA_SEED)
    net = _model(run, "train[vi]").select([OWN_J])
    assert own["test_accuracy"] == pytest.approx(net.accuracy(x, y))
    assert own["diagnostics"]["parent_test_accuracy"] == models["vi"]["test_accuracy"]


def test_transfer_rows_explain_the_source_models_images(run, results):
    det = _model(run, "train[det]")
    x_adv = _images(run, "attack[vi,from_vi]")
    d = _data(run)
    R = bl.lrp.explain(det, d["x"], rule="epsilon", layer=5, epsilon=0.1)
    R_adv = bl.lrp.explain(det, x_adv, rule="epsilon", layer=5, epsilon=0.1)
    expected = bl.metrics.lrp_robustness_details(R, R_adv, k=20).robustness
    rows = results[(results["model"] == "det") & (results["attack"] == "from_vi")
                   & (results["layer"] == 5)]
    np.testing.assert_allclose(rows["lrp_robustness"], expected.double().numpy(), atol=1e-12)
    # x̃ crafted against det: det's rows are those of the direct attack
    a = results[(results["model"] == "det") & (results["attack"] == "from_det")]
    b = results[(results["model"] == "det") & (results["attack"] == "fgsm")]
    np.testing.assert_array_equal(a["lrp_robustness"].to_numpy(),
                                  b["lrp_robustness"].to_numpy())


def test_differences_cover_the_own_sample_model(run, results):
    diffs = pd.read_parquet(run.run_dir / "differences.parquet")
    assert {"vi", "vi.own1"} <= set(diffs["model"])
    assert set(diffs["baseline"]) == {"det"}
    from bayeslrp.report import mann_whitney_table

    table = mann_whitney_table(pd.read_parquet(run.run_dir / "tests.parquet"), results)
    assert set(table.loc[table["model"].str.startswith("vi.own1"), "comparison"]) == {"Own−Det"}
    assert set(table.loc[table["model"].str.startswith("vi ("), "comparison"]) == {"Bay−Det"}


# --------------------------------------------------------------------------- report


def test_drivers_table(run, results):
    from bayeslrp.report import difference_drivers_table, report_tables
    from bayeslrp.stats import mann_whitney, wilcoxon_signed_rank

    diffs = pd.read_parquet(run.run_dir / "differences.parquet")
    table = difference_drivers_table(results, {"synthetic": 64},
                                     baselines=bl.analysis.baseline_map(diffs))
    for column in ("condition", "model", "attack", "attack_mode", "source_model", "n_samples",
                   "median robustness", "median diff vs baseline", "wilcoxon p",
                   "mann-whitney p", "share nnz < K"):
        assert column in table.columns
    conditions = set(table["condition"])
    assert {"Det", "Bay1", "Bay3", "Own sample 1", "Bay3 on x̃(det)", "Det on x̃(vi)"} <= \
        conditions
    # one cell against an independent computation
    row = table[(table["condition"] == "Bay3") & (table["attack"] == "fgsm_pred")
                & (table["layer"] == 1)].iloc[0]
    sel = results[(results["attack"] == "fgsm_pred") & (results["layer"] == 1)]
    bay = sel[(sel["model"] == "vi") & (sel["n_samples"] == 3)].set_index("point")
    det = sel[sel["model"] == "det"].set_index("point").loc[bay.index]
    assert row["median robustness"] == pytest.approx(bay["lrp_robustness"].median())
    assert row["median diff vs baseline"] == pytest.approx(
        (bay["lrp_robustness"] - det["lrp_robustness"]).median())
    w = wilcoxon_signed_rank(det["lrp_robustness"], bay["lrp_robustness"], "less")
    mw = mann_whitney(det["lrp_robustness"], bay["lrp_robustness"], "less")
    assert row["wilcoxon p"] == pytest.approx(w.pvalue, nan_ok=True)
    assert row["mann-whitney p"] == pytest.approx(mw.pvalue, nan_ok=True)
    _, low, high = bl.analysis.median_diff_interval(
        (bay["lrp_robustness"] - det["lrp_robustness"]).to_numpy())
    assert row["diff 95% CI"] == f"[{low:+.3f}, {high:+.3f}]"
    assert low <= row["median diff vs baseline"] <= high
    K = bl.metrics.topk_count(64, 20)
    assert row["share nnz < K"] == pytest.approx(float((bay["nnz"] < K).mean()))
    det_row = table[(table["condition"] == "Det") & (table["attack"] == "fgsm_pred")
                    & (table["layer"] == 1)].iloc[0]
    assert np.isnan(det_row["wilcoxon p"])  # the reference itself is not tested
    assert "drivers" in report_tables(run.run_dir)


def test_report_has_the_section(run):
    from bayeslrp.report import write_report

    html = write_report(run.run_dir, figures=False).read_text()
    assert "What drives the difference" in html and "Own sample 1" in html


# --------------------------------------------------------------------------- validation


def _cfg(**changes):
    cfg = copy.deepcopy(CONTROLS)
    for key, value in changes.items():
        cfg[key] = value
    return cfg


def test_control_validation_errors():
    cfg = copy.deepcopy(CONTROLS)
    cfg["models"][1]["own_attack_sample"] = 3
    with pytest.raises(BayesLRPError, match=r"models\[1\]\.own_attack_sample\[0\]: sample 3"):
        load_config(cfg)
    cfg = copy.deepcopy(CONTROLS)
    cfg["attacks"][3]["transfer_from"] = "nope"
    with pytest.raises(BayesLRPError, match=r"attacks\[3\]\.transfer_from: no model named"):
        load_config(cfg)
    cfg = copy.deepcopy(CONTROLS)
    cfg["models"].append({**cfg["models"][0], "name": "vi.own1"})
    with pytest.raises(BayesLRPError, match="already a model's name"):
        load_config(cfg)
    cfg = copy.deepcopy(CONTROLS)
    cfg["models"][1]["own_attack_sample"] = [0, 2]
    c = load_config(cfg)
    assert c.own_models() == [("vi.own0", "vi", 0), ("vi.own2", "vi", 2)]
    assert load_config(dump_config(c)) == c


def test_transfer_may_come_from_an_own_sample_model():
    cfg = copy.deepcopy(CONTROLS)
    cfg["attacks"] = [{"name": "from_own", "method": "fgsm", "transfer_from": "vi.own1"}]
    g = expand_grid(load_config(cfg))
    assert g.by_label("explain[det,from_own,epsilon,L5]").deps["images"] == \
        g.by_label("attack[vi.own1,from_own]").key


# --------------------------------------------------------------------------- compat


COMPAT_BASE = {
    "data": {"dataset": "mnist", "n_points": 100},
    "models": [
        {"name": "det", "method": "det", "arch": "conv", "hidden": 16},
        {"name": "cvi", "method": "vi", "arch": "conv", "hidden": 16, "n_samples": 100},
        {"name": "fdet", "method": "det", "arch": "fc2", "hidden": 16},
        {"name": "hmc", "method": "hmc", "arch": "fc2", "hidden": 16, "n_samples": 100},
    ],
    "attacks": [{"method": "fgsm"}, {"method": "pgd"}, {"method": "topk"}],
}


def test_compat_original_expands_to_the_listed_settings():
    spec = load_config(COMPAT_BASE)
    orig = load_config({**COMPAT_BASE, "compat": "original"})
    assert spec.compat == "spec" and orig.compat == "original"
    assert [a.mode for a in orig.attacks[:2]] == ["per_sample_average"] * 2
    assert [a.mode for a in spec.attacks[:2]] == ["expected_gradient"] * 2
    assert not hasattr(orig.attacks[2], "mode")
    assert (orig.metrics.topk_mode, orig.metrics.ties) == ("signed", "index")
    assert (orig.explain.output_seed, orig.explain.bayes) == ("one", "per_sample_argmax")
    assert (orig.model("hmc").mode, orig.model("hmc").block_size) == ("blocks", 4000)
    assert orig.model("det").channels == orig.model("cvi").channels == 16
    assert orig.model("fdet").channels is None
    assert (spec.model("hmc").mode, spec.model("det").channels) == ("full", 32)
    # every listed setting differs from the spec default
    assert set(COMPAT_ORIGINAL) == {"attacks.mode", "metrics.topk_mode", "metrics.ties",
                                    "explain.output_seed", "explain.inner_seed",
                                    "explain.bayes", "models.mode", "models.channels",
                                    "figures.fig6_point"}
    assert (orig.figures.fig6_point, spec.figures.fig6_point) == ("original", "first_failed")
    assert (orig.explain.inner_seed, spec.explain.inner_seed) == ("original", "max")
    # the resolved config shows what ran and loads back to the same config
    text = dump_config(orig)
    assert "per_sample_average" in text and "topk_mode: signed" in text
    assert load_config(text) == orig
    # everything outside the list is untouched
    assert orig.explain.n_samples == spec.explain.n_samples
    assert orig.model("cvi").lr == spec.model("cvi").lr


def test_compat_explicit_values_win():
    cfg = copy.deepcopy(COMPAT_BASE)
    cfg["compat"] = "original"
    cfg["metrics"] = {"ties": "nonzero"}
    cfg["explain"] = {"bayes": "mean"}
    cfg["attacks"][0]["mode"] = "expected_gradient"
    cfg["models"][0]["channels"] = 32
    cfg["models"][3].update(mode="subset", subset=500)
    c = load_config(cfg)
    assert (c.metrics.ties, c.metrics.topk_mode) == ("nonzero", "signed")
    assert (c.explain.bayes, c.explain.output_seed) == ("mean", "one")
    assert [a.mode for a in c.attacks[:2]] == ["expected_gradient", "per_sample_average"]
    assert (c.model("det").channels, c.model("cvi").channels) == (32, 16)
    assert c.model("hmc").mode == "subset"
    with pytest.raises(BayesLRPError, match="compat"):
        load_config({**COMPAT_BASE, "compat": "paper"})


def test_compat_changes_keys_like_the_explicit_settings():
    """compat only fills values: the grid equals that of the same values written out."""
    explicit = copy.deepcopy(COMPAT_BASE)
    for a in explicit["attacks"][:2]:
        a["mode"] = "per_sample_average"
    explicit["metrics"] = {"topk_mode": "signed", "ties": "index"}
    explicit["explain"] = {"output_seed": "one", "inner_seed": "original",
                           "bayes": "per_sample_argmax"}
    explicit["models"][0]["channels"] = explicit["models"][1]["channels"] = 16
    explicit["models"][3]["mode"] = "blocks"
    a = expand_grid(load_config({**COMPAT_BASE, "compat": "original"}))
    b = expand_grid(load_config(explicit))
    assert [t.key for t in a.tasks] == [t.key for t in b.tasks]


def test_adv_vs_bayes_tests_leave_out_own_sample_models():
    rng = np.random.default_rng(0)
    rows = []
    for model, method in (("adv", "adv"), ("vi", "vi"), ("vi.own0", "vi")):
        for point in range(12):
            rob, base = float(rng.random()), float(rng.random())
            rows.append({"dataset": "synthetic", "model": model, "method": method,
                         "baseline": "det", "attack": "fgsm", "rule": "epsilon", "layer": 5,
                         "n_samples": 1, "k": 20, "point": point, "lrp_robustness": rob,
                         "baseline_robustness": base, "diff": rob - base})
    tests = compare_tables.mann_whitney_tests(pd.DataFrame(rows), {"vi.own0"})
    assert set(tests.loc[tests["test"] == "adv<bayes", "model"]) == {"vi"}
    assert set(tests.loc[tests["test"] == "baseline<model", "model"]) == {"adv", "vi", "vi.own0"}
    both = compare_tables.mann_whitney_tests(pd.DataFrame(rows))
    assert set(both.loc[both["test"] == "adv<bayes", "model"]) == {"vi", "vi.own0"}
