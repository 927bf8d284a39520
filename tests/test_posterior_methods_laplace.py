"""Laplace (issue 22 item 1): closed-form oracles for the curvature, the prior precision and
the draws.

* Bayesian (softmax) logistic regression: the model is linear in θ, so its Laplace precision
  is the Hessian of the negative log joint at the MAP, computed here by autograd (not a GGN).
  The last-layer (= full) Laplace precision and the diagonal one match it within 1 %, the
  draws' covariance matches its inverse within the sampling error, and the evidence-chosen
  prior precision matches a brute-force maximisation of the closed-form log evidence.
* A small tanh MLP in float64: the diagonal GGN (both the layer-wise and the per-image vmap
  computation) equals the brute-force Σₙ JₙᵀΛₙJₙ (full Jacobians by autograd) within 1e-10,
  and the last-layer GGN equals that matrix's block; on conv the two computations agree.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import bayeslrp as bl
from bayeslrp import BayesLRPError
from bayeslrp.train.ggn import diag_ggn, last_layer_ggn
from bayeslrp.train.laplace import log_evidence, optimal_prior_precision

DELTA = 1.0


def _blr_data(n=120, d=4, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c, d, generator=g, dtype=torch.float64)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.multinomial((x @ w.T).softmax(-1), 1, generator=g)[:, 0]
    return x.view(n, 1, 2, 2), y


def _neg_log_joint(theta, x, y, c, d):
    wb = theta.view(c, d + 1)
    logits = x.flatten(1) @ wb[:, :d].T + wb[:, d]
    return nn.functional.cross_entropy(logits, y, reduction="sum") + 0.5 * DELTA * theta @ theta


@pytest.fixture(scope="module")
def blr():
    x, y = _blr_data()
    c, d = 3, 4
    theta = torch.zeros(c * (d + 1), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = _neg_log_joint(theta, x, y, c, d)
        loss.backward()
        return loss

    opt.step(closure)
    theta = theta.detach()
    for _ in range(5):  # Newton polish of the convex objective: gradient to ~1e-13
        t = theta.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(_neg_log_joint(t, x, y, c, d), t)
        h = torch.autograd.functional.hessian(lambda u: _neg_log_joint(u, x, y, c, d), theta)
        theta = theta - torch.linalg.solve(h, grad)
    hess = torch.autograd.functional.hessian(lambda t: _neg_log_joint(t, x, y, c, d), theta)
    net = nn.Sequential(nn.Flatten(), nn.Linear(d, c)).double()
    with torch.no_grad():
        net[1].weight.copy_(theta.view(c, d + 1)[:, :d])
        net[1].bias.copy_(theta.view(c, d + 1)[:, d])
    return net, x, y, theta, hess


def test_blr_map_is_converged(blr):
    _, x, y, theta, _ = blr
    t = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_neg_log_joint(t, x, y, 3, 4), t)
    assert float(grad.abs().max()) < 1e-10


def test_last_layer_laplace_precision_is_the_blr_hessian(blr):
    net, x, _, _, hess = blr
    precision = last_layer_ggn(net, x) + DELTA * torch.eye(hess.shape[0], dtype=torch.float64)
    rel = float((precision - hess).norm() / hess.norm())
    assert rel < 0.01, rel  # measured ~1e-16


def test_diag_laplace_precision_is_the_blr_hessian_diagonal(blr):
    net, x, _, _, hess = blr
    g = diag_ggn(net, x)
    diag = torch.cat([g["1.weight"], g["1.bias"][:, None]], 1).flatten() + DELTA
    rel = float(((diag - hess.diagonal()) / hess.diagonal()).abs().max())
    assert rel < 0.01, rel


def test_laplace_draws_have_the_closed_form_covariance(blr):
    net, x, y, theta, hess = blr
    n = 20000
    ens = bl.train.laplace(net, x, y, kind="last_layer", n_samples=n, prior_precision=DELTA,
                           seed=3)
    draws = torch.cat([ens.params["1.weight"], ens.params["1.bias"][:, :, None]], 2).flatten(1)
    cov = torch.cov(draws.T)
    want = torch.linalg.inv(hess)
    # sampling error of a covariance from n draws ~ sqrt(2/n) = 1 % of its scale
    assert float((cov - want).norm() / want.norm()) < 0.03
    assert float((draws.mean(0) - theta).abs().max()) < 4 * float(want.diagonal().sqrt().max()
                                                                   / math.sqrt(n))
    diag = bl.train.laplace(net, x, y, kind="diag", n_samples=n, prior_precision=DELTA, seed=3)
    dd = torch.cat([diag.params["1.weight"], diag.params["1.bias"][:, :, None]], 2).flatten(1)
    var_rel = (dd.var(0) * hess.diagonal() - 1).abs().max()
    assert float(var_rel) < 0.05  # 1/H_ii, sampling error ~ sqrt(2/n) = 1 %


def test_prior_precision_maximises_the_closed_form_evidence(blr):
    net, x, y, theta, hess = blr
    data_hess = hess - DELTA * torch.eye(hess.shape[0], dtype=torch.float64)
    p = theta.numel()

    def evidence(delta):  # log Z up to the δ-free terms, from the autograd Hessian
        a = data_hess + delta * torch.eye(p, dtype=torch.float64)
        return float(-0.5 * delta * theta @ theta + 0.5 * p * math.log(delta)
                     - 0.5 * torch.linalg.slogdet(a)[1])

    grid = [10 ** (k / 2000) for k in range(-6000, 6001)]
    best = max(grid, key=evidence)
    ens = bl.train.laplace(net, x, y, kind="last_layer", n_samples=2)
    chosen = ens.meta["prior_precision"]
    assert ens.meta["prior_precision_from"] == "evidence"
    assert abs(chosen / best - 1) < 0.01, (chosen, best)
    eig = torch.linalg.eigvalsh(data_hess)
    assert abs(log_evidence(chosen, eig, float(theta @ theta)) - evidence(chosen)) < 1e-8


def test_optimal_prior_precision_hand_case():
    # one eigenvalue 0: slope ½(0) − ½‖θ‖² < 0 everywhere → the smallest δ of the range;
    # P equal eigenvalues λ: root of λ / (δ(λ + δ)) = ‖θ‖²/P
    assert optimal_prior_precision(torch.zeros(1), 1.0) == pytest.approx(1e-8)
    lam, sq, p = 4.0, 2.0, 3
    delta = optimal_prior_precision(torch.full((p,), lam), sq)
    # δ² + λδ − Pλ/‖θ‖² = 0
    want = (-lam + math.sqrt(lam ** 2 + 4 * p * lam / sq)) / 2
    assert delta == pytest.approx(want, rel=1e-8)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def _brute_ggn(net, x):
    names = [k for k, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    sizes = [p.numel() for _, p in net.named_parameters()]
    flat = torch.cat([p.detach().flatten() for _, p in net.named_parameters()])

    def f(theta, xn):
        params = {k: t.view(s) for k, t, s in zip(names, torch.split(theta, sizes), shapes)}
        return torch.func.functional_call(net, params, (xn[None],))[0]

    total = torch.zeros(flat.numel(), flat.numel(), dtype=torch.float64)
    for xn in x:
        jac = torch.autograd.functional.jacobian(lambda t: f(t, xn), flat)  # [C, P]
        p = f(flat, xn).softmax(-1)
        lam = torch.diag(p) - torch.outer(p, p)
        total += jac.T @ lam @ jac
    return total, names, sizes


def test_diag_ggn_equals_brute_force_on_a_small_mlp():
    net = _mlp()
    x = torch.randn(30, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    full, names, sizes = _brute_ggn(net, x)
    for method in ("layers", "vmap"):
        got = diag_ggn(net, x, budget=2000, method=method)  # small budget: several chunks
        flat = torch.cat([got[k].flatten() for k in names])
        assert torch.allclose(flat, full.diagonal(), rtol=1e-10, atol=1e-14), method
    # the last layer's block, reordered to [W | b] row-major
    start = sum(sizes[:2])
    w_idx = torch.arange(15).view(3, 5) + start
    b_idx = torch.arange(3)[:, None] + start + 15
    order = torch.cat([w_idx, b_idx], 1).flatten()
    block = full[order][:, order]
    assert torch.allclose(last_layer_ggn(net, x, batch_size=7), block, rtol=1e-10, atol=1e-14)


def test_layerwise_diag_ggn_equals_vmap_on_conv_and_falls_back():
    g = torch.Generator().manual_seed(2)
    conv = bl.nets.build("conv", seed=0, hidden=6, channels=3, in_shape=[1, 16, 16],
                         n_classes=10).double()
    x = torch.rand(20, 1, 16, 16, generator=g, dtype=torch.float64)
    a = diag_ggn(conv, x, method="layers", budget=5000)
    b = diag_ggn(conv, x, method="vmap")
    assert all(torch.allclose(a[k], b[k], rtol=1e-10, atol=1e-15) for k in b)
    # BatchNorm parameters and a layer used twice: not layer-wise; auto takes the vmap path
    bn = nn.Sequential(nn.Flatten(), nn.Linear(256, 5), nn.BatchNorm1d(5), nn.Tanh(),
                       nn.Linear(5, 10)).double().eval()
    with pytest.raises(BayesLRPError, match="does not fit the layer-wise GGN"):
        diag_ggn(bn, x, method="layers")
    assert all(torch.allclose(u, v) for u, v in zip(diag_ggn(bn, x).values(),
                                                     diag_ggn(bn, x, method="vmap").values()))

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(256, 256), nn.Linear(256, 10)

        def forward(self, x):
            return self.b(torch.tanh(self.a(torch.tanh(self.a(x.flatten(1))))))

    twice = Twice().double()
    got, want = diag_ggn(twice, x[:4]), diag_ggn(twice, x[:4], method="vmap")
    assert all(torch.allclose(got[k], want[k], rtol=1e-10) for k in want)


def test_laplace_on_fc2_and_conv_keeps_other_layers_and_is_seeded(tiny_data):
    x, y = tiny_data
    for arch, kw in (("fc2", {"hidden": 8}), ("conv", {"hidden": 6, "channels": 3})):
        net = bl.nets.build(arch, seed=0, in_shape=[1, 8, 8] if arch == "fc2" else [1, 16, 16],
                            n_classes=10, **kw)
        xx = x if arch == "fc2" else nn.functional.interpolate(x, size=16)
        det = bl.train.deterministic(net, xx, y, epochs=1, progress=False)
        last = bl.train.laplace(det, xx, y, kind="last_layer", n_samples=3, seed=1)
        head = [k for k in det.params][-2:]
        for k, v in det.params.items():
            same = torch.equal(last.params[k], v.expand_as(last.params[k]))
            assert same == (k not in head), k
        a = bl.train.laplace(det, xx, y, kind="diag", n_samples=3, seed=1)
        b = bl.train.laplace(det, xx, y, kind="diag", n_samples=3, seed=1)
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
        assert a.meta["prior_precision"] > 0 and a.n_samples == 3


def test_laplace_errors(tiny_data):
    x, y = tiny_data
    net = bl.nets.build("fc2", seed=0, hidden=8, in_shape=[1, 8, 8], n_classes=10)
    with pytest.raises(BayesLRPError, match="unknown Laplace kind"):
        bl.train.laplace(net, x, y, kind="kron")
    two = bl.Ensemble.from_modules([net, net])
    with pytest.raises(BayesLRPError, match="has 2 samples"):
        bl.train.laplace(two, x, y)
    with pytest.raises(BayesLRPError, match="prior_precision must be > 0"):
        bl.train.laplace(net, x, y, prior_precision=0.0)
