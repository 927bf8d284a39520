"""Posterior diagnostics on hand-built ensembles (hand-computed values)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from bayeslrp import Ensemble
from bayeslrp.mcmc.diagnostics import ess
from bayeslrp.posterior_diagnostics import (posterior_diagnostics, prediction_disagreement,
                                            predictive_ess, repeated_share, weight_distances)


def _ens(weights):
    """An ensemble of a bias-free Linear(2 -> 1) with the given weight rows [S, 2]."""
    net = nn.Linear(2, 1, bias=False)
    w = torch.tensor(weights, dtype=torch.float32).view(-1, 1, 2)
    return Ensemble(None, {"weight": w}, module=net)


def test_disagreement_by_hand():
    labels = torch.tensor([[0, 1, 2, 0],
                           [0, 1, 1, 1],
                           [0, 2, 1, 1]])
    # pairs (0,1): differ on images 2,3 -> 2/4; (0,2): 1,2,3 -> 3/4; (1,2): 1 -> 1/4
    assert prediction_disagreement(labels) == pytest.approx((2 + 3 + 1) / 12)
    assert prediction_disagreement(labels[:1]) is None
    assert prediction_disagreement(torch.zeros(5, 7, dtype=torch.int64)) == 0.0


def test_weight_distances_by_hand():
    ens = _ens([[3.0, 4.0], [0.0, 0.0], [3.0, 0.0]])  # norms 5, 0, 3
    # pair distances: |(3,4)-(0,0)| = 5, |(3,4)-(3,0)| = 4, |(0,0)-(3,0)| = 3
    out = weight_distances(ens, reference={"weight": torch.tensor([[0.0, 4.0]])})
    assert out["weight_norm"] == pytest.approx(8 / 3)
    assert out["between_samples"] == pytest.approx(4.0 / (8 / 3))
    # to (0, 4): 3, 4, 5 -> mean 4 / ‖ref‖ 4 = 1
    assert out["to_reference"] == pytest.approx(1.0)
    assert weight_distances(_ens([[1.0, 2.0]]))["between_samples"] is None


def test_weight_distances_ignore_buffers():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    states = []
    for k in range(2):
        m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        m.load_state_dict(net.state_dict())
        m[1].running_mean += 100.0 * k  # differs only in a buffer
        states.append(m)
    ens = Ensemble.from_modules(states)
    assert weight_distances(ens)["between_samples"] == pytest.approx(0.0, abs=1e-6)


def test_repeated_share_counts_rejections_within_chains():
    # one chain: a a b b b c -> repeats at draws 1, 3, 4 of 5 with a predecessor
    rows = [[1, 0], [1, 0], [2, 0], [2, 0], [2, 0], [3, 0]]
    assert repeated_share(_ens(rows)) == pytest.approx(3 / 5)
    # two chains interleaved: chain 0 = a a b, chain 1 = c d d -> 2 repeats of 4
    inter = [[1, 0], [5, 0], [1, 0], [6, 0], [2, 0], [6, 0]]
    assert repeated_share(_ens(inter), chains=2) == pytest.approx(2 / 4)
    # read as one chain, neighbours never repeat
    assert repeated_share(_ens(inter), chains=1) == 0.0
    assert repeated_share(_ens([[1, 0]])) is None


def test_predictive_ess_is_the_chain_ess_of_the_true_class_probability():
    g = torch.Generator().manual_seed(0)
    s, n = 40, 5
    probs = torch.rand(s, n, 3, generator=g).softmax(-1)
    y = torch.tensor([0, 1, 2, 0, 1])
    probs[:, 4] = torch.tensor([0.2, 0.3, 0.5])  # constant image: no ESS
    out = predictive_ess(probs, y, chains=2)
    p = probs[:, torch.arange(n), y]  # [S, N]
    chains = torch.stack([p[0::2], p[1::2]]).numpy()  # interleaved -> [2, 20, N]
    want = np.asarray(ess(chains[:, :, :4]))
    assert out["n_images"] == 4 and out["n_draws"] == 40
    assert out["median"] == pytest.approx(float(np.median(want)))
    assert out["min"] == pytest.approx(float(want.min()))
    assert predictive_ess(probs[:6], y, chains=2) is None  # 3 draws per chain


def test_bundle_for_a_model_without_chains():
    ens = _ens([[1.0, 0.0], [0.0, 1.0]])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    logits = ens.logits(x.view(3, 2))  # [2, 3, 1]; build a 2-class prob from it
    probs = torch.cat([logits, -logits], -1).softmax(-1)
    out = posterior_diagnostics(ens, probs, torch.tensor([0, 0, 0]))
    labels = probs.argmax(-1)
    assert out["prediction_disagreement"] == pytest.approx(
        float((labels[0] != labels[1]).float().mean()))
    assert out["weight_distance_between"] == pytest.approx(math.sqrt(2))
    assert out["weight_distance_to_reference"] is None and out["reference"] is None
    assert out["predictive_ess"] is None and out["repeated_share"] == 0.0


def test_chunked_accumulation_equals_one_pass(monkeypatch):
    import bayeslrp.posterior_diagnostics as pd_mod

    g = torch.Generator().manual_seed(3)
    ens = Ensemble.from_modules([nn.Linear(5, 3) for _ in range(4)])
    ens.params = {k: torch.randn(v.shape, generator=g) for k, v in ens.params.items()}
    ens.params["bias"][2] = ens.params["bias"][1]
    ens.params["weight"][2] = ens.params["weight"][1]
    ref = {k: v[0] + 0.1 for k, v in ens.params.items()}
    whole = weight_distances(ens, ref), repeated_share(ens)
    monkeypatch.setattr(pd_mod, "_CHUNK_ELEMENTS", 8)  # 2 columns per chunk
    chunked = weight_distances(ens, ref), repeated_share(ens)
    for key in ("between_samples", "to_reference", "weight_norm"):
        assert chunked[0][key] == pytest.approx(whole[0][key], rel=1e-12)
    assert chunked[1] == whole[1] == pytest.approx(1 / 3)
    # by hand, from the flattened weights
    w = torch.cat([ens.params["weight"].reshape(4, -1), ens.params["bias"]], 1).double()
    r = torch.cat([ref["weight"].reshape(1, -1), ref["bias"].reshape(1, -1)], 1).double()
    pair = torch.stack([(w[i] - w[j]).norm() for i in range(4) for j in range(i + 1, 4)]).mean()
    assert whole[0]["between_samples"] == pytest.approx(float(pair / w.norm(dim=1).mean()))
    assert whole[0]["to_reference"] == pytest.approx(float(((w - r).norm(dim=1) / r.norm()).mean()))


def test_vi_reference_uses_the_means_and_the_point_estimates():
    from bayeslrp.evaluation import reference_weights

    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ens = Ensemble.from_modules([net, net])
    mu = {f"mu.{k}": v[0] + 1.0 for k, v in ens.params.items() if k.startswith("0.")}
    ens.extras = mu
    ref, kind = reference_weights(ens)
    assert kind == "vi_mean"
    assert torch.equal(ref["0.weight"], ens.params["0.weight"][0] + 1.0)
    assert torch.equal(ref["1.weight"], ens.params["1.weight"][0])  # BN: no mu, point estimate
    init = Ensemble.from_module(net)
    ref, kind = reference_weights(ens, init)
    assert kind == "init_model" and torch.equal(ref["0.weight"], init.params["0.weight"][0])
    assert reference_weights(Ensemble.from_module(net)) == (None, None)
