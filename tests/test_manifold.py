"""Tangent spaces and normal shares (bl.analysis.manifold) against known manifolds.

Oracles: points on a known d-dimensional linear subspace and on a randomly rotated, embedded
sphere (true tangent spaces in closed form); functions of the projection onto the manifold
(gradient exactly tangent); an ensemble with independent random normal components (normal
norm of the mean ∝ 1/√n); exact per-sample input gradients against single-network autograd.
"""
from __future__ import annotations

import math

import pytest
import torch

import bayeslrp as bl
from bayeslrp.analysis import manifold as mf
from bayeslrp.analysis.manifold_measures import (cumulative_means, sample_input_gradients,
                                                 share_rows)
from bayeslrp.errors import BayesLRPError

DEG = math.pi / 180


def _orthonormal(gen, rows, cols):
    q, _ = torch.linalg.qr(torch.randn(rows, cols, generator=gen, dtype=torch.float64))
    return q


def _linear_manifold(n_train=2000, n_test=20, size=50, dim=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    basis = _orthonormal(gen, size, dim)                   # true tangent space [D, d]
    offset = torch.randn(size, generator=gen, dtype=torch.float64)

    def draw(n):
        return torch.randn(n, dim, generator=gen, dtype=torch.float64) @ basis.T + offset

    return draw(n_train), draw(n_test), basis


def _sphere(n_train=6000, n_test=20, size=30, dim=2, seed=0):
    """Points on the unit ``dim``-sphere in R^(dim+1), rotated into R^size."""
    gen = torch.Generator().manual_seed(seed)
    embed = _orthonormal(gen, size, dim + 1)

    def draw(n):
        z = torch.randn(n, dim + 1, generator=gen, dtype=torch.float64)
        return z / z.norm(dim=1, keepdim=True)

    z_train, z_test = draw(n_train), draw(n_test)
    # the tangent space at z is the orthogonal complement of z inside the (dim+1)-space
    eye = torch.eye(dim + 1, dtype=torch.float64)
    tangents = []
    for z in z_test:
        proj = eye - torch.outer(z, z)
        u, _, _ = torch.linalg.svd(proj)
        tangents.append(embed @ u[:, :dim])
    return z_train @ embed.T, z_test @ embed.T, torch.stack(tangents)


def test_nearest_neighbours_equal_brute_force():
    gen = torch.Generator().manual_seed(1)
    train, test = torch.rand(1000, 3, 4, 4, generator=gen), torch.rand(7, 3, 4, 4, generator=gen)
    d2, idx = mf.nearest_neighbours(test, train, k=9, chunk=128)  # several chunks
    full = torch.cdist(test.flatten(1).double(), train.flatten(1).double()) ** 2
    want_d, want_i = full.topk(9, dim=1, largest=False)
    assert torch.equal(idx, want_i)
    torch.testing.assert_close(d2.double(), want_d, atol=1e-4, rtol=1e-5)


def test_linear_subspace_tangent_space_and_zero_normal_share():
    train, test, basis = _linear_manifold()
    bases = mf.tangent_spaces(test, train, k=30, dim=5)
    assert bases.shape == (20, 50, 5)
    angles = mf.largest_principal_angle(bases, basis.expand(20, -1, -1))
    assert float(angles.max()) < 1e-6  # exact subspace: the estimate is exact
    # a function of the projection onto the subspace has a purely tangent gradient
    w = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = test.clone().requires_grad_(True)
    value = torch.sin((x @ basis) @ w).sum()
    (grad,) = torch.autograd.grad(value, x)
    share = mf.normal_share(grad, bases)
    assert float(share.max()) < 1e-3
    # the random-subspace control of the same dimension sees most of it as normal
    control = mf.normal_share(grad, mf.random_bases(20, 50, 5, seed=3))
    assert float(control.min()) > 0.5


@pytest.mark.parametrize("dim,k", [(2, 40), (3, 60)])
def test_sphere_tangent_space_within_5_degrees(dim, k):
    train, test, truth = _sphere(n_train=6000 if dim == 2 else 20000, dim=dim)
    bases = mf.tangent_spaces(test, train, k=k, dim=dim)
    angles = mf.largest_principal_angle(bases, truth)
    assert float(angles.max()) < 5 * DEG, float(angles.max()) / DEG


def test_explained_variance_picks_the_dimension():
    train, test, basis = _linear_manifold(dim=4)
    # tiny isotropic noise: 4 directions explain almost everything
    noisy = train + 1e-4 * torch.randn(train.shape, dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(5))
    bases = mf.tangent_spaces(test, noisy, k=30, dim=None, variance=0.99)
    assert bases.shape[2] == 4
    assert float(mf.largest_principal_angle(bases, basis.expand(20, -1, -1)).max()) < 1 * DEG


def test_zero_padded_columns_project_to_nothing():
    gen = torch.Generator().manual_seed(0)
    u = _orthonormal(gen, 10, 3).unsqueeze(0)
    padded = torch.cat([u, torch.zeros(1, 10, 2, dtype=torch.float64)], dim=2)
    g = torch.randn(4, 1, 10, dtype=torch.float64, generator=gen)  # 4 leading samples
    torch.testing.assert_close(mf.normal_share(g, padded), mf.normal_share(g, u))
    assert mf.normal_share(g, u).shape == (4, 1)


def test_normal_share_of_hand_example():
    u = torch.tensor([[[1.0], [0.0]]], dtype=torch.float64)  # the x-axis in R²
    g = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    assert float(mf.normal_share(g, u)) == pytest.approx(0.8)
    tangent, normal = mf.tangent_normal_norms(g, u)
    assert (float(tangent), float(normal)) == pytest.approx((3.0, 4.0))
    assert math.isnan(float(mf.normal_share(torch.zeros(1, 2), u)))


def test_normal_part_of_the_mean_falls_as_one_over_sqrt_n():
    """Members: one shared tangent vector plus independent N(0, σ²) normal components."""
    size, dim, points, members, sigma = 400, 10, 40, 64, 0.5
    gen = torch.Generator().manual_seed(7)
    u = torch.stack([_orthonormal(gen, size, dim) for _ in range(points)])   # [B, D, d]
    tangent = torch.einsum("bdk,bk->bd", u, torch.randn(points, dim, generator=gen,
                                                         dtype=torch.float64))
    noise = torch.randn(members, points, size, generator=gen, dtype=torch.float64) * sigma
    noise = noise - torch.einsum("bdk,sbk->sbd", u, torch.einsum("sbd,bdk->sbk", noise, u))
    members_g = tangent + noise
    ns = [1, 4, 16, 64]
    means = cumulative_means(members_g, ns)
    _, normal = mf.tangent_normal_norms(means, u)                           # [len(ns), B]
    expected = sigma * math.sqrt(size - dim)
    for i, n in enumerate(ns):
        scaled = float(normal[i].mean()) * math.sqrt(n)
        # each normal norm is a χ with D − d = 390 dof: ≈ 3.6 % relative std per point,
        # 0.6 % over 40 points; 3 % is five standard errors
        assert scaled == pytest.approx(expected, rel=0.03), (n, scaled, expected)
    shares = mf.normal_share(means, u).median(dim=1).values
    assert bool((shares[1:] < shares[:-1]).all())


def test_bad_arguments_are_one_line_errors():
    train, test, _ = _linear_manifold()
    with pytest.raises(BayesLRPError, match="k must be"):
        mf.tangent_spaces(test, train, k=0)
    with pytest.raises(BayesLRPError, match="dim must be"):
        mf.tangent_spaces(test, train, k=5, dim=5)
    with pytest.raises(BayesLRPError, match="same shape"):
        mf.nearest_neighbours(test, train[:, :10], k=3)
    with pytest.raises(BayesLRPError, match="do not match"):
        mf.normal_share(torch.zeros(3, 7), torch.zeros(3, 8, 2))


def _tiny_ensemble(samples=3):
    nets = [bl.nets.build("fc2", seed=s, hidden=8, in_shape=[1, 4, 4], n_classes=3)
            for s in range(samples)]
    return bl.Ensemble.from_modules(nets), nets


@pytest.mark.parametrize("quantity", ["prediction", "loss"])
def test_sample_input_gradients_equal_each_members_autograd(quantity):
    ens, nets = _tiny_ensemble()
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(5, 1, 4, 4, generator=gen), torch.tensor([0, 1, 2, 0, 1])
    target = torch.tensor([2, 2, 1, 0, 0])
    got = sample_input_gradients(ens, x, quantity, y=y, target=target, image_chunk=2)
    assert got.shape == (3, 5, 1, 4, 4)
    for j, net in enumerate(nets):
        xi = x.clone().requires_grad_(True)
        logits = net(xi)
        if quantity == "prediction":
            value = logits.gather(1, target.view(-1, 1)).sum()
        else:
            value = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
        (want,) = torch.autograd.grad(value, xi)
        torch.testing.assert_close(got[j], want, atol=1e-6, rtol=1e-5)


def test_prediction_target_defaults_to_the_predictive_class():
    ens, _ = _tiny_ensemble()
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    explicit = sample_input_gradients(ens, x, "prediction", target=ens.predict(x))
    torch.testing.assert_close(sample_input_gradients(ens, x, "prediction"), explicit)


def test_share_rows_layout():
    values = torch.randn(3, 2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    u = mf.random_bases(2, 4, 1, seed=0)
    rows = share_rows(values, {"pca": u}, [1, 2, 3, 50], {"quantity": "loss"}, [10, 20])
    samples = rows[rows["kind"] == "sample"]
    means = rows[rows["kind"] == "mean"]
    assert len(samples) == 3 * 2 and sorted(means["n"].unique()) == [1, 2, 3]  # 50 > S dropped
    one = float(samples.query("sample == 1 and point == 20")["share"].iloc[0])
    assert one == pytest.approx(float(mf.normal_share(values[1], u)[1]))
    two = float(means.query("n == 2 and point == 10")["share"].iloc[0])
    assert two == pytest.approx(float(mf.normal_share(values[:2].mean(0), u)[0]))
    assert set(rows["quantity"]) == {"loss"}
