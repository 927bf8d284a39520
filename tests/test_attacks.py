"""Gradient attacks (FGSM, PGD) on ensembles and the per-image evaluation, against oracles."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bayeslrp as bl
from bayeslrp.attacks.gradient import loss_per_image

SHAPE = (1, 4, 4)


def _net(seed, hidden=8, shape=SHAPE):
    return bl.nets.build("fc2", seed=seed, hidden=hidden, in_shape=shape)


@pytest.fixture
def ens3():
    return bl.Ensemble.from_modules([_net(s) for s in range(3)])


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(6, *SHAPE, generator=gen)
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # pixels on the box boundary
    y = torch.randint(0, 10, (6,), generator=gen)
    return x, y


def _linear_regime_net():
    """fc2 whose hidden pre-activations are positive on [0, 1]^P, so it is the affine map
    ``x ↦ W x + b`` with ``W = W3 W2 W1`` (LeakyReLU acts as the identity)."""
    net = _net(0, hidden=6, shape=(1, 2, 2))
    with torch.no_grad():
        net[1].bias.fill_(5.0)   # |W1 x| <= 4 · 0.5 < 5
        net[3].bias.fill_(50.0)  # |W2 h| <= 6 · 0.5 · 7 < 50
    return net


def _grad(module, x, y):
    xr = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(module(xr), y, reduction="sum").backward()
    return xr.grad


def test_fgsm_matches_closed_form_gradient_of_a_linear_model():
    net = _linear_regime_net()
    ens = bl.Ensemble.from_module(net)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(5, 1, 2, 2, generator=gen)
    y = torch.tensor([0, 3, 9, 2, 2])
    with torch.no_grad():
        h1 = net[1](x.flatten(1))
        h2 = net[3](h1)
    assert bool((h1 > 0).all()) and bool((h2 > 0).all())  # the linear regime holds
    W = net[5].weight @ net[3].weight @ net[1].weight  # [10, 4]
    b = net[5].weight @ (net[3].weight @ net[1].bias + net[3].bias) + net[5].bias
    with torch.no_grad():
        p = torch.softmax(x.flatten(1) @ W.T + b, -1)
        analytic = (p - torch.nn.functional.one_hot(y, 10).float()) @ W  # ∇x = Wᵀ(softmax − onehot)
    expected = (x + 0.2 * analytic.view_as(x).sign()).clamp(0, 1)
    torch.testing.assert_close(bl.attacks.fgsm(ens, x, y, eps=0.2), expected, rtol=0, atol=1e-7)
    # targeted: descend the target class's loss
    t = torch.tensor([1, 1, 1, 1, 1])
    with torch.no_grad():
        g_t = (p - torch.nn.functional.one_hot(t, 10).float()) @ W
    expected_t = (x - 0.2 * g_t.view_as(x).sign()).clamp(0, 1)
    torch.testing.assert_close(bl.attacks.fgsm(ens, x, y, eps=0.2, targeted=t), expected_t,
                               rtol=0, atol=1e-7)


def test_expected_gradient_is_the_sign_of_the_summed_sample_gradients(ens3, batch):
    x, y = batch
    total = sum(_grad(ens3.sample_module(s), x, y) for s in range(3))
    expected = (x + 0.1 * total.sign()).clamp(0, 1)
    torch.testing.assert_close(bl.attacks.fgsm(ens3, x, y, eps=0.1), expected, rtol=0, atol=1e-7)
    # n_samples uses the first n only
    two = sum(_grad(ens3.sample_module(s), x, y) for s in range(2))
    torch.testing.assert_close(bl.attacks.fgsm(ens3, x, y, eps=0.1, n_samples=2),
                               (x + 0.1 * two.sign()).clamp(0, 1), rtol=0, atol=1e-7)


def test_per_sample_average_is_the_mean_of_single_model_fgsm(ens3, batch):
    x, y = batch
    singles = [(x + 0.1 * _grad(ens3.sample_module(s), x, y).sign()).clamp(0, 1) for s in range(3)]
    got = bl.attacks.fgsm(ens3, x, y, eps=0.1, mode="per_sample_average")
    torch.testing.assert_close(got, torch.stack(singles).mean(0), rtol=0, atol=1e-6)


def test_predictive_mode_follows_the_loss_of_the_mean_softmax(ens3, batch):
    x, y = batch
    xr = x.clone().requires_grad_(True)
    probs = torch.stack([torch.softmax(ens3.sample_module(s)(xr), -1) for s in range(3)]).mean(0)
    (-probs[torch.arange(len(y)), y].log()).sum().backward()
    expected = (x + 0.1 * xr.grad.sign()).clamp(0, 1)
    torch.testing.assert_close(bl.attacks.fgsm(ens3, x, y, eps=0.1, mode="predictive"), expected,
                               rtol=0, atol=1e-7)


def test_loss_per_image_modes(ens3, batch):
    x, y = batch
    with torch.no_grad():
        logp = torch.stack([torch.log_softmax(ens3.sample_module(s)(x), -1) for s in range(3)])
        lp_true = logp[:, torch.arange(len(y)), y]  # [3, B]
        torch.testing.assert_close(loss_per_image(ens3, x, y, 3, "expected_gradient"),
                                   -lp_true.sum(0))
        torch.testing.assert_close(loss_per_image(ens3, x, y, 3, "predictive"),
                                   -(lp_true.exp().mean(0).log()))
        torch.testing.assert_close(loss_per_image(ens3, x.expand(3, *x.shape), y, 3,
                                                  "per_sample_average"), -lp_true)


@settings(max_examples=15, deadline=None)
@given(eps=st.floats(0.01, 0.5), alpha=st.floats(0.001, 0.3), steps=st.integers(1, 5),
       seed=st.integers(0, 2**31 - 1),
       mode=st.sampled_from(["expected_gradient", "predictive", "per_sample_average"]),
       restarts=st.integers(1, 2))
def test_pgd_never_leaves_the_ball_or_the_box(eps, alpha, steps, seed, mode, restarts):
    ens = bl.Ensemble.from_modules([_net(0), _net(1)])
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(5, *SHAPE, generator=gen)
    x[:, 0, 0, 0] = 0.0
    x[:, 0, 1, 1] = 1.0
    y = torch.randint(0, 10, (5,), generator=gen)
    xa = bl.attacks.pgd(ens, x, y, eps=eps, steps=steps, alpha=alpha, mode=mode, seed=seed,
                        restarts=restarts)
    assert xa.shape == x.shape
    assert float((xa - x).abs().max()) <= eps + 1e-6
    assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0


def test_pgd_same_seed_same_points_whatever_the_batch_size(ens3, batch):
    x, y = batch
    for mode in ("expected_gradient", "per_sample_average"):
        a = bl.attacks.pgd(ens3, x, y, steps=3, seed=7, mode=mode)
        b = bl.attacks.pgd(ens3, x, y, steps=3, seed=7, mode=mode, batch_size=2)
        c = bl.attacks.pgd(ens3, x, y, steps=3, seed=8, mode=mode)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert not torch.allclose(a, c)


def test_pgd_without_random_start_from_x_equals_iterated_fgsm(ens3, batch):
    x, y = batch
    xa = x
    for _ in range(3):
        xa = bl.attacks.fgsm(ens3, xa, y, eps=0.05)
        xa = torch.min(torch.max(xa, x - 0.1), x + 0.1).clamp(0, 1)
    got = bl.attacks.pgd(ens3, x, y, eps=0.1, steps=3, alpha=0.05, random_start=False)
    torch.testing.assert_close(got, xa, rtol=0, atol=1e-6)


def test_restarts_keep_the_highest_loss_per_image(ens3, batch):
    x, y = batch
    one = bl.attacks.pgd(ens3, x, y, steps=2, alpha=0.05, seed=3, restarts=1)
    many = bl.attacks.pgd(ens3, x, y, steps=2, alpha=0.05, seed=3, restarts=4)
    with torch.no_grad():
        l1 = loss_per_image(ens3, one, y, 3, "expected_gradient")
        l4 = loss_per_image(ens3, many, y, 3, "expected_gradient")
    assert bool((l4 >= l1 - 1e-6).all())  # restart 1 of 4 is the single run
    assert bool((l4 > l1 + 1e-6).any())


def test_targeted_pgd_lowers_the_target_loss(ens3, batch):
    x, y = batch
    target = (y + 1) % 10
    xa = bl.attacks.pgd(ens3, x, y, eps=0.3, steps=10, alpha=0.05, targeted=target, seed=0)
    with torch.no_grad():
        before = loss_per_image(ens3, x, target, 3, "expected_gradient")
        after = loss_per_image(ens3, xa, target, 3, "expected_gradient")
    assert bool((after < before).all())


def test_pgd_raises_the_loss_on_a_trained_model(tiny_data):
    x, y = tiny_data
    ens = bl.train.deterministic(_net(0, hidden=32, shape=(1, 8, 8)), x, y, epochs=5, lr=1e-2,
                                 progress=False)
    xa = bl.attacks.pgd(ens, x[:50], y[:50], eps=0.2, steps=10, alpha=0.05)
    out = bl.attacks.evaluate(ens, x[:50], xa, y[:50])
    assert float(out["loss_adv"].mean()) > float(out["loss_clean"].mean()) + 1.0
    assert float(out["correct_adv"].float().mean()) < float(out["correct_clean"].float().mean())


def test_evaluate_matches_hand_computation(ens3, batch):
    x, y = batch
    xa = bl.attacks.fgsm(ens3, x, y, eps=0.1)
    out = bl.attacks.evaluate(ens3, x, xa, y, n_samples=2)
    with torch.no_grad():
        p = torch.stack([torch.softmax(ens3.sample_module(s)(x), -1) for s in range(2)]).mean(0)
        pa = torch.stack([torch.softmax(ens3.sample_module(s)(xa), -1) for s in range(2)]).mean(0)
    assert torch.equal(out["pred_clean"], p.argmax(-1))
    assert torch.equal(out["pred_adv"], pa.argmax(-1))
    assert torch.equal(out["correct_clean"], p.argmax(-1) == y)
    assert torch.equal(out["success"], (p.argmax(-1) == y) & (pa.argmax(-1) != y))
    torch.testing.assert_close(out["softmax_robustness"], 1 - (p - pa).abs().amax(-1))
    torch.testing.assert_close(out["loss_clean"], -p[torch.arange(6), y].double().log(),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["loss_adv"], -pa[torch.arange(6), y].double().log(),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["linf"], (xa - x).abs().flatten(1).amax(1))
    assert {v.shape for v in out.values()} == {torch.Size([6])}


def test_run_attack_dispatches_by_name(ens3, batch):
    x, y = batch
    torch.testing.assert_close(bl.attacks.run_attack(ens3, x, y, "fgsm", eps=0.1),
                               bl.attacks.fgsm(ens3, x, y, eps=0.1))
    from bayeslrp.plugins.attacks.gradient import attack_seed

    # the seed is derived per stream exactly as in the experiment's attack stage
    torch.testing.assert_close(bl.attacks.run_attack(ens3, x, y, "pgd", steps=2, seed=4),
                               bl.attacks.pgd(ens3, x, y, steps=2,
                                              seed=attack_seed(4, "pgd-start")))
    with pytest.raises(bl.BayesLRPError, match="unknown attack"):
        bl.attacks.run_attack(ens3, x, y, "deepfool")
    with pytest.raises(bl.BayesLRPError, match=r"attack error at steps: .*greater than 0"):
        bl.attacks.run_attack(ens3, x, y, "pgd", steps=0)
    assert bl.attacks.methods() == ("fgsm", "pgd", "topk", "region", "beta", "noise",
                                  "pgd_adaptive")


@pytest.mark.parametrize("call, message", [
    (lambda e, x, y: bl.attacks.fgsm(e, x * 2 + 0.5, y), r"\[0, 1\]"),
    (lambda e, x, y: bl.attacks.fgsm(e, x, y, mode="mean"), "unknown ensemble attack mode"),
    (lambda e, x, y: bl.attacks.fgsm(e, x, y, n_samples=4), "n_samples=4"),
    (lambda e, x, y: bl.attacks.fgsm(e, x, y[:3]), "6 images but 3"),
    (lambda e, x, y: bl.attacks.fgsm(e, x, y + 10), "outside 0..9"),
    (lambda e, x, y: bl.attacks.pgd(e, x, y, eps=0), "eps must be > 0"),
    (lambda e, x, y: bl.attacks.pgd(e, x, y, steps=0), "steps and restarts"),
    (lambda e, x, y: bl.attacks.pgd(e, x[:, 0], y), r"\[B, C, H, W\]"),
])
def test_user_errors_say_what_to_do(ens3, batch, call, message):
    x, y = batch
    with pytest.raises(bl.BayesLRPError, match=message):
        call(ens3, x, y)


def test_auto_batch_size_bounds_the_chunk():
    from bayeslrp.attacks._common import activation_numel, image_chunks
    ens = bl.Ensemble.from_module(_net(0))
    x = torch.rand(10, *SHAPE)
    assert activation_numel(ens, x) == 16 + 16 + 8 + 8 + 8 + 8 + 10
    per_image = activation_numel(ens, x) * 1 * 4 * 3.0
    chunks = list(image_chunks(ens, x, 1, None, memory_budget=int(3 * per_image)))
    assert [c.stop - c.start for c in chunks] == [2, 3, 2, 3]  # 4 chunks of <= 3, balanced
    assert math.isclose(len(list(image_chunks(ens, x, 1, 4))), 3)
