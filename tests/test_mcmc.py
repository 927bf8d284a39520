"""Generic HMC (bayeslrp.mcmc): correctness against closed-form posteriors, adaptation, divergences,
checkpoint/resume, and the convergence diagnostics."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import bayeslrp as bl
from bayeslrp.errors import BayesLRPError
from bayeslrp.mcmc import adaptation, diagnostics, kernel

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(autouse=True)
def one_thread():
    # The machine is shared; one thread is faster for these small problems and keeps floating
    # point reductions identical between the runs compared bit for bit.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------- targets
def gaussian_target(dim: int = 50, seed: int = 1):
    """A correlated Gaussian N(mu, cov) with eigenvalues spread over [0.1, 10] (condition 100)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    cov = q @ torch.diag(torch.logspace(-1, 1, dim, dtype=torch.float64)) @ q.T
    cov = 0.5 * (cov + cov.T)
    mu = torch.randn(dim, generator=g, dtype=torch.float64)
    return mu, cov


def gaussian_potential(mu, cov):
    precision = torch.linalg.inv(cov)

    def potential(q):
        d = q - mu
        g = precision @ d
        return 0.5 * float(d @ g), g
    return potential


def regression_posterior(n: int = 100, d: int = 8, noise: float = 0.7, prior: float = 1.0):
    """Bayesian linear regression y = A w + e, e ~ N(0, noise²), w ~ N(0, prior²): its closed-form
    posterior N(m, Λ⁻¹) and the potential of the same model (written independently of Λ)."""
    g = torch.Generator().manual_seed(3)
    a = torch.cat([torch.randn(n, d - 1, generator=g, dtype=torch.float64),
                   torch.ones(n, 1, dtype=torch.float64)], dim=1)
    w_true = torch.randn(d, generator=g, dtype=torch.float64)
    y = a @ w_true + noise * torch.randn(n, generator=g, dtype=torch.float64)
    precision = a.T @ a / noise**2 + torch.eye(d, dtype=torch.float64) / prior**2
    cov = torch.linalg.inv(precision)
    mean = cov @ (a.T @ y) / noise**2

    def potential(w):
        resid = a @ w - y
        u = 0.5 * float(resid @ resid) / noise**2 + 0.5 * float(w @ w) / prior**2
        return u, a.T @ resid / noise**2 + w / prior**2
    return mean, cov, potential


def outside_3_mcse(draws: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> tuple[int, int]:
    """How many coordinates have a sample mean (resp. variance) more than 3 MCSE from the truth.

    MCSE of the mean: sd / sqrt(ESS(x)); of the variance: sd((x-μ)²) / sqrt(ESS((x-μ)²)),
    with ESS estimated from the chain (Geyer's initial monotone sequence).
    """
    x = draws.numpy()[None]  # [1 chain, n, D]
    mu, v = mean.numpy(), var.numpy()
    z_mean = (x.mean(axis=(0, 1)) - mu) / diagnostics.mcse_mean(x)
    sq = (x - mu) ** 2
    z_var = (sq.mean(axis=(0, 1)) - v) / diagnostics.mcse_mean(sq)
    return int((np.abs(z_mean) > 3).sum()), int((np.abs(z_var) > 3).sum())


def allowed(dim: int) -> int:
    """Multiple-testing allowance: at most 2 % of the coordinates may lie outside 3 MCSE."""
    return int(math.floor(0.02 * dim))


# ---------------------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("mass", ["identity", "diag"])
def test_correlated_gaussian_moments_within_3_mcse(mass):
    mu, cov = gaussian_target()
    draws, diag = bl.mcmc.sample(gaussian_potential(mu, cov), torch.zeros(50, dtype=torch.float64),
                                 n_samples=2000, warmup=500, steps=10, mass=mass, seed=0)
    assert draws.shape == (2000, 50)
    bad_mean, bad_var = outside_3_mcse(draws, mu, torch.diag(cov))
    assert bad_mean <= allowed(50) and bad_var <= allowed(50), (bad_mean, bad_var)
    assert 0.65 <= diag["acceptance_rate"] <= 0.95
    assert diag["divergences"] == 0
    assert diag["n_grad"] >= 10 * 2500


def test_bayesian_linear_regression_matches_closed_form():
    mean, cov, potential = regression_posterior()
    draws, diag = bl.mcmc.sample(potential, torch.zeros(8, dtype=torch.float64), n_samples=3000,
                                 warmup=300, steps=10, seed=1)
    bad_mean, bad_var = outside_3_mcse(draws, mean, torch.diag(cov))
    assert bad_mean <= allowed(8) and bad_var <= allowed(8), (bad_mean, bad_var)
    assert 0.65 <= diag["acceptance_rate"] <= 0.95


def test_moment_check_detects_a_wrong_sampler():
    # Power of the check above: exact iid draws from a covariance inflated by 20 % must fail it.
    mu, cov = gaussian_target()
    g = torch.Generator().manual_seed(0)
    chol = torch.linalg.cholesky(1.2 * cov)
    wrong = mu + torch.randn(2000, 50, generator=g, dtype=torch.float64) @ chol.T
    bad_mean, bad_var = outside_3_mcse(wrong, mu, torch.diag(cov))
    assert bad_var > allowed(50)


# ---------------------------------------------------------------------------------------- kernel
def counting(potential):
    calls = {"n": 0}

    def fn(q):
        calls["n"] += 1
        return potential(q)
    return fn, calls


def test_one_gradient_per_leapfrog_step():
    mu, cov = gaussian_target(5)
    fn, calls = counting(gaussian_potential(mu, cov))
    bl.mcmc.sample(fn, torch.zeros(5, dtype=torch.float64), n_samples=7, warmup=0, steps=6,
                   step_size=0.1)
    assert calls["n"] == 1 + 7 * 6  # the initial point, then L per iteration


def test_leapfrog_is_reversible_and_nearly_conserves_energy():
    mu, cov = gaussian_target(10)
    fn = gaussian_potential(mu, cov)
    start = kernel.evaluate(fn, torch.zeros(10, dtype=torch.float64))
    inv_mass = torch.ones(10, dtype=torch.float64)
    p0 = torch.randn(10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    end, p1, n_grad, stopped = kernel.leapfrog(fn, start, p0, 0.01, 50, inv_mass)
    assert n_grad == 50 and not stopped
    h0 = start.potential + kernel.kinetic(p0, inv_mass)
    h1 = end.potential + kernel.kinetic(p1, inv_mass)
    assert abs(h1 - h0) < 1e-3
    back, p2, _, _ = kernel.leapfrog(fn, end, -p1, 0.01, 50, inv_mass)
    torch.testing.assert_close(back.q, start.q, atol=1e-10, rtol=0)
    torch.testing.assert_close(-p2, p0, atol=1e-10, rtol=0)


def test_divergences_are_detected_rejected_and_counted():
    mu, cov = gaussian_target(5)
    fn = gaussian_potential(mu, cov)
    init = torch.zeros(5, dtype=torch.float64)
    draws, diag = bl.mcmc.sample(fn, init, n_samples=10, warmup=0, steps=10, step_size=50.0)
    assert diag["divergences"] == 10 and diag["acceptance_rate"] == 0.0
    assert torch.equal(draws, init.expand(10, 5))  # every proposal rejected

    def nan_far_out(q):  # non-finite potential away from the origin
        u, g = fn(q)
        return (u if float(q.abs().max()) < 3 else float("nan")), g
    _, diag = bl.mcmc.sample(nan_far_out, init, n_samples=5, warmup=0, steps=10, step_size=10.0)
    assert diag["divergences"] == 5


def test_step_size_heuristic_and_dual_averaging_reach_target():
    mu, cov = gaussian_target(20)
    fn = gaussian_potential(mu, cov)
    start = kernel.evaluate(fn, mu.clone())
    eps, spent = kernel.find_reasonable_step_size(fn, start, torch.ones(20, dtype=torch.float64),
                                                  torch.Generator().manual_seed(0))
    assert 1e-3 < eps < 10 and spent >= 2
    for target in (0.6, 0.9):
        _, diag = bl.mcmc.sample(fn, mu.clone(), n_samples=800, warmup=400, steps=5,
                                 target_accept=target, seed=2)
        assert abs(diag["acceptance_rate"] - target) < 0.1


def test_dual_averaging_constants_match_hoffman_gelman():
    da = adaptation.DualAveraging(0.5, target=0.8)
    eps = da.update(0.0)
    # t=1: H̄ = 0.8/11, log ε = log(5) − (1/0.05)·H̄, log ε̄ = 1^(−0.75)·log ε
    assert eps == pytest.approx(math.exp(math.log(5.0) - 20 * 0.8 / 11))
    assert da.final_step_size == pytest.approx(eps)


def test_mass_windows_follow_stan():
    assert adaptation.mass_windows(1000) == [(75, 100), (100, 150), (150, 250), (250, 450),
                                            (450, 950)]
    assert adaptation.mass_windows(100) == [(15, 90)]
    assert adaptation.mass_windows(10) == []


def test_diag_mass_learns_the_variances():
    scales = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    fn = bl.mcmc.with_autograd(lambda q: 0.5 * ((q / scales) ** 2).sum())
    _, diag = bl.mcmc.sample(fn, torch.zeros(3, dtype=torch.float64), n_samples=10, warmup=600,
                             steps=5, mass="diag", seed=0)
    ratio = diag["inv_mass"] / scales**2
    assert bool(((ratio > 0.5) & (ratio < 2.0)).all()), ratio


def test_with_autograd_matches_analytic_gradient():
    mu, cov = gaussian_target(6)
    analytic = gaussian_potential(mu, cov)
    precision = torch.linalg.inv(cov)
    auto = bl.mcmc.with_autograd(lambda q: 0.5 * (q - mu) @ precision @ (q - mu))
    q = torch.randn(6, dtype=torch.float64)
    u1, g1 = analytic(q)
    u2, g2 = auto(q)
    assert float(u2) == pytest.approx(u1)
    torch.testing.assert_close(g2, g1)


def test_bad_arguments_raise():
    fn = bl.mcmc.with_autograd(lambda q: (q**2).sum())
    with pytest.raises(BayesLRPError):
        bl.mcmc.sample(fn, torch.zeros(2, 2), 5, 5)
    with pytest.raises(BayesLRPError):
        bl.mcmc.sample(fn, torch.zeros(2), 5, 5, mass="dense")
    with pytest.raises(BayesLRPError):
        bl.mcmc.sample(fn, torch.zeros(2), 0, 5)
    with pytest.raises(BayesLRPError, match="gradient of shape"):
        bl.mcmc.sample(lambda q: (0.0, torch.zeros(3)), torch.zeros(2), 5, 5)
    with pytest.raises(BayesLRPError, match="not finite"):
        bl.mcmc.sample(lambda q: (float("inf"), q), torch.zeros(2), 5, 5)


# ---------------------------------------------------------------------------------------- resume
class Killed(Exception):
    pass


def killer(potential, after_calls):
    calls = {"n": 0}

    def fn(q):
        calls["n"] += 1
        if calls["n"] > after_calls:
            raise Killed()
        return potential(q)
    return fn


RESUME_ARGS = dict(n_samples=40, warmup=60, steps=5, mass="diag", seed=7)


@pytest.mark.parametrize("kill_after_calls", [150, 420])  # inside a mass window / while sampling
def test_resume_after_a_crash_is_bit_identical(tmp_path, kill_after_calls):
    mu, cov = gaussian_target(8)
    fn = gaussian_potential(mu, cov)
    init = torch.zeros(8, dtype=torch.float64)
    reference, ref_diag = bl.mcmc.sample(fn, init, **RESUME_ARGS)
    with pytest.raises(Killed):
        bl.mcmc.sample(killer(fn, kill_after_calls), init, checkpoint=tmp_path, **RESUME_ARGS)
    index = json.loads((tmp_path / "chain.json").read_text())
    assert 0 < index["iteration"] < 100
    resumed, diag = bl.mcmc.sample(fn, init, checkpoint=tmp_path, **RESUME_ARGS)
    assert torch.equal(resumed, reference)
    assert torch.equal(diag["accept_stat"], ref_diag["accept_stat"])
    assert diag["step_size"] == ref_diag["step_size"]
    assert torch.equal(diag["inv_mass"], ref_diag["inv_mass"])
    # a finished checkpoint returns its samples without new gradient evaluations
    again, _ = bl.mcmc.sample(killer(fn, 0), init, checkpoint=tmp_path, **RESUME_ARGS)
    assert torch.equal(again, reference)


def test_resume_refuses_other_settings_and_corrupt_files(tmp_path):
    fn = bl.mcmc.with_autograd(lambda q: 0.5 * (q**2).sum())
    init = torch.zeros(3, dtype=torch.float64)
    bl.mcmc.sample(fn, init, 5, 5, checkpoint=tmp_path)
    with pytest.raises(BayesLRPError, match="different settings"):
        bl.mcmc.sample(fn, init, 5, 5, steps=3, checkpoint=tmp_path)
    with pytest.raises(BayesLRPError, match="different settings"):
        bl.mcmc.sample(fn, init + 1, 5, 5, checkpoint=tmp_path)
    sample_file = tmp_path / "samples" / "000002.safetensors"
    sample_file.write_bytes(sample_file.read_bytes()[:-1] + b"\x00")
    with pytest.raises(BayesLRPError, match="corrupt"):
        bl.mcmc.sample(fn, init, 5, 5, checkpoint=tmp_path)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads(1)
    import bayeslrp as bl
    from test_target import potential, init, ARGS
    def slow(q):
        time.sleep(0.01)
        return potential(q)
    bl.mcmc.sample(slow, init, checkpoint=sys.argv[1], **ARGS)
""")

TARGET_MODULE = textwrap.dedent("""
    import torch
    g = torch.Generator().manual_seed(5)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    precision = a @ a.T + 6 * torch.eye(6, dtype=torch.float64)
    init = torch.zeros(6, dtype=torch.float64)
    ARGS = dict(n_samples=60, warmup=40, steps=4, mass="diag", seed=3)
    def potential(q):
        g = precision @ (q - 1)
        return 0.5 * float((q - 1) @ g), g
""")


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    (tmp_path / "test_target.py").write_text(TARGET_MODULE)
    (tmp_path / "run.py").write_text(KILL_SCRIPT)
    ckpt = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(tmp_path)])}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(ckpt)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        index = ckpt / "chain.json"
        if index.is_file():
            try:
                iteration = json.loads(index.read_text())["iteration"]
            except ValueError:
                iteration = 0
            if iteration >= 50:  # past warmup, while sampling
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = iteration
                break
        time.sleep(0.02)
    assert killed_at is not None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    sys.path.insert(0, str(tmp_path))
    try:
        import test_target as target
    finally:
        sys.path.remove(str(tmp_path))
    assert json.loads((ckpt / "chain.json").read_text())["iteration"] < 100
    resumed, _ = bl.mcmc.sample(target.potential, target.init, checkpoint=ckpt, **target.ARGS)
    reference, _ = bl.mcmc.sample(target.potential, target.init, **target.ARGS)
    assert torch.equal(resumed, reference)


# ---------------------------------------------------------------------------------------- diagnostics
def test_iid_normal_draws_have_rhat_one_and_ess_n():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 500, 30))
    r = bl.mcmc.rhat(x)
    assert np.all(r < 1.02) and np.all(r > 0.99)
    assert np.all(np.abs(bl.mcmc.split_rhat(x) - 1) < 0.02)
    e = bl.mcmc.ess(x) / 2000
    assert 0.9 < np.median(e) < 1.1 and np.all((e > 0.7) & (e < 1.4))
    eb = bl.mcmc.ess_bulk(x) / 2000
    assert 0.9 < np.median(eb) < 1.1


def test_ess_of_ar1_chains_matches_theory():
    rng = np.random.default_rng(1)
    rho, n = 0.6, 4000
    noise = rng.standard_normal((2, n, 20)) * math.sqrt(1 - rho**2)
    x = np.zeros_like(noise)
    x[:, 0] = rng.standard_normal((2, 20))
    for t in range(1, n):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    expected = 2 * n * (1 - rho) / (1 + rho)
    e = bl.mcmc.ess(x) / expected
    assert 0.85 < np.median(e) < 1.15
    se = bl.mcmc.mcse_mean(x)
    assert np.median(se) == pytest.approx(math.sqrt(1 / expected), rel=0.15)


def test_rhat_flags_chains_that_disagree():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 500, 5)) + np.arange(4)[:, None, None] * 0.5
    assert np.all(bl.mcmc.rhat(x) > 1.1)
    trend = rng.standard_normal((1, 1000, 3)) + np.linspace(0, 3, 1000)[None, :, None]
    assert np.all(bl.mcmc.split_rhat(trend) > 1.1)  # one chain that drifts: split halves disagree


@pytest.mark.parametrize("every, seconds", [(7, None), (0, 1e-9), (0, 1e9)])
def test_checkpoint_interval_keeps_bit_identical_resume(tmp_path, every, seconds):
    """Checkpoints every 7 iterations, by time only (always due / never due before the end):
    a killed chain resumes, with another interval too, to the uninterrupted chain's bits."""
    mu, cov = gaussian_target(8)
    fn = gaussian_potential(mu, cov)
    init = torch.zeros(8, dtype=torch.float64)
    reference, ref_diag = bl.mcmc.sample(fn, init, **RESUME_ARGS)
    with pytest.raises(Killed):
        bl.mcmc.sample(killer(fn, 420), init, checkpoint=tmp_path, checkpoint_every=every,
                       checkpoint_seconds=seconds, **RESUME_ARGS)
    index_file = tmp_path / "chain.json"
    if seconds == 1e9:
        assert not index_file.exists()
    else:
        index = json.loads(index_file.read_text())
        assert 0 < index["iteration"] < 100
        assert index["iteration"] % (every or 1) == 0
        assert len(index["samples"]) == max(0, index["iteration"] - RESUME_ARGS["warmup"])
    resumed, diag = bl.mcmc.sample(fn, init, checkpoint=tmp_path, checkpoint_every=3,
                                   **RESUME_ARGS)
    assert torch.equal(resumed, reference)
    assert torch.equal(diag["accept_stat"], ref_diag["accept_stat"])
    assert torch.equal(diag["inv_mass"], ref_diag["inv_mass"])
    final = json.loads(index_file.read_text())
    assert final["iteration"] == 100 and len(final["samples"]) == RESUME_ARGS["n_samples"]


def test_checkpoint_interval_arguments_are_checked():
    fn = bl.mcmc.with_autograd(lambda q: 0.5 * (q**2).sum())
    with pytest.raises(BayesLRPError, match="checkpoint_every"):
        bl.mcmc.sample(fn, torch.zeros(2), 2, 2, checkpoint_every=-1)
    with pytest.raises(BayesLRPError, match="checkpoint_seconds"):
        bl.mcmc.sample(fn, torch.zeros(2), 2, 2, checkpoint_seconds=0)
