"""User errors of bayeslrp.lrp raise BayesLRPError with a message that says what to do."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import bayeslrp as bl
from lrp_reference import one_torch_thread  # noqa: F401  (autouse fixture)
from bayeslrp import BayesLRPError


@pytest.fixture
def ens():
    nets = [bl.nets.build("fc2", hidden=6, in_shape=(1, 4, 4), seed=s) for s in range(2)]
    return bl.Ensemble.from_modules(nets)


X = torch.rand(3, 1, 4, 4)


def test_unsupported_module_is_named():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.Softmax(-1), nn.Linear(5, 3))
    with pytest.raises(BayesLRPError, match="Softmax at position 2 for LRP; supported: .*GELU"):
        bl.lrp.explain(net, X)
    # a module after the cut of an inner layer does not matter
    net2 = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.ReLU(), nn.Linear(5, 3),
                         nn.Softmax(-1))
    assert bl.lrp.explain(net2, X, layer=1).shape == (3, 4, 4)


def test_unsupported_modules_inside_nets():
    grouped = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(BayesLRPError, match="groups"):
        bl.lrp.explain(grouped, torch.rand(1, 2, 4, 4))
    no_stats = nn.Sequential(nn.BatchNorm2d(1, track_running_stats=False), nn.Conv2d(1, 2, 3),
                             nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)).eval()
    with pytest.raises(BayesLRPError, match="BatchNorm without running statistics"):
        bl.lrp.explain(no_stats, X)
    with pytest.raises(BayesLRPError, match="nn.Module"):
        bl.lrp.explain(object(), X)


def test_bad_layer_lists_the_learnable_layers(ens):
    with pytest.raises(BayesLRPError, match=r"layer=2 .*\[1, 3, 5\]"):
        bl.lrp.explain(ens, X, layer=2)


def test_layer_without_following_activation_is_seeded_at_its_output():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.Linear(5, 3))
    cut = bl.lrp.resolve_layer(net, 1)
    assert (cut.stop, cut.is_output) == (1, False)
    assert bl.lrp.explain(net, X, layer=1).shape == (3, 4, 4)


@pytest.mark.parametrize("kwargs,match", [
    ({"rule": "lrp0"}, "unknown LRP rule"),
    ({"rule": "epsilon", "gamma": 0.1}, "unknown parameter"),
    ({"rule": "alphabeta", "alpha": 2.0}, "alpha - beta = 1"),
    ({"rule": "epsilon", "epsilon": -1}, "epsilon must be >= 0"),
    ({"reduce": "median"}, "reduce="),
    ({"seed": "two"}, "seed="),
    ({"target_mode": "vote"}, "target_mode="),
    ({"inner": "some"}, "inner="),
    ({"n_samples": 3}, "n_samples=3"),
    ({"target": [1, 2]}, "shape"),
    ({"target": 10}, "out of range"),
    ({"target": 0.5}, "integer"),
    ({"surrogate_beta": 0.0}, "surrogate_beta"),
    ({"layer": 3, "inner": "all", "target": 1}, "inner='all'"),
])
def test_bad_options(ens, kwargs, match):
    with pytest.raises(BayesLRPError, match=match):
        bl.lrp.explain(ens, X, **kwargs)


def test_bad_inputs(ens):
    with pytest.raises(BayesLRPError, match=r"\[B, C, H, W\]"):
        bl.lrp.explain(ens, torch.rand(3, 16))
    with pytest.raises(BayesLRPError, match="no images"):
        bl.lrp.explain(ens, torch.rand(0, 1, 4, 4))
    with pytest.raises(BayesLRPError, match="one sample"):
        bl.lrp.explain(bl.nets.build("fc2", hidden=6, in_shape=(1, 4, 4)), X, n_samples=2)


def test_rule_objects(ens):
    rule = bl.lrp.Gamma(gamma=0.3)
    torch.testing.assert_close(bl.lrp.explain(ens, X, rule=rule),
                               bl.lrp.explain(ens, X, rule="gamma", gamma=0.3))
    with pytest.raises(BayesLRPError, match="not both"):
        bl.lrp.explain(ens, X, rule=rule, gamma=0.2)
    assert bl.lrp.make_rule("alphabeta", alpha=2, beta=1) == bl.lrp.AlphaBeta(alpha=2.0, beta=1.0)
