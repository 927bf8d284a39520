"""HMC for networks (bayeslrp.train.hmc) and its potential (bayeslrp.train.hmc_potential)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import bayeslrp as bl
from bayeslrp.errors import BayesLRPError
from bayeslrp.train import hmc_potential
from bayeslrp.train.hmc import PAPER_DEFAULTS, hmc
from bayeslrp.train.hmc_potential import NetworkPotential


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_net(hidden=16):
    return bl.nets.build("fc2", hidden=hidden, in_shape=(1, 8, 8))


FAST = dict(n_samples=6, warmup=10, steps=4, map_epochs=20, progress=False)


def test_potential_and_gradient_match_an_independent_computation(tiny_data):
    x, y = tiny_data
    net = small_net()
    pot = NetworkPotential(net, x, y, prior_std=0.8, chunk_size=7)  # 400 = 57·7 + 1: ragged end
    q = pot.flatten(net) + 0.1 * torch.randn(pot.dim, generator=torch.Generator().manual_seed(0))
    u, grad = pot(q)

    model = small_net()
    model.load_state_dict(pot.state_dict(q))
    loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
    loss = loss + sum((p**2).sum() for p in model.parameters()) / (2 * 0.8**2)
    loss.backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert u == pytest.approx(float(loss.detach()), rel=1e-5)
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5)
    u_one_chunk, grad_one_chunk = NetworkPotential(net, x, y, 0.8, chunk_size=1000)(q)
    assert u_one_chunk == pytest.approx(u, rel=1e-6)
    torch.testing.assert_close(grad_one_chunk, grad, rtol=1e-4, atol=1e-5)


def test_gaussian_likelihood_potential_is_the_regression_posterior():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 3, generator=g), torch.randn(50, generator=g)
    lin = nn.Linear(3, 1)
    pot = NetworkPotential(lin, x, y, prior_std=2.0, likelihood="gaussian", noise_std=0.5)
    q = torch.randn(4, generator=g)
    u, grad = pot(q)
    w, b = q[:3], q[3]
    resid = x @ w + b - y
    assert u == pytest.approx(0.5 * float(resid @ resid) / 0.25 + 0.5 * float(q @ q) / 4.0, rel=1e-5)
    design = torch.cat([x, torch.ones(50, 1)], dim=1)
    torch.testing.assert_close(grad, design.T @ resid / 0.25 + q / 4.0, rtol=1e-4, atol=1e-5)


def test_flatten_unflatten_round_trip():
    net = bl.nets.build("conv", channels=2, hidden=3, in_shape=(1, 16, 16))
    pot = NetworkPotential(net, torch.zeros(1, 1, 16, 16), torch.zeros(1, dtype=torch.long))
    q = pot.flatten(net)
    assert q.numel() == sum(p.numel() for p in net.parameters())
    state = pot.state_dict(q)
    for name, value in net.state_dict().items():
        assert torch.equal(state[name], value)


def test_hmc_full_mode_returns_a_working_ensemble(tiny_data):
    x, y = tiny_data
    ens = hmc(small_net(), x, y, **FAST, step_size=None)
    assert ens.n_samples == 6 and ens.meta["method"] == "hmc" and ens.meta["mode"] == "full"
    assert ens.accuracy(x, y) > 0.9
    meta = ens.meta
    assert 0.3 <= meta["acceptance_rate"] <= 1.0
    assert meta["divergences"] == 0 and meta["per_chain"][0]["n_data"] == 400
    for key in ("step_size", "wall_seconds", "per_chain", "prior_std", "init"):
        assert key in meta
    # kept samples differ from each other (the chain moves)
    first = ens.params["1.weight"]
    assert not torch.equal(first[0], first[-1])


def test_blocks_mode_shares_samples_over_blocks_and_interleaves(tiny_data):
    x, y = tiny_data
    ens = hmc(small_net(), x, y, **{**FAST, "n_samples": 10}, mode="blocks", block_size=150)
    per_chain = ens.meta["per_chain"]
    assert [c["name"] for c in per_chain] == ["block-0", "block-1", "block-2"]
    assert [c["n_samples"] for c in per_chain] == [4, 3, 3]  # 10 over 3 blocks
    assert [c["n_data"] for c in per_chain] == [150, 150, 100]  # the last block is shorter
    assert ens.n_samples == 10
    with pytest.raises(BayesLRPError, match="blocks"):
        hmc(small_net(), x, y, **{**FAST, "n_samples": 2}, mode="blocks", block_size=150)


def test_subset_mode_and_random_init(tiny_data):
    x, y = tiny_data
    ens = hmc(small_net(), x, y, **FAST, mode="subset", subset=100, init="random")
    assert ens.meta["per_chain"][0]["n_data"] == 100 and ens.meta["init"] == "random"
    with pytest.raises(BayesLRPError, match="subset"):
        hmc(small_net(), x, y, **FAST, mode="subset")


def test_two_chains_report_rhat_and_ess(tiny_data):
    x, y = tiny_data
    ens = hmc(small_net(), x, y, **{**FAST, "n_samples": 8}, chains=2,
              diagnostic_x=x[:20])
    diag = ens.meta["diagnostics"]
    assert ens.n_samples == 16 and diag["chains"] == 2 and diag["n_points"] == 20
    assert diag["rhat_max"] >= diag["rhat_median"] >= 0.9
    assert 0 < diag["ess_bulk_min"] <= diag["ess_bulk_median"]


def test_init_params_start(tiny_data):
    x, y = tiny_data
    det = bl.train.deterministic(small_net(), x, y, epochs=10, progress=False)
    ens = hmc(small_net(), x, y, **{**FAST, "warmup": 0, "n_samples": 1}, init_params=det,
              step_size=1e-5)
    start = small_net()
    dist = {k: (ens.params[k][0] - det.params[k][0]).norm() for k in ens.params}
    far = {k: (start.state_dict()[k] - det.params[k][0]).norm() for k in ens.params}
    assert all(dist[k] < 0.05 * far[k] for k in dist)  # the chain started at init_params


def test_killed_run_resumes_to_identical_samples(tiny_data, tmp_path, monkeypatch):
    x, y = tiny_data
    args = dict(**FAST, checkpoint_dir=tmp_path / "ck", seed=4)
    reference = hmc(small_net(), x, y, **{**args, "checkpoint_dir": None})

    original = hmc_potential.NetworkPotential.__call__
    calls = {"n": 0}

    def dying(self, q):
        calls["n"] += 1
        if calls["n"] > 40:
            raise KeyboardInterrupt
        return original(self, q)

    monkeypatch.setattr(hmc_potential.NetworkPotential, "__call__", dying)
    with pytest.raises(KeyboardInterrupt):
        hmc(small_net(), x, y, **args)
    monkeypatch.setattr(hmc_potential.NetworkPotential, "__call__", original)
    assert (tmp_path / "ck" / "map-0" / "ensemble.json").is_file()
    resumed = hmc(small_net(), x, y, **args)
    for name in reference.params:
        assert torch.equal(resumed.params[name], reference.params[name])


def test_bad_arguments(tiny_data):
    x, y = tiny_data
    with pytest.raises(BayesLRPError):
        hmc(small_net(), x, y, **FAST, mode="minibatch")
    with pytest.raises(BayesLRPError):
        hmc(small_net(), x, y, **FAST, init="zeros")
    with pytest.raises(BayesLRPError):
        hmc(small_net(), x, y, **FAST, chains=2, mode="blocks")
    with pytest.raises(BayesLRPError):
        NetworkPotential(small_net(), x, y, likelihood="poisson")


def test_paper_defaults():
    d = PAPER_DEFAULTS["mnist"]
    assert (d["arch"], d["hidden"], d["warmup"], d["n_samples"], d["steps"]) == ("fc2", 512, 100, 100, 10)
    assert PAPER_DEFAULTS["fashion_mnist"]["hidden"] == 1024
