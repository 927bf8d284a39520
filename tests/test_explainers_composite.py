"""LRP composites against the float64 matrix oracle (tests/lrp_reference.py) applying the
per-layer rules; random weights with biases, atol 1e-5 / rtol 1e-9 as the LRP oracle tests."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bayeslrp as bl
from lrp_reference import double_ensemble, reference_lrp
from lrp_reference import one_torch_thread  # noqa: F401  (autouse fixture)

EPS = ("epsilon", {"epsilon": 0.1})
ZPLUS = ("zplus", {})
AB21 = ("alphabeta", {"alpha": 2.0, "beta": 1.0})
GAMMA = ("gamma", {"gamma": 0.25})
BOX = ("zbox", {"low": 0.0, "high": 1.0})


@pytest.fixture(scope="module")
def models():
    gen = torch.Generator().manual_seed(7)
    fc = [bl.nets.build("fc2", seed=s, hidden=7, in_shape=(1, 5, 5)).double() for s in range(2)]
    cv = [bl.nets.build("conv", seed=s, channels=3, hidden=4, in_shape=(1, 16, 16)).double()
          for s in range(2)]
    return {"fc2": (double_ensemble(fc), fc,
                    torch.rand(3, 1, 5, 5, generator=gen, dtype=torch.float64)),
            "conv": (double_ensemble(cv), cv,
                     torch.rand(2, 1, 16, 16, generator=gen, dtype=torch.float64))}


# per architecture, the rule of each affine layer in forward order (fc2: 3 Linear;
# conv: Conv, Conv, Linear)
CASES = {
    ("epsilon_plus", "fc2"): [EPS, EPS, EPS],
    ("epsilon_plus", "conv"): [ZPLUS, ZPLUS, EPS],
    ("epsilon_alpha2_beta1", "fc2"): [EPS, EPS, EPS],
    ("epsilon_alpha2_beta1", "conv"): [AB21, AB21, EPS],
    ("epsilon_gamma_box", "fc2"): [BOX, EPS, EPS],
    ("epsilon_gamma_box", "conv"): [BOX, GAMMA, EPS],
}


@pytest.mark.parametrize("name,arch", list(CASES))
def test_presets_match_matrix_oracle(models, name, arch):
    ens, nets, x = models[arch]
    for layer in [None, *bl.nets.learnable_layers(ens.module)[:-1]]:
        got = bl.explain(ens, x, name, layer=layer, reduce=None)
        ref = reference_lrp(nets, x.numpy(), CASES[name, arch], layer)
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-5, rtol=1e-9)


def test_user_map_with_layer_index_and_bounds(models):
    ens, nets, x = models["conv"]
    x = 0.2 + 0.6 * x  # inside the bounds given to z^B
    rules = {"input": {"rule": "zbox"}, "3": {"rule": "gamma", "gamma": 0.5},
             "default": {"rule": "epsilon", "epsilon": 0.01}}
    got = bl.explain(ens, x, "composite", reduce=None, rules=rules, bounds=(0.2, 0.8))
    ref = reference_lrp(nets, x.numpy(), [("zbox", {"low": 0.2, "high": 0.8}),
                                          ("gamma", {"gamma": 0.5}),
                                          ("epsilon", {"epsilon": 0.01})], None)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5, rtol=1e-9)
    # bl.explain also takes the map itself as the method
    again = bl.explain(ens, x, rules, reduce=None, bounds=(0.2, 0.8))
    torch.testing.assert_close(again, got, atol=0, rtol=0)


def test_composite_of_one_rule_is_that_rule(models):
    ens, _, x = models["conv"]
    for rule in ("epsilon", "gamma", "alphabeta"):
        torch.testing.assert_close(
            bl.explain(ens, x, "composite", rules={"default": rule}, gamma=0.1),
            bl.lrp.explain(ens, x, rule=rule), atol=1e-12, rtol=1e-10)


def test_zbox_conserves_relevance_without_biases(models):
    """z^B passes all relevance down (no bias, no ε absorption): Σ_p R_p = R of layer 0."""
    from lrp_reference import zero_biases

    _, nets, x = models["fc2"]
    bf = double_ensemble([zero_biases(n) for n in nets])
    top = bl.explain(bf, x, "composite", rules={"input": "zbox", "default": "epsilon"},
                     epsilon=0.0, stabilizer=0.0, reduce=None)
    logits = torch.stack([n(x) for n in nets])
    cls = logits.softmax(-1).mean(0).argmax(-1)
    expected = logits.gather(2, cls.view(1, -1, 1).expand(2, -1, 1)).squeeze(2)
    torch.testing.assert_close(top.flatten(2).sum(-1), expected, atol=1e-9, rtol=1e-7)


def test_composite_errors(models):
    ens, _, x = models["conv"]
    with pytest.raises(bl.BayesLRPError, match="not a learnable layer"):
        bl.explain(ens, x, "composite", rules={"5": "epsilon", "default": "epsilon"})
    with pytest.raises(bl.BayesLRPError, match="unknown rule"):
        bl.explain(ens, x, "composite", rules={"default": "nope"})
    with pytest.raises(bl.BayesLRPError, match="default"):
        bl.explain(ens, x, "composite", rules={"conv": "epsilon"})
    with pytest.raises(bl.BayesLRPError, match="raw pixels"):
        bl.explain(ens, x, "composite", rules={"conv": "zbox", "default": "epsilon"})
    res = double_ensemble([bl.nets.build("resnet20", seed=0, in_shape=(3, 4, 4)).double()])
    with pytest.raises(bl.BayesLRPError, match="raw pixels"):
        bl.explain(res, torch.rand(1, 3, 4, 4, dtype=torch.float64), "epsilon_gamma_box")
