"""The explainers on real MNIST with a small trained fc2 (slow: about half a minute).

Run with ``pytest tests/slow/test_explainers_real.py -m slow``.
"""
from __future__ import annotations

import pytest
import torch

import bayeslrp as bl

pytestmark = pytest.mark.slow

N_IMAGES = 50
SMALL = {"integrated_gradients": {"steps": 32}, "smoothgrad": {"n": 8}, "noisegrad": {"n": 4},
         "fusiongrad": {"n": 3, "m": 3}}


@pytest.fixture(scope="module")
def trained():
    x_train, y_train = bl.data.load("mnist", "train")
    x_test, y_test = bl.data.load("mnist", "test")
    idx = torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(0))[:10000]
    ens = bl.train.deterministic(bl.nets.build("fc2", seed=0, hidden=128), x_train[idx],
                                 y_train[idx], epochs=2, progress=False, seed=0)
    assert ens.accuracy(x_test[:1000], y_test[:1000]) > 0.85
    return ens, x_test[:N_IMAGES]


@pytest.mark.parametrize("layer", [None, 3, 1])
def test_ig_completeness_on_mnist(trained, layer):
    """Σ IG = u(x) − u(0) within 1 % for every image at m = 256 (measured here: ≤ 0.2 %)."""
    ens, x = trained
    attr = bl.explain(ens, x, "integrated_gradients", layer=layer, steps=256)
    net = ens.sample_module(0)
    cut = net if layer is None else net[:layer + 2]  # the activation after the layer
    with torch.no_grad():
        h, h0 = cut(x), cut(torch.zeros_like(x))
    unit = h.argmax(-1)
    diff = (h - h0).gather(1, unit[:, None]).squeeze(1)
    rel = (attr.flatten(1).sum(1) - diff).abs() / diff.abs()
    assert float(rel.max()) < 0.01


def test_every_explainer_every_layer(trained):
    ens, x = trained
    for method in bl.explainers.EXPLAINERS.names():
        for layer in [None, *bl.nets.learnable_layers(ens.module)[:-1]]:
            R = bl.explain(ens, x[:10], method, layer=layer, **SMALL.get(method, {}))
            assert R.shape == (10, 28, 28) and torch.isfinite(R).all(), (method, layer)
            assert (R.abs().flatten(1).sum(1) > 0).all(), (method, layer)
    # gradient × input and IG from a zero baseline give background pixels no attribution
    for method in ("grad_x_input", "integrated_gradients"):
        R = bl.explain(ens, x, method, **SMALL.get(method, {}))
        assert (R[x[:, 0] == 0] == 0).all()
