"""``bl.robustness`` and ``bayeslrp score``: the pieces computed by hand, the bootstrap, and
one-line CLI errors."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

import bayeslrp as bl
from bayeslrp.cli import main
from bayeslrp.scoring import bootstrap_median


@pytest.fixture(scope="module")
def model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        xt, yt = bl.data.load("digits", "train")
        x, y = bl.data.load("digits", "test")
        nets = [bl.nets.build("fc2", seed=s, hidden=16, in_shape=(1, 8, 8)) for s in range(2)]
        members = [bl.train.deterministic(n, xt, yt, epochs=8, progress=False, seed=s)
                   .sample_module(0) for s, n in enumerate(nets)]
        yield bl.Ensemble.from_modules(members), x[:30], y[:30]
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("attack,explainer,params", [
    ("pgd", "integrated_gradients", {"steps": 8}), ("fgsm", "gradient", {}),
    ("fgsm", "epsilon", {})])
def test_robustness_equals_its_pieces(model, attack, explainer, params):
    ens, x, y = model
    r = bl.robustness(ens, x, y, explainer=explainer, attack=attack, k=20, seed=3,
                      explainer_params=params)
    x_adv = bl.attacks.run_attack(ens, x, y, attack, seed=3, n_samples=2)
    torch.testing.assert_close(r.x_adv, x_adv, atol=0, rtol=0)
    R, R_adv = bl.explain(ens, x, explainer, **params), bl.explain(ens, x_adv, explainer, **params)
    torch.testing.assert_close(r.overlap, bl.metrics.lrp_robustness(R, R_adv, k=20))
    p, p_adv = ens.predict_proba(x), ens.predict_proba(x_adv)
    torch.testing.assert_close(r.softmax_robustness,
                               1 - (p - p_adv).abs().max(-1).values, atol=1e-6, rtol=0)
    correct = p.argmax(-1) == y
    assert torch.equal(r.success, correct & (p_adv.argmax(-1) != y))
    s = r.summary
    assert s["correct_clean"] == int(correct.sum()) and s["n_images"] == 30
    assert s["overlap"]["median"] == pytest.approx(float(np.median(r.overlap.numpy())))
    assert s["overlap"]["low"] <= s["overlap"]["median"] <= s["overlap"]["high"]
    assert "median" in str(r) and len(r.to_frame()) == 30


def test_robustness_of_a_saliency_attack_on_the_same_explanation(model):
    ens, x, y = model
    E = bl.explainers.Explainer("integrated_gradients", {"steps": 4})
    r = bl.robustness(ens, x[:10], y[:10], explainer=E, attack="topk",
                      attack_params={"steps": 2})
    # the top-k attack keeps the predicted class and lowers the overlap of this explanation
    assert int(r.success.sum()) == 0
    assert float(r.overlap.mean()) < 1.0


def test_robustness_takes_a_plain_network_and_refuses_others(model):
    ens, x, y = model
    r = bl.robustness(ens.sample_module(0), x, y, explainer="gradient", attack="fgsm")
    assert r.summary["n_samples"] == 1
    with pytest.raises(bl.BayesLRPError, match="nets.build"):
        bl.robustness(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), x, y)
    with pytest.raises(bl.BayesLRPError, match="unknown explainer"):
        bl.robustness(ens, x, y, explainer="nope")


def test_bootstrap_median_interval():
    v = np.random.default_rng(1).normal(size=400)
    a, b = bootstrap_median(v, seed=5), bootstrap_median(v, seed=5)
    assert a == b and a["median"] == float(np.median(v))
    # the median's standard error is sqrt(pi/2)/sqrt(n) for a unit normal
    width = a["high"] - a["low"]
    expected = 2 * 1.96 * np.sqrt(np.pi / 2) / np.sqrt(v.size)
    assert 0.6 * expected < width < 1.6 * expected
    assert bootstrap_median(np.full(9, 0.5)) == {"median": 0.5, "low": 0.5, "high": 0.5}


def _call(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("score") / "det"
    code, _, err = _call(["train", "--dataset", "digits", "--arch", "fc2", "--hidden", "8",
                          "--method", "det", "--epochs", "2", "--out", str(path)])
    assert code == 0, err
    return path


def test_score_prints_the_summary(saved):
    code, out, err = _call(["score", "--model", str(saved), "--explainer", "grad_x_input",
                            "--attack", "fgsm", "--n-points", "20"])
    assert code == 0, err
    assert "grad_x_input under fgsm" in out and "95% CI" in out and "attack success" in out


@pytest.mark.parametrize("extra,words", [
    (["--explainer", "nope"], "--explainer must be one of"),
    (["--attack", "nope"], "--attack must be one of"),
    (["--explainer-options", "{bad"], "--explainer-options must be a JSON object"),
    (["--explainer", "integrated_gradients", "--explainer-options", '{"steps": 0}'],
     "--explainer-options"),
    (["--layer", "2"], "--layer 2 is not a learnable layer"),
    (["--k", "0"], "--k: Input should be greater than 0"),
])
def test_score_refuses_bad_values_in_one_line(saved, extra, words):
    code, _, err = _call(["score", "--model", str(saved), "--n-points", "20", *extra])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and words in lines[0], err
