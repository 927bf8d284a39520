"""The HTML report and the summary tables of a fake run directory."""
from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess

import numpy as np
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
    assert n_figures == 10
    assert len(decode_images(text)) == n_figures
    assert text.count("<img") == n_figures


def test_report_contains_every_table(report):
    path, _, text = report
    for section in ("overview", "models", "attacks", "figures", "robustness", "tests",
                    "spearman", "sparsity", "config", "manifest"):
        assert f'<section id="{section}">' in text
    # models.json: accuracy and HMC diagnostics; manifest: versions and timings.
    assert "diag: acceptance" in text and "diag: step_size" in text
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
    assert len(widths) == text.count("<img") == 10
    assert all(w > 100 for w in widths), widths

    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", out.as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (3000, 1200)
    # Not blank: text and figures leave plenty of non-white pixels.
    assert (pixels < 200).mean() > 0.01
