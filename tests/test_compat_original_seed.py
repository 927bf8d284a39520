"""``inner="original"``: the original code's seed at an inner layer (``compat: original``).

The original explained an inner conv layer by the gradient of ``y[arange(1), y.max(1)[1]].sum()``
on the truncated output ``y`` ``[1, C, H, W]``; the broadcast index picks every position's
most activated channel once per position, so channel ``c`` is seeded with ``count_c`` (how
many positions it wins) at every one of its positions.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import bayeslrp as bl
from bayeslrp.errors import BayesLRPError
from bayeslrp.lrp import targets as tg

# x = [[1, 7, 9], [4, 5, 6], [7, 8, 1]];  channel 0: z = x[i,j] + x[i+1,j+1],
# channel 1: z = 2 x[i,j+1].  z0 = [[6, 13], [12, 6]], z1 = [[14, 18], [10, 12]]:
# channel 1 wins at (0,0), (0,1), (1,1), channel 0 at (1,0) -> counts [1, 3].
X = torch.tensor([[1.0, 7.0, 9.0], [4.0, 5.0, 6.0], [7.0, 8.0, 1.0]],
                 dtype=torch.float64).view(1, 1, 3, 3)
W = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 2.0], [0.0, 0.0]]]], dtype=torch.float64)


def _net() -> nn.Sequential:
    net = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(W)
        net[0].bias.zero_()
    return net


def test_original_seed_on_a_hand_computed_two_channel_output():
    z = torch.tensor([[[6.0, 13.0], [12.0, 6.0]], [[14.0, 18.0], [10.0, 12.0]]])
    h = z.view(1, 1, 2, 2, 2)  # [s, B, C, H, W]
    torch.testing.assert_close(tg.original_weights(h), torch.tensor([[[1.0, 3.0]]]))
    seed = tg.original_seed(h)
    torch.testing.assert_close(seed[0, 0, 0], torch.ones(2, 2))
    torch.testing.assert_close(seed[0, 0, 1], torch.full((2, 2), 3.0))
    # the same for either seed value, and not the "max" rule's seed (channel 1 times h)
    torch.testing.assert_close(tg.inner_seed(h, "logit", "original", None), seed)
    torch.testing.assert_close(tg.inner_seed(h, "one", "original", None), seed)
    assert not torch.equal(tg.inner_seed(h, "logit", "max", None), seed)


def test_original_seed_is_the_gradient_of_the_original_expression():
    torch.manual_seed(0)
    y = torch.randn(1, 5, 4, 3, requires_grad=True)
    y[torch.arange(1), y.max(1)[1]].sum().backward()
    ours = tg.original_seed(y.detach().unsqueeze(0))[0]
    torch.testing.assert_close(ours, y.grad)
    lin = torch.randn(1, 6, requires_grad=True)
    lin[torch.arange(1), lin.max(1)[1]].sum().backward()
    torch.testing.assert_close(tg.original_seed(lin.detach().unsqueeze(0))[0], lin.grad)


def test_lrp_at_the_conv_layer_with_the_original_seed_by_hand():
    img, eps = X[0, 0], 0.1
    z = [[[img[i, j] + img[i + 1, j + 1] for j in range(2)] for i in range(2)],
         [[2 * img[i, j + 1] for j in range(2)] for i in range(2)]]
    counts = (1.0, 3.0)
    expected = torch.zeros(3, 3, dtype=torch.float64)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                ratio = counts[c] / (z[c][i][j] + eps)  # every z > 0 here
                for di in range(2):
                    for dj in range(2):
                        expected[i + di, j + dj] += img[i + di, j + dj] * W[c, 0, di, dj] * ratio
    heat = bl.lrp.explain(_net(), X, rule="epsilon", layer=0, epsilon=eps, inner="original")
    torch.testing.assert_close(heat[0], expected)
    # conservation: the input relevance sums to the seeded z's share, Σ_c count_c Σ_p z/(z+ε)
    assert float(heat.sum()) == pytest.approx(float(
        sum(counts[c] * z[c][i][j] / (z[c][i][j] + eps)
            for c in range(2) for i in range(2) for j in range(2))), rel=1e-12)


def test_gradient_explainer_with_the_original_seed_matches_autograd():
    net = _net()
    x = X.clone().requires_grad_(True)
    y = net[1](net[0](x))
    y[torch.arange(1), y.max(1)[1]].sum().backward()
    ens = bl.Ensemble.from_module(net)
    ex = bl.explainers.Explainer("gradient", layer=0, inner="original")
    torch.testing.assert_close(ex.explain(ens, X)[0], x.grad[0, 0])


def test_original_seed_takes_no_target():
    with pytest.raises(BayesLRPError, match="inner='original'"):
        bl.lrp.explain(_net(), X, rule="epsilon", layer=0, inner="original", target=0)
