"""LRP on real MNIST with a small fc2 trained for one epoch (slow: about a minute).

Run with ``pytest tests/slow/test_lrp_real.py -m slow -s``.
"""
from __future__ import annotations

import copy

import pytest
import torch

import bayeslrp as bl

pytestmark = pytest.mark.slow

N_IMAGES = 20


@pytest.fixture(scope="module")
def trained():
    x_train, y_train = bl.data.load("mnist", "train")
    x_test, y_test = bl.data.load("mnist", "test")
    net = bl.nets.build("fc2", seed=0, hidden=128)
    ens = bl.train.deterministic(net, x_train, y_train, epochs=1, progress=False, seed=0)
    assert ens.accuracy(x_test, y_test) > 0.9
    return ens, x_test[:N_IMAGES], y_test[:N_IMAGES]


@pytest.mark.parametrize("rule", ["epsilon", "gamma", "alphabeta"])
def test_heatmaps_every_layer(trained, rule):
    ens, x, _ = trained
    for layer in bl.nets.learnable_layers(ens.module):
        heat = bl.lrp.explain(ens, x, rule=rule, layer=layer)
        assert heat.shape == (N_IMAGES, 28, 28) and heat.dtype == torch.float32
        assert torch.isfinite(heat).all()
        # first-layer relevance is a_j · (...): background pixels (exactly 0) get none
        assert (heat[x[:, 0] == 0] == 0).all()
        assert (heat.abs().flatten(1).sum(1) > 0).all()


def test_output_heatmaps_explain_the_predicted_class(trained):
    ens, x, y = trained
    logits = ens.logits(x)[0]
    pred = logits.argmax(-1)
    heat = bl.lrp.explain(ens, x, rule="epsilon")
    # with biases and ε = 0.1 the relevance is not conserved exactly, but it stays of the
    # order of the explained logit and mostly positive for a confident prediction
    total = heat.flatten(1).sum(1)
    logit = logits.gather(1, pred[:, None]).squeeze(1)
    assert (total > 0).float().mean() >= 0.9
    assert ((total / logit).abs() < 10).all()
    other = bl.lrp.explain(ens, x, rule="epsilon", target=(pred + 1) % 10)
    assert not torch.allclose(other, heat)


def test_conservation_and_gradient_times_input_on_bias_free_trained_net(trained):
    ens, x, _ = trained
    net = copy.deepcopy(ens.sample_module(0)).double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                m.bias.zero_()
    xd = x.double()
    for layer in bl.nets.learnable_layers(net):
        heat = bl.lrp.explain(net, xd, rule="epsilon", layer=layer, epsilon=1e-12)
        cut = bl.lrp.resolve_layer(net, layer)
        h = net[:cut.stop + 1](xd)
        seeded = h.amax(-1)
        torch.testing.assert_close(heat.flatten(1).sum(1), seeded, rtol=1e-4, atol=1e-8)
    xg = xd.clone().requires_grad_(True)
    logits = net(xg)
    (grad,) = torch.autograd.grad(logits.amax(-1).sum(), xg)
    heat = bl.lrp.explain(net, xd, rule="epsilon", epsilon=1e-12)
    torch.testing.assert_close(heat, (grad * xd).sum(1), rtol=1e-6, atol=1e-9)


def test_bayesian_mean_and_std_on_a_perturbed_ensemble(trained):
    ens, x, _ = trained
    gen = torch.Generator().manual_seed(0)
    params = {k: (v.repeat(4, *[1] * (v.dim() - 1))
                  + 0.02 * torch.randn((4, *v.shape[1:]), generator=gen))
              for k, v in ens.params.items()}
    bayes = bl.Ensemble(ens.spec, params)
    for layer in bl.nets.learnable_layers(bayes.module):
        full = bl.lrp.explain(bayes, x, layer=layer, reduce=None)
        mean, std = bl.lrp.explain_with_std(bayes, x, layer=layer)
        torch.testing.assert_close(mean, full.mean(0), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(std, full.std(0, correction=0), rtol=1e-3, atol=1e-6)
        assert torch.isfinite(mean).all() and (std > 0).any()
