"""Stage helpers against direct computations: cumulative predictions and explanations."""
from __future__ import annotations

import pytest
import torch

import bayeslrp as bl
from bayeslrp.explainers import Explainer
from bayeslrp.ensemble import Ensemble
from bayeslrp.experiment import stages


def _random_ensemble(n: int, hidden: int = 6) -> Ensemble:
    """Untrained nets with different seeds and weights scaled up so that their predicted
    classes depend on the input and disagree between samples."""
    nets = []
    for s in range(n):
        net = bl.nets.build("fc2", seed=s, hidden=hidden, in_shape=(1, 6, 6))
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(3.0)
        nets.append(net)
    return Ensemble.from_modules(nets)


@pytest.fixture(scope="module")
def images():
    return torch.rand(40, 1, 6, 6, generator=torch.Generator().manual_seed(1))


def test_cumulative_probs_equal_predict_proba(images):
    ens = _random_ensemble(7)
    n_list = [1, 3, 7]
    probs = stages.cumulative_probs(ens, images, n_list)
    assert probs.shape == (3, 40, 10) and probs.dtype == torch.float64
    for i, n in enumerate(n_list):
        torch.testing.assert_close(probs[i].float(), ens.predict_proba(images, n_samples=n),
                                   atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("layer", [1, 3, 5])
@pytest.mark.parametrize("rule,args", [("epsilon", {"epsilon": 0.1}), ("gamma", {"gamma": 0.1}),
                                       ("alphabeta", {"alpha": 1.0, "beta": 0.0})])
def test_explain_cumulative_equals_explain_with_first_n(images, layer, rule, args):
    ens = _random_ensemble(6)
    n_list = [2, 4, 6]
    explainer = Explainer(rule, args, layer=layer, seed="logit", inner="max")
    mean, std = stages.explain_cumulative(ens, images, explainer, n_list)
    assert mean.shape == std.shape == (3, 40, 6, 6)
    for i, n in enumerate(n_list):
        m, s = bl.lrp.explain(ens, images, rule=rule, layer=layer, n_samples=n,
                              reduce="mean_std", **args)
        torch.testing.assert_close(mean[i], m, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(std[i], s, atol=1e-5, rtol=1e-5)


def test_output_layer_classes_really_differ_between_sample_counts(images):
    """The re-explanation path of explain_cumulative is exercised by the test above."""
    ens = _random_ensemble(6)
    classes = stages.cumulative_probs(ens, images, [2, 4, 6]).argmax(-1)
    assert (classes[0] != classes[-1]).any() and (classes[1] != classes[-1]).any()


def test_explain_cumulative_chunks_images(images, monkeypatch):
    ens = _random_ensemble(4)
    explainer = Explainer("epsilon", {"epsilon": 0.1}, layer=5)
    whole = stages.explain_cumulative(ens, images, explainer, [1, 4])
    from bayeslrp.experiment.stages import explain as explain_stage

    monkeypatch.setattr(explain_stage, "EXPLAIN_CHUNK_BYTES", 4 * 4 * 36 * 3)  # 3 per chunk
    chunked = stages.explain_cumulative(ens, images, explainer, [1, 4])
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_per_sample_argmax_mode_explains_each_samples_class(images):
    ens = _random_ensemble(5)
    mean, _ = stages.explain_cumulative(
        ens, images, Explainer("epsilon", {"epsilon": 0.1}, layer=5,
                               target_mode="per_sample_argmax"), [3, 5])
    direct = bl.lrp.explain(ens, images, rule="epsilon", layer=5, n_samples=3,
                            target_mode="per_sample_argmax", epsilon=0.1)
    torch.testing.assert_close(mean[0], direct, atol=1e-6, rtol=1e-5)


def test_stage_seed_streams_are_distinct_and_stable():
    assert stages.stage_seed(0, "points") == stages.stage_seed(0, "points")
    assert len({stages.stage_seed(0, t) for t in ("points", "init", "pgd-start")}) == 3
    assert stages.stage_seed(0, "points") != stages.stage_seed(1, "points")
    assert 0 <= stages.stage_seed(2**62, "x") < 2**63


def test_avg_prediction_is_refused_at_load_time():
    from bayeslrp.experiment.config import ExplainSpec

    with pytest.raises(ValueError, match="avg_prediction"):
        ExplainSpec(bayes="avg_prediction")
