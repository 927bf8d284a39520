"""bayeslrp.lrp against the independent matrix-form oracle (tests/lrp_reference.py).

Random weights with biases, float64, atol 1e-5 (plus a 1e-9 relative term for the large inner
relevances a random ResNet produces).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import bayeslrp as bl
from lrp_reference import double_ensemble, randomize_batchnorm, reference_lrp
from lrp_reference import one_torch_thread  # noqa: F401  (autouse fixture)

RULES = [("epsilon", {}), ("gamma", {}), ("alphabeta", {}),
         ("alphabeta", {"alpha": 2.0, "beta": 1.0}), ("epsilon", {"epsilon": 0.01}),
         ("gamma", {"gamma": 0.5})]
RULE_IDS = ["eps", "gamma", "ab10", "ab21", "eps0.01", "gamma0.5"]


def _check(model, modules, x, rule, layer, kw, **opts):
    got = bl.lrp.explain(model, x, rule=rule, layer=layer, reduce=None, **kw, **opts)
    assert got.dtype == torch.float64
    ref = reference_lrp(modules, x.numpy(), rule, layer, **kw, **opts)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5, rtol=1e-9)
    return got, ref


def _models(arch, n, gen, **kw):
    nets = [randomize_batchnorm(bl.nets.build(arch, seed=s, **kw), gen).double() for s in range(n)]
    return double_ensemble(nets), nets


@pytest.fixture(scope="module")
def fc2():
    gen = torch.Generator().manual_seed(1)
    ens, nets = _models("fc2", 3, gen, hidden=7, in_shape=(1, 5, 5))
    return ens, nets, torch.rand(4, 1, 5, 5, generator=gen, dtype=torch.float64)


@pytest.fixture(scope="module")
def conv():
    gen = torch.Generator().manual_seed(2)
    ens, nets = _models("conv", 3, gen, channels=3, hidden=4, in_shape=(1, 20, 20))
    return ens, nets, torch.rand(3, 1, 20, 20, generator=gen, dtype=torch.float64)


@pytest.fixture(scope="module")
def resnet():
    gen = torch.Generator().manual_seed(3)
    ens, nets = _models("resnet20", 2, gen, in_shape=(3, 4, 4))
    return ens, nets, torch.rand(2, 3, 4, 4, generator=gen, dtype=torch.float64)


def _geometry_net():
    """Strides, paddings, dilations, rectangular kernels, a padded max-pool, Softplus, AvgPool."""
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1),                  # 10 -> 5 (output_padding 1)
        nn.ReLU(),
        nn.Conv2d(3, 4, 3, padding=2, dilation=2),                # 5 -> 5
        nn.BatchNorm2d(4),
        nn.LeakyReLU(0.1),
        nn.MaxPool2d(3, stride=2, padding=1),                     # 5 -> 3
        nn.Conv2d(4, 3, (3, 2), stride=(2, 1), padding=(1, 0)),   # 3x3 -> 2x2
        nn.Softplus(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(3, 5),
    )
    randomize_batchnorm(net, torch.Generator().manual_seed(5))
    return net.double().eval()


@pytest.mark.parametrize("rule,kw", RULES, ids=RULE_IDS)
@pytest.mark.parametrize("layer", [1, 3, 5])
def test_fc2_matches_reference(fc2, rule, kw, layer):
    ens, nets, x = fc2
    _check(ens, nets, x, rule, layer, kw)


@pytest.mark.parametrize("rule,kw", RULES, ids=RULE_IDS)
@pytest.mark.parametrize("layer", [0, 3, 7])
def test_conv_matches_reference(conv, rule, kw, layer):
    ens, nets, x = conv
    _check(ens, nets, x, rule, layer, kw)


@pytest.mark.parametrize("rule,kw", RULES[:4], ids=RULE_IDS[:4])
@pytest.mark.parametrize("layer", [1, 4, 7, 10, 15])
def test_resnet20_matches_reference(resnet, rule, kw, layer):
    ens, nets, x = resnet
    got, _ = _check(ens, nets, x, rule, layer, kw)
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("rule,kw", RULES[:4], ids=RULE_IDS[:4])
@pytest.mark.parametrize("layer", [0, 2, 6, 10])
def test_conv_geometry_matches_reference(rule, kw, layer):
    net = _geometry_net()
    x = torch.rand(3, 2, 10, 10, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    got, _ = _check(net, [net], x, rule, layer, kw)
    assert got.abs().sum() > 0


@pytest.mark.parametrize("opts", [
    {"seed": "one"},
    {"target_mode": "per_sample_argmax"},
    {"target": [1, 0, 9, 3]},
    {"surrogate_beta": 2.0},
    {"seed": "one", "surrogate_beta": 10.0, "target_mode": "per_sample_argmax"},
], ids=["seed-one", "per-sample", "target", "surrogate", "combined"])
@pytest.mark.parametrize("rule,kw", RULES[:3], ids=RULE_IDS[:3])
def test_output_options_match_reference(fc2, rule, kw, opts):
    ens, nets, x = fc2
    _check(ens, nets, x, rule, None, kw, **opts)


@pytest.mark.parametrize("opts", [
    {"inner": "all"}, {"seed": "one"}, {"inner": "all", "seed": "one"}, {"surrogate_beta": 3.0},
], ids=["all", "one", "all-one", "surrogate"])
@pytest.mark.parametrize("layer", [0, 3])
def test_conv_inner_options_match_reference(conv, layer, opts):
    ens, nets, x = conv
    _check(ens, nets, x, "epsilon", layer, {}, **opts)


def test_inner_explicit_target_matches_reference(fc2, conv):
    ens, nets, x = fc2
    _check(ens, nets, x, "gamma", 3, {}, target=[0, 6, 2, 2])
    ens, nets, x = conv
    _check(ens, nets, x, "epsilon", 3, {}, target=[3, 0, 1])
