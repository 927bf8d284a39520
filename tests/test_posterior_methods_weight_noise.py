"""Weight noise (issue 22 item 1): draws Ŵ ⊙ η, η ~ N(1, σ²) (SPEC §9), and the σ heuristic.

Oracles: η = W_j / Ŵ reproduces the documented draw rule exactly (seeded normal stream over
``named_parameters()``); its mean and sd over 100 draws × 1610 parameters are 1 and σ within
1 %; buffers are untouched; the heuristic's σ is the largest grid value whose probe accuracy
stays within the allowed drop, recomputed here from its rule.
"""
from __future__ import annotations

import pytest
import torch

import bayeslrp as bl
from bayeslrp import BayesLRPError
from bayeslrp.mcmc.seeds import derive_seed
from bayeslrp.train.weight_noise import SIGMA_GRID, _mean_draw_accuracy, choose_sigma


@pytest.fixture(scope="module")
def det():
    gen = torch.Generator().manual_seed(0)
    centres = torch.rand(10, 1, 8, 8, generator=gen)
    y = torch.arange(400) % 10
    x = (centres[y] + 0.15 * torch.randn(400, 1, 8, 8, generator=gen)).clamp(0, 1)
    net = bl.nets.build("fc2", seed=0, hidden=20, in_shape=[1, 8, 8], n_classes=10)
    return bl.train.deterministic(net, x, y, epochs=20, progress=False), x, y


def test_draws_are_the_map_times_seeded_normal_noise(det):
    ens, _, _ = det
    sigma = 0.3
    wn = bl.train.weight_noise(ens, sigma=sigma, n_samples=100, seed=4)
    names = list(ens.params)
    for j in (0, 57):
        g = torch.Generator().manual_seed(derive_seed(4, "weight-noise-draw", j))
        total = sum(ens.params[k][0].numel() for k in names)
        eta = 1 + sigma * torch.randn(total, generator=g, dtype=torch.float64)
        want = torch.cat([ens.params[k][0].flatten() for k in names]) * eta.float()
        got = torch.cat([wn.params[k][j].flatten() for k in names])
        assert torch.equal(got, want)
    ratio = torch.cat([(wn.params[k] / ens.params[k]).flatten(1) for k in names], 1)
    ratio = ratio[:, torch.cat([ens.params[k][0].flatten() for k in names]) != 0]
    assert abs(float(ratio.mean()) - 1) < 0.01
    assert abs(float(ratio.std()) / sigma - 1) < 0.01
    assert wn.meta["sigma"] == sigma and wn.meta["sigma_from"] == "given"


def test_buffers_are_not_perturbed(tiny_data):
    x, y = tiny_data
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10),
                              torch.nn.BatchNorm1d(10))
    net.eval()
    net[2].running_mean.fill_(0.5)
    wn = bl.train.weight_noise(net, sigma=0.1, n_samples=3)
    assert torch.equal(wn.params["2.running_mean"], torch.full((3, 10), 0.5))
    assert not torch.equal(wn.params["2.weight"][0], net[2].weight.detach())


def test_heuristic_sigma_is_the_largest_within_the_drop(det):
    ens, x, y = det
    module = ens.sample_module(0)
    sigma, facts = choose_sigma(module, x, y, max_accuracy_drop=0.05, seed=2)
    k = SIGMA_GRID.index(sigma)
    base = facts["heuristic_base_accuracy"]
    probe = derive_seed(2, "weight-noise-sigma")
    state = {n: v for n, v in module.state_dict().items()}
    names = [n for n, _ in module.named_parameters()]
    g = torch.Generator().manual_seed(derive_seed(2, "weight-noise-points"))
    idx = torch.randperm(x.shape[0], generator=g)[:1000]
    acc = [_mean_draw_accuracy(module, state, names, SIGMA_GRID[i], probe, x[idx], y[idx])
           for i in (k, k + 1)]
    assert acc[0] >= base - 0.05 > acc[1], (sigma, acc, base)
    assert 0 < k < len(SIGMA_GRID) - 1
    wn = bl.train.weight_noise(ens, n_samples=2, seed=2, x=x, y=y, max_accuracy_drop=0.05)
    assert wn.meta["sigma"] == sigma and wn.meta["sigma_from"] == "heuristic"


def test_weight_noise_errors(det):
    ens, _, _ = det
    with pytest.raises(BayesLRPError, match="needs sigma="):
        bl.train.weight_noise(ens, n_samples=2)
    with pytest.raises(BayesLRPError, match="sigma must be > 0"):
        bl.train.weight_noise(ens, sigma=-1.0)
