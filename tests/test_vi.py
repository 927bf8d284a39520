"""Mean-field VI (bayeslrp.train.vi and its machinery in bayeslrp.train.vi_meanfield)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import bayeslrp as bl
from bayeslrp.errors import BayesLRPError
from bayeslrp.train import vi_elbo
from bayeslrp.train import vi_meanfield as vm
from bayeslrp.train.vi import PAPER_DEFAULTS, vi


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def regression_problem(n=200, d=3, noise=0.5, prior=1.0):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.tensor([1.0, -0.5, 0.3]) + 0.2 + noise * torch.randn(n, generator=g)
    design = torch.cat([x, torch.ones(n, 1)], dim=1).double()
    precision = design.T @ design / noise**2 + torch.eye(d + 1, dtype=torch.float64) / prior**2
    mean = torch.linalg.solve(precision, design.T @ y.double() / noise**2)
    return x, y, mean, precision


def test_mean_field_optimum_matches_closed_form_within_2_percent():
    """Gaussian posterior N(m, Λ⁻¹): the mean-field optimum is N(m_i, 1/Λ_ii) per coordinate."""
    noise = 0.5
    x, y, mean, precision = regression_problem(noise=noise)
    model, history = vm.fit(nn.Linear(3, 1), x, y, epochs=600, lr=0.02, batch_size=200,
                            likelihood="gaussian", noise_std=noise, prior_std=1.0,
                            lr_schedule="cosine", num_particles=64, progress=False)
    mu = torch.cat([model.mu[0].detach().reshape(-1), model.mu[1].detach()]).double()
    var = torch.cat([model.sigma(0).detach().reshape(-1), model.sigma(1).detach()]).double() ** 2
    exact_var = 1.0 / torch.diag(precision)
    assert torch.all((mu - mean).abs() <= 0.02 * mean.abs()), (mu, mean)
    assert torch.all((var / exact_var - 1).abs() <= 0.02), var / exact_var
    # and it is really the mean-field solution, not the (wider) exact marginal variance
    exact_marginal = torch.diag(torch.linalg.inv(precision))
    assert torch.all(var < exact_marginal) or torch.allclose(exact_var, exact_marginal)
    assert history["loss"][-1] < history["loss"][0]


def test_kl_matches_torch_distributions():
    net = nn.Linear(4, 3)
    model = vm.MeanField(net, prior_std=0.7, init_std=0.05)
    with torch.no_grad():
        for rho in model.rho:
            rho.add_(torch.randn_like(rho) * 0.3)
    q = [torch.distributions.Normal(mu, model.sigma(i)) for i, mu in enumerate(model.mu)]
    p = torch.distributions.Normal(0.0, 0.7)
    expected = sum(torch.distributions.kl_divergence(qi, p).sum() for qi in q)
    assert float(model.kl().detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


def test_initial_state_and_inverse_softplus():
    net = bl.nets.build("fc2", hidden=8, in_shape=(1, 4, 4))
    model = vm.MeanField(net, init_std=1e-3)
    for (name, p), mu, i in zip(net.named_parameters(), model.mu, range(99)):
        assert torch.equal(mu, p)
        torch.testing.assert_close(model.sigma(i), torch.full_like(p, 1e-3))
    assert F.softplus(torch.tensor(vm.inverse_softplus(0.37))).item() == pytest.approx(0.37)


@pytest.mark.parametrize("local", [True, False])
def test_sampled_forward_has_the_right_moments(local):
    """Oracle: moments of the output under explicit weight sampling W ~ N(μ, σ²)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    model = vm.MeanField(net, init_std=0.2, local_reparam=local)
    x = torch.rand(1, 2, 6, 6)
    n = 4000
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        if local:  # independent noise per data point: one batched call
            out = model(x.expand(n, -1, -1, -1), g)
        else:  # one weight sample per forward pass
            out = torch.cat([model(x, g) for _ in range(n)])
        ref = []
        for _ in range(n):
            params = {name: mu + model.sigma(i) * torch.randn(mu.shape, generator=g)
                      for i, (name, mu) in enumerate(zip(model.names, model.mu))}
            ref.append(torch.func.functional_call(net, params, (x,)))
        ref = torch.cat(ref)
    se_mean = ref.std(0) / math.sqrt(n)
    assert torch.all((out.mean(0) - ref.mean(0)).abs() < 5 * math.sqrt(2) * se_mean)
    ratio = out.var(0) / ref.var(0)
    assert torch.all((ratio > 0.85) & (ratio < 1.15)), ratio  # var estimates: ±~3.2 % sd each


def test_local_reparam_uses_independent_noise_per_data_point():
    net = nn.Sequential(nn.Linear(3, 2))
    model = vm.MeanField(net, init_std=0.5, local_reparam=True)
    x = torch.ones(2, 3)
    out = model(x, torch.Generator().manual_seed(0))
    assert not torch.equal(out[0], out[1])


def test_vi_returns_a_reproducible_ensemble(tiny_data, tmp_path):
    x, y = tiny_data
    net = bl.nets.build("fc2", hidden=16, in_shape=(1, 8, 8))
    ens = vi(net, x, y, epochs=8, lr=0.01, n_samples=12, batch_size=64, seed=3, progress=False)
    assert ens.n_samples == 12 and ens.meta["method"] == "vi"
    assert len(ens.meta["history"]["loss"]) == 8
    assert ens.accuracy(x, y) > 0.9
    names = [n for n, _ in net.named_parameters()]
    mu = {n: ens.extras[f"mu.{n}"] for n in names}
    rho = {n: ens.extras[f"rho.{n}"] for n in names}
    for j in (0, 7):  # any draw from (μ, ρ, seed, j) alone
        alone = vm.draw(mu, rho, seed=3, j=j)
        for n in names:
            assert torch.equal(ens.params[n][j], alone[n])
    assert not torch.equal(ens.params[names[0]][0], ens.params[names[0]][1])
    again = vi(net, x, y, epochs=8, lr=0.01, n_samples=12, batch_size=64, seed=3, progress=False)
    for n in ens.params:
        assert torch.equal(ens.params[n], again.params[n])
    loaded = bl.Ensemble.load(ens.save(tmp_path / "vi"))
    assert loaded.meta["method"] == "vi"
    assert torch.equal(loaded.extras[f"rho.{names[0]}"], rho[names[0]])


def test_vi_on_conv_with_local_reparameterisation():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(128, 1, 16, 16, generator=g), torch.randint(0, 10, (128,), generator=g)
    net = bl.nets.build("conv", channels=4, hidden=8, in_shape=(1, 16, 16))
    model = vm.MeanField(net)
    assert set(model.local) == {"0", "3", "7"}
    ens = vi(net, x, y, epochs=1, n_samples=3, progress=False)
    assert ens.n_samples == 3 and torch.isfinite(ens.logits(x[:4])).all()


def test_vi_refuses_bad_arguments(tiny_data):
    x, y = tiny_data
    net = bl.nets.build("fc2", hidden=4, in_shape=(1, 8, 8))
    with pytest.raises(BayesLRPError):
        vi(net, x, y, n_samples=0, progress=False)
    with pytest.raises(BayesLRPError):
        vi(net, x, y, lr_schedule="linear", progress=False)
    with pytest.raises(BayesLRPError):
        vi(net, x.flatten(1), y, progress=False)
    with pytest.raises(BayesLRPError):
        vm.fit(net, x, y, epochs=1, lr=0.1, likelihood="poisson", progress=False)


def test_paper_defaults():
    assert PAPER_DEFAULTS["mnist"]["epochs"] == 5 and PAPER_DEFAULTS["mnist"]["lr"] == 0.01
    assert PAPER_DEFAULTS["fashion_mnist"]["epochs"] == 15
    assert PAPER_DEFAULTS["fashion_mnist"]["lr"] == 0.001


# --------------------------------------------------------------------------- final-point ELBO


@pytest.fixture
def fitted(tiny_data):
    x, y = tiny_data
    net = bl.nets.build("fc2", hidden=16, in_shape=(1, 8, 8))
    return vi(net, x, y, epochs=4, lr=0.01, n_samples=3, batch_size=64, seed=1,
              progress=False, prior_std=0.8)


def test_negative_elbo_kl_is_the_closed_form_of_the_saved_posterior(fitted, tiny_data):
    x, y = tiny_data
    out = vi_elbo.negative_elbo(fitted, x, y, passes=2, seed=5)
    kl = 0.0
    for key, mu in fitted.extras.items():
        if key.startswith("mu."):
            q = torch.distributions.Normal(mu, F.softplus(fitted.extras["rho." + key[3:]]))
            prior = torch.distributions.Normal(0.0, 0.8)
            kl += float(torch.distributions.kl_divergence(q, prior).sum())
    assert out["kl_per_point"] == pytest.approx(kl / x.shape[0], rel=1e-5)
    assert len(out["nll_passes"]) == 2 and out["nll_passes"][0] != out["nll_passes"][1]
    assert out["neg_elbo"] == pytest.approx(out["nll"] + out["kl_per_point"])
    assert vi_elbo.negative_elbo(fitted, x, y, passes=2, seed=5) == out  # seeded


def test_negative_elbo_nll_at_vanishing_sigma_is_the_mean_networks_cross_entropy(fitted,
                                                                                 tiny_data):
    x, y = tiny_data
    cold = bl.Ensemble(fitted.spec, fitted.params, meta=fitted.meta,
                       extras={k: (torch.full_like(v, -40.0) if k.startswith("rho.") else v)
                               for k, v in fitted.extras.items()})
    mean_net = bl.nets.build_from_spec(fitted.spec)
    mean_net.load_state_dict({k[3:]: v for k, v in fitted.extras.items() if k.startswith("mu.")})
    with torch.no_grad():
        expected = float(F.cross_entropy(mean_net.eval()(x), y))
    assert vi_elbo.negative_elbo(cold, x, y, batch_size=70)["nll"] == pytest.approx(expected,
                                                                                   rel=1e-5)


def test_negative_elbo_refuses_a_non_vi_ensemble(tiny_data):
    x, y = tiny_data
    det = bl.Ensemble.from_module(bl.nets.build("fc2", hidden=16, in_shape=(1, 8, 8)))
    with pytest.raises(BayesLRPError, match="not a VI ensemble"):
        vi_elbo.negative_elbo(det, x, y)
