"""The HTML report and the summary tables of a fake run directory."""
from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats as st

import bayeslrp as bl
from bayeslrp.errors import BayesLRPError
from report_fixture import write_fake_run

IMG_SRC = re.compile(r'<img\b[^>]*\bsrc="([^"]*)"')


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = write_fake_run(tmp_path_factory.mktemp("report") / "run", seed=7)
    out = bl.report.write_report(path)
    return path, out, out.read_text(encoding="utf-8")


def decode_images(text):
    images = []
    for src in IMG_SRC.findall(text):
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        image = Image.open(io.BytesIO(data))
        image.load()
        assert image.format == "PNG" and min(image.size) > 50
        images.append(image)
    return images


def test_report_is_self_contained(report):
    path, out, text = report
    assert out == path / "report.html"
    assert text.startswith("<!DOCTYPE html>")
    lowered = text.lower()
    for external in ('src="http', "src='http", 'href="http', "<link", "<script", "@import",
                     "url("):
        assert external not in lowered, external
    n_figures = len(bl.plots.read_figure_index(path)["figures"])
    # 3 explainers × 2 attacks for Fig. 2, Fig. 4 and the robustness distributions, 2 of
    # Fig. 3, and Figs. 1, 6 and the top-k pixels for the one explainer with saved heatmaps
    # (ε) × 2 attacks
    assert n_figures == 26
    assert len(decode_images(text)) == n_figures
    assert text.count("<img") == n_figures


def test_report_contains_every_table(report):
    path, _, text = report
    for section in ("overview", "models", "attacks", "figures", "robustness", "tests",
                    "spearman", "sparsity", "config", "manifest"):
        assert f'<section id="{section}">' in text
    # models.json: accuracy and HMC diagnostics; manifest: versions and timings.
    assert "diag: acceptance" in text and "diag: step_<wbr>size" in text  # wraps at _
    assert "torch 2.13.0" in text and "<td>train</td>" in text
    manifest = text[text.index('<section id="manifest">'):]
    assert manifest.count("<tr>") <= 30  # runs table + per-stage timings, not one row a task
    assert "[{" not in manifest  # no Python repr of the runs list
    assert "Bay−Det" in text and "Adv−Det" in text and "Bay−Adv" in text
    assert "det &lt; hmc (100 samples)" in text
    # Text is escaped: the config's hostile note appears only as text.
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; friends" in text
    assert "<script>" not in text


def test_summary_tables_against_independent_computation(report):
    path, _, _ = report
    tables = bl.report.summary_tables(path)
    assert set(tables) == {"accuracy", "attack_success", "median_robustness", "mann_whitney"}
    df = bl.plots.load_run(path).results

    acc = tables["accuracy"].set_index("model")
    assert list(acc.index) == ["det", "adv", "hmc"]
    assert acc.loc["hmc", "diag: divergences"] == 0

    success = tables["attack_success"]
    row = success[(success.model == "det") & (success.attack == "pgd")].iloc[0]
    one = df[(df.model == "det") & (df.attack == "pgd") & (df.rule == "epsilon") & (df.layer == 1)]
    correct = one.pred_clean == one.label
    assert row["success rate"] == pytest.approx(((one.pred_adv != one.label) & correct).sum()
                                                / correct.sum())
    assert row["points"] == len(one)

    med = tables["median_robustness"]
    row = med[(med.model == "hmc") & (med.n_samples == 50) & (med.attack == "fgsm")
              & (med.rule == "alphabeta")].iloc[0]
    sel = df[(df.model == "hmc") & (df.n_samples == 50) & (df.attack == "fgsm")
             & (df.rule == "alphabeta") & (df.layer == 3)]
    assert row["layer 3"] == pytest.approx(np.median(sel.lrp_robustness))

    mw = tables["mann_whitney"]
    row = mw[(mw.attack == "fgsm") & (mw.rule == "epsilon") & (mw.layer == 5)
             & (mw.test == "det < adv")].iloc[0]
    pick = (df.attack == "fgsm") & (df.rule == "epsilon") & (df.layer == 5)
    det = df[pick & (df.model == "det")].lrp_robustness
    adv = df[pick & (df.model == "adv")].lrp_robustness
    p = st.mannwhitneyu(det, adv, alternative="less").pvalue
    assert row.p == pytest.approx(p) and row.stars == bl.stats.stars(p)
    paper = mw[(mw.attack == "fgsm") & (mw.rule == "epsilon") & (mw.layer == 5)
               & (mw.test == "adv < hmc (100 samples)")].iloc[0]
    bay = df[pick & (df.model == "hmc") & (df.n_samples == 100)].lrp_robustness
    assert paper.p == pytest.approx(st.mannwhitneyu(adv, bay, alternative="less").pvalue)


def test_spearman_and_sparsity_tables(report):
    path, _, _ = report
    tables = bl.report.report_tables(path)
    df = bl.plots.load_run(path).results
    sp = tables["spearman"]
    row = sp[(sp.model == "hmc") & (sp.n_samples == 10) & (sp.attack == "pgd")
             & (sp.rule == "gamma") & (sp.layer == 1)].iloc[0]
    sel = df[(df.model == "hmc") & (df.n_samples == 10) & (df.attack == "pgd")
             & (df.rule == "gamma") & (df.layer == 1)]
    assert row.rho == pytest.approx(st.spearmanr(sel.lrp_robustness,
                                                 sel.softmax_robustness).statistic)
    nz = tables["nnz"]
    row = nz[(nz.model == "det") & (nz.rule == "epsilon") & (nz.layer == 1)].iloc[0]
    sel = df[(df.model == "det") & (df.rule == "epsilon") & (df.layer == 1)]
    assert row.P == 784 and row.K == 156
    assert row["share nnz < K"] == pytest.approx((sel.nnz < 156).mean())
    assert 0 < row["share nnz < K"] < 1


def test_report_without_bayesian_model_or_models_json(tmp_path):
    path = write_fake_run(tmp_path / "run", methods=("det", "adv"), attacks=("fgsm",),
                          rules=("epsilon",), n_points=15, n_heatmap_points=2)
    (path / "models.json").unlink()
    (path / "manifest.json").unlink()
    text = bl.report.write_report(path).read_text(encoding="utf-8")
    assert "Figures not drawn" in text and "no Bayesian model" in text
    assert "manifest.json not found" in text
    tables = bl.report.summary_tables(path)
    assert list(tables["accuracy"]["model"]) == ["det", "adv"]
    assert tables["accuracy"]["test accuracy"].isna().all()


def test_report_on_missing_run_dir(tmp_path):
    with pytest.raises(BayesLRPError, match="does not exist"):
        bl.report.write_report(tmp_path / "missing")
    with pytest.raises(BayesLRPError, match="is empty"):
        bl.report.summary_tables(tmp_path)


_CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_CHECK = ("<script>window.addEventListener('load', function () {"
          " var out = Array.prototype.map.call(document.images, function (img) {"
          " return (img.complete && img.naturalWidth > 0) ? img.naturalWidth : 0; });"
          " var pre = document.createElement('pre'); pre.id = 'imgcheck';"
          " pre.textContent = 'IMG' + 'CHECK[' + out.join(',') + ']';"
          " document.body.appendChild(pre); });</script>")


def _chromium(tmp_path, *args):
    cmd = [_CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(_CHROMIUM is None, reason="chromium is not installed "
                    "(apt-get install -y chromium); `make test` installs it")
def test_report_figures_load_in_headless_chromium(report, tmp_path):
    path, out, text = report
    copy = tmp_path / "check.html"
    copy.write_text(text.replace("</body>", _CHECK + "</body>"), encoding="utf-8")
    done = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", copy.as_uri())
    found = re.search(r"IMGCHECK\[([0-9,]*)\]", done.stdout)
    assert found, f"no result from chromium: {done.stderr[-500:]}"
    widths = [int(w) for w in found.group(1).split(",") if w]
    assert len(widths) == text.count("<img") == 26
    assert all(w > 100 for w in widths), widths

    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", out.as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (3000, 1200)
    # Not blank: text and figures leave plenty of non-white pixels.
    assert (pixels < 200).mean() > 0.01


# --------------------------------------------------------------------------- baselines, k

OTHER = [("base_a", "det"), ("base_b", "det"), ("post", "vi")]


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    """Two deterministic models, neither named det, compared with a VI baseline."""
    return write_fake_run(tmp_path_factory.mktemp("other") / "run", seed=12, models=OTHER,
                          baseline="post", attacks=("fgsm", "pgd"), rules=("epsilon",),
                          n_samples=(10, 50), n_points=20, n_heatmap_points=2)


def _printed_tests(out: str) -> list[str]:
    section = out[out.index("Mann-Whitney tests"):]
    return [line for line in section.splitlines() if " < " in line]


def test_printed_tests_are_tests_parquet(other_run, capsys):
    from bayeslrp.cli.run_cmd import _fmt, print_summary

    tests = pd.read_parquet(other_run / "tests.parquet")
    table = bl.report.summary_tables(other_run)["mann_whitney"]
    assert len(table) == len(tests) > 0
    key = ["attack", "layer", "test"]
    want = tests.assign(test=[f"{b} < {m}" for b, m in zip(tests["baseline"], tests["model"])])
    got = table.sort_values(key).reset_index(drop=True)
    want = want.sort_values(key).reset_index(drop=True)
    np.testing.assert_array_equal(got[["U", "p", "median difference", "n"]].to_numpy(float),
                                  want[["u", "pvalue", "median_diff", "n_images"]]
                                  .to_numpy(float))
    assert list(got["stars"]) == list(want["stars"])
    assert set(table["comparison"]) == {"Det−Bay"}
    print_summary(other_run)
    lines = _printed_tests(capsys.readouterr().out)
    assert len(lines) == len(tests)
    for line, (_, row) in zip(lines, table.iterrows()):  # printed in the table's order
        cells = [c.strip() for c in line.split("│")]
        assert row["test"] in cells and _fmt(float(row["p"])) in cells
        assert row["stars"] in cells and _fmt(float(row["U"])) in cells


def test_report_with_a_bayesian_baseline(other_run):
    text = bl.report.write_report(other_run).read_text(encoding="utf-8")
    assert text.index('<section id="headline">') < text.index('<section id="overview">')
    headline = text[text.index('<section id="headline">'):text.index('<section id="overview">')]
    assert "Det−Bay: base_a − post" in headline and "Det−Bay: base_b − post" in headline
    assert "baseline test accuracy" in headline
    assert "Fig. 6 — base_a vs post heatmaps under fgsm" in text
    tables = bl.report.report_tables(other_run)
    drivers = tables["drivers"]
    assert set(drivers["baseline"]) == {"post"}
    row = drivers[(drivers["model"] == "base_a") & (drivers["attack"] == "pgd")
                  & (drivers["layer"] == 3)].iloc[0]
    df = bl.plots.load_run(other_run).results
    pick = (df.attack == "pgd") & (df.layer == 3)
    post = df[pick & (df.model == "post") & (df.n_samples == 50)].set_index("point")
    mine = df[pick & (df.model == "base_a")].set_index("point")
    assert row["median diff vs baseline"] == pytest.approx(
        float(np.median(mine.lrp_robustness - post.lrp_robustness.loc[mine.index])))


def test_headline_cells_are_the_tests_at_the_largest_sample_count(report):
    path, _, _ = report
    run = bl.plots.load_run(path)
    head = bl.report.headline.headline_table(run.tests, run.results, run.models)
    row = head[(head["attack"] == "pgd") & (head["rule"] == "gamma")
               & head["comparison"].str.startswith("Bay−Det: hmc − det")].iloc[0]
    assert row["comparison"].endswith("(100 samples)")
    t = run.tests
    t = t[(t["test"] == "baseline<model") & (t["model"] == "hmc") & (t["n_samples"] == 100)
          & (t["attack"] == "pgd") & (t["rule"] == "gamma") & (t["layer"] == 3)].iloc[0]
    assert row["layer 3"] == f"{t['median_diff']:+.3f} {t['stars']}"
    acc = {m["name"]: m["test_accuracy"] for m in run.models}
    assert row["test accuracy"] == f"{acc['hmc']:.4f}"
    assert row["baseline test accuracy"] == f"{acc['det']:.4f}"
    assert set(head["comparison"].str.split(":").str[0]) == {"Adv−Det", "Bay−Det"}


def test_report_without_comparisons(tmp_path, capsys):
    from bayeslrp.cli.run_cmd import print_summary

    path = write_fake_run(tmp_path / "run", baseline=None, attacks=("fgsm",),
                          rules=("epsilon",), n_samples=(10,), n_points=15, n_heatmap_points=2)
    text = bl.report.write_report(path).read_text(encoding="utf-8")
    assert "No comparisons: the config has no compare.baseline" in text
    assert bl.report.summary_tables(path)["mann_whitney"].empty
    drivers = bl.report.report_tables(path)["drivers"]
    assert drivers["median diff vs baseline"].isna().all()
    print_summary(path)
    assert "Mann-Whitney tests (one-sided, tests.parquet): nothing to show" in \
        capsys.readouterr().out


def test_tables_with_fractional_and_pixel_count_k(tmp_path):
    k_pixel = 100 * 100 / 784
    path = write_fake_run(tmp_path / "run", methods=("det", "hmc"), attacks=("fgsm",),
                          rules=("epsilon",), n_samples=(10,), n_points=15, n_heatmap_points=2,
                          ks=((12.5, 98, False), (k_pixel, 100, True)))
    run = bl.plots.load_run(path)
    df = run.results
    med = bl.report.median_robustness_table(df, k=k_pixel)
    assert set(med["k"]) == {"Top-100"}
    assert set(bl.report.median_robustness_table(df)["k"]) == {"top-12.5%"}
    nnz = bl.report.nnz_table(df, {"mnist": 784})
    assert dict(zip(nnz["k"], nnz["K"])) == {"top-12.5%": 98, "Top-100": 100}
    row = nnz[(nnz["k"] == "Top-100") & (nnz["model"] == "det") & (nnz["layer"] == 1)].iloc[0]
    sel = df[(df.model == "det") & (df.layer == 1) & (df.k == k_pixel)]
    assert row["share nnz < K"] == pytest.approx((sel.nnz < 100).mean())
    mw = bl.report.summary_tables(path)["mann_whitney"]
    assert set(mw["k"]) == {"top-12.5%", "Top-100"} and len(mw) == len(run.tests)
    text = bl.report.write_report(path).read_text(encoding="utf-8")
    assert "top-12.5%" in text and "Top-100" in text


def test_manifest_tables_are_short():
    from bayeslrp.report.manifest_tables import MAX_RUNS, runs_table, stage_timings_table

    stages = [{"label": f"explain[{i}]", "stage": "explain", "computed": i % 3 != 0,
               "seconds": 0.5} for i in range(60)]
    run = {"run": 0, "status": "finished", "started": "2026-12-02T09:25:06+00:00",
           "finished": "2026-12-02T09:25:26+00:00", "stages": stages,
           "packages": {"bayeslrp": "0.1.0"}, "machine": {"cpu_count": 2}}
    manifest = {"runs": [dict(run, run=i) for i in range(25)]}
    runs = runs_table(manifest)
    assert len(runs) == MAX_RUNS and list(runs["run"]) == list(range(15, 25))
    assert runs["time"].iloc[0] == "2026-12-02 09:25:06 – 09:25:26 UTC"
    timings = stage_timings_table(manifest)
    assert list(timings["stage"]) == ["explain", "total"]
    assert timings.iloc[0][["computed", "reused"]].tolist() == [40, 20]
    assert timings.iloc[0]["seconds"] == pytest.approx(30.0)


def test_report_groups_each_figure_kind_by_explainer(report):
    path, _, text = report
    records = bl.plots.read_figure_index(path)["figures"]
    fig2 = [r for r in records if r["stem"].startswith("fig2")]
    assert {r["explainer"] for r in fig2} == {"epsilon", "gamma", "alphabeta"}
    assert all(r["explainer"] is None for r in records if r["stem"].startswith("fig3"))
    section = text[text.index("Fig. 2 — distributions"):text.index("Fig. 3 — robustness")]
    heads = [section.index(f"<h4>{t}</h4>") for t in ("ε rule", "γ rule", "αβ rule")]
    assert heads == sorted(heads)
    # each explainer's gallery holds exactly its own figures
    for title, rule in (("ε rule", "epsilon"), ("γ rule", "gamma"), ("αβ rule", "alphabeta")):
        start = section.index(f"<h4>{title}</h4>")
        end = min([i for i in (section.find("<h4>", start + 1),) if i > 0] or [len(section)])
        assert section[start:end].count("<img") == sum(r["explainer"] == rule for r in fig2)
