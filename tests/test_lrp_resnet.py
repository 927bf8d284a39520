"""LRP through BatchNorm and residual blocks on ResNet-20 (issue 20).

- conservation (ε → 0, bias-free: conv/linear biases, BatchNorm shifts and running means
  zeroed) within 1e-4 relative at the CIFAR size 32×32, one network and a 3-sample Ensemble;
- agreement with the float64 matrix oracle (tests/lrp_reference.py) at **every** learnable
  layer of ResNet-20 at 8×8 (resnet20 has no width / depth option), every rule;
- second-order gradients (``create_graph``) through a ResNet: the top-k attack's objective
  has a finite, non-zero gradient and one top-k iteration runs.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bayeslrp as bl
from lrp_reference import double_ensemble, randomize_batchnorm, reference_lrp, zero_biases
from lrp_reference import one_torch_thread  # noqa: F401  (autouse fixture)

RULES = [("epsilon", {}), ("gamma", {}), ("alphabeta", {}),
         ("alphabeta", {"alpha": 2.0, "beta": 1.0})]
RULE_IDS = ["eps", "gamma", "ab10", "ab21"]
RESNET_LAYERS = [1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15]


def _nets(n, gen, bias_free=False, **kw):
    nets = []
    for s in range(n):
        net = randomize_batchnorm(bl.nets.build("resnet20", seed=s, **kw), gen)
        nets.append((zero_biases(net) if bias_free else net).double())
    return nets


def _x(shape, n, seed):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)


def test_resnet20_learnable_layers_are_the_documented_ones():
    assert bl.nets.learnable_layers(bl.nets.build("resnet20")) == RESNET_LAYERS


# ------------------------------------------------------------------ conservation at 32x32
@pytest.mark.parametrize("n_models", [1, 3], ids=["det", "ensemble3"])
@pytest.mark.parametrize("rule,kw", [("epsilon", {"epsilon": 1e-10, "stabilizer": 1e-12}),
                                     ("alphabeta", {"stabilizer": 1e-12})], ids=["eps0", "ab10"])
def test_conservation_at_32x32(n_models, rule, kw):
    """Σ_p R_p = the explained logit of every sample, through BN folds and residual splits."""
    gen = torch.Generator().manual_seed(40)
    # normalize="none": Normalize's shift is a bias of the first layer and breaks conservation
    nets = _nets(n_models, gen, bias_free=True, normalize="none")
    ens = double_ensemble(nets)
    x = _x((3, 32, 32), 2, 41)
    heat = bl.lrp.explain(ens, x, rule=rule, reduce=None, **kw)
    assert heat.shape == (n_models, 2, 32, 32)
    logits = ens.logits(x)
    cls = logits.softmax(-1).mean(0).argmax(-1)
    explained = logits.gather(-1, cls.expand(n_models, -1).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(heat.sum((-2, -1)), explained, rtol=1e-4, atol=0)


def test_conservation_at_32x32_float32_ensemble():
    """The same in float32, the dtype of trained models."""
    gen = torch.Generator().manual_seed(42)
    nets = [zero_biases(randomize_batchnorm(bl.nets.build("resnet20", seed=s, normalize="none"),
                                            gen)) for s in range(2)]
    ens = bl.Ensemble.from_modules(nets)
    x = _x((3, 32, 32), 2, 43).float()
    heat = bl.lrp.explain(ens, x, rule="epsilon", reduce=None, epsilon=1e-9, stabilizer=1e-12)
    logits = ens.logits(x)
    cls = logits.softmax(-1).mean(0).argmax(-1)
    explained = logits.gather(-1, cls.expand(2, -1).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(heat.sum((-2, -1)), explained, rtol=1e-4, atol=0)


# ------------------------------------------------------------------ oracle at every layer
@pytest.fixture(scope="module")
def resnet8():
    gen = torch.Generator().manual_seed(44)
    nets = _nets(2, gen, in_shape=(3, 8, 8))
    return double_ensemble(nets), nets, _x((3, 8, 8), 2, 45)


@pytest.mark.parametrize("rule,kw", RULES, ids=RULE_IDS)
@pytest.mark.parametrize("layer", RESNET_LAYERS)
def test_every_learnable_layer_matches_the_float64_oracle(resnet8, rule, kw, layer):
    ens, nets, x = resnet8
    got = bl.lrp.explain(ens, x, rule=rule, layer=layer, reduce=None, **kw)
    ref = reference_lrp(nets, x.numpy(), rule, layer, **kw)
    assert got.shape == ref.shape == (2, 2, 8, 8)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5, rtol=1e-9)
    assert np.abs(ref).sum() > 0


# ------------------------------------------------------------------ second order
@pytest.fixture(scope="module")
def resnet_ens():
    gen = torch.Generator().manual_seed(46)
    nets = [randomize_batchnorm(bl.nets.build("resnet20", seed=s, in_shape=(3, 8, 8)), gen)
            for s in range(2)]
    return bl.Ensemble.from_modules(nets)


@pytest.mark.parametrize("surrogate", [None, 10.0], ids=["relu", "softplus10"])
@pytest.mark.parametrize("layer", [None, 7])
def test_topk_objective_has_a_second_order_gradient(resnet_ens, surrogate, layer):
    """d/dx of the top-k attack's objective through LRP of a ResNet: finite and non-zero."""
    x0 = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(47))
    clean = bl.lrp.explain(resnet_ens, x0, layer=layer)
    mask = bl.metrics.topk_mask(clean, 20)
    x = x0.clone().requires_grad_(True)
    R = bl.lrp.explain(resnet_ens, x, layer=layer, create_graph=True, surrogate_beta=surrogate)
    assert R.requires_grad
    objective = -((R.abs() / R.abs().sum((-2, -1), keepdim=True)) * mask).sum()
    (grad,) = torch.autograd.grad(objective, x)
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


def test_one_topk_iteration_on_a_resnet(resnet_ens):
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(48))
    adv = bl.attacks.topk(resnet_ens, x, eps=0.1, steps=1, surrogate_beta=10.0)
    assert adv.shape == x.shape and torch.isfinite(adv).all()
    assert (adv - x).abs().max() <= 0.1 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
