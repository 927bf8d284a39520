"""Oracles of the explainers beyond LRP (issue 14), float64 unless said otherwise.

Tolerances: exact identities (same arithmetic, different code paths) 1e-10; integrated
gradients' completeness 1 % of |u(x) − u(x₀)| at m = 256 (the Riemann error of a piecewise
linear network); Monte-Carlo checks 5 standard errors.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import bayeslrp as bl
from bayeslrp.explainers.gradients import path_points
from bayeslrp.explainers.noise import noisy_stack, weight_noise
from lrp_reference import double_ensemble, zero_biases
from lrp_reference import one_torch_thread  # noqa: F401  (autouse fixture)

ALL = bl.explainers.EXPLAINERS.names()
# small settings so every explainer runs in milliseconds on the tiny nets
FAST = {"integrated_gradients": {"steps": 8}, "smoothgrad": {"n": 4},
        "noisegrad": {"n": 3}, "fusiongrad": {"n": 2, "m": 2}}


@pytest.fixture(scope="module")
def fc2():
    gen = torch.Generator().manual_seed(11)
    nets = [bl.nets.build("fc2", seed=s, hidden=7, in_shape=(1, 5, 5)).double()
            for s in range(3)]
    return double_ensemble(nets), torch.rand(4, 1, 5, 5, generator=gen, dtype=torch.float64)


def _prototype_data(side, n=400, seed=0):
    """A learnable 10-class problem: class-dependent mean images plus noise, in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(10, 1, side, side, generator=gen)
    y = torch.arange(n) % 10
    x = (centres[y] + 0.15 * torch.randn(n, 1, side, side, generator=gen)).clamp(0, 1)
    return x, y


@pytest.fixture(scope="module")
def trained():
    """Trained fc2 (3 members) and conv (2 members) in float64, with test images.

    Completeness is checked on trained networks: an untrained random net has images whose
    explained logit barely changes along the path, so that a relative error says little.
    """
    x, y = _prototype_data(16)
    out = {}
    for arch, kw, k in (("fc2", {"hidden": 32}, 3), ("conv", {"channels": 4, "hidden": 8}, 2)):
        members = []
        for s in range(k):
            net = bl.nets.build(arch, seed=s, in_shape=(1, 16, 16), **kw)
            ens = bl.train.deterministic(net, x[:320], y[:320], epochs=10, progress=False, seed=s)
            members.append(ens.sample_module(0).double())
        out[arch] = double_ensemble(members)
    return out, x[320:328].double()


@pytest.fixture(scope="module")
def conv():
    gen = torch.Generator().manual_seed(12)
    nets = [bl.nets.build("conv", seed=s, channels=3, hidden=4, in_shape=(1, 16, 16)).double()
            for s in range(3)]
    return double_ensemble(nets), torch.rand(3, 1, 16, 16, generator=gen, dtype=torch.float64)


def _net(ens, j):
    """Sample j as a float64 module (Ensemble.sample_module builds float32 modules)."""
    net = bl.nets.build_from_spec(ens.spec).double()
    net.load_state_dict(ens.sample_params(j))
    return net.eval()


def _unit(ens, x, layer, target=None):
    """u(x) per sample and image: the explained logit (output) — by hand from the modules."""
    with torch.no_grad():
        logits = torch.stack([_net(ens, j)(x) for j in range(ens.n_samples)])
    cls = target if target is not None else logits.softmax(-1).mean(0).argmax(-1)
    return logits.gather(2, cls.view(1, -1, 1).expand(ens.n_samples, -1, 1)).squeeze(2), cls


# ----------------------------------------------------------------------------- IG
@pytest.mark.parametrize("baseline", ["zero", "lower", 0.3])
@pytest.mark.parametrize("method", ["riemann_midpoint", "trapezoid"])
def test_ig_completeness_at_256_steps(trained, baseline, method):
    models, x = trained
    ens = models["fc2"]
    attr = bl.explain(ens, x, "integrated_gradients", reduce=None, steps=256, baseline=baseline,
                      quadrature=method, bounds=(0.0, 1.0) if baseline != "lower" else (0.1, 1.0))
    u, cls = _unit(ens, x, None)
    x0 = {"zero": 0.0, "lower": 0.1, 0.3: 0.3}[baseline]
    u0, _ = _unit(ens, torch.full_like(x, x0), None, target=cls)
    diff = u - u0
    rel = (attr.flatten(2).sum(-1) - diff).abs() / diff.abs()
    assert float(rel.max()) < 0.01


def test_ig_completeness_inner_conv_layer(trained):
    models, x = trained
    ens = models["conv"]
    attr = bl.explain(ens, x, "integrated_gradients", layer=3, reduce=None, steps=256)
    # the explained unit: sum of the most active channel after conv 3's activation
    for j in range(ens.n_samples):
        with torch.no_grad():
            h = _net(ens, j)[:5](x)
        ch = h.sum((2, 3)).argmax(-1)
        u = h[torch.arange(x.shape[0]), ch].sum((1, 2))
        with torch.no_grad():
            u0 = _net(ens, j)[:5](torch.zeros_like(x))[torch.arange(x.shape[0]), ch].sum((1, 2))
        rel = (attr[j].flatten(1).sum(1) - (u - u0)).abs() / (u - u0).abs()
        assert float(rel.max()) < 0.01


@pytest.mark.parametrize("method", ["riemann_midpoint", "trapezoid"])
def test_ig_equals_hand_written_riemann_sum(fc2, method):
    ens, x = fc2
    m = 7
    x0 = torch.full_like(x, 0.2)
    got = bl.explain(ens, x, "integrated_gradients", reduce=None, steps=m, quadrature=method,
                     baseline=x0)
    _, cls = _unit(ens, x, None)
    if method == "riemann_midpoint":
        alphas, weights = [(k + 0.5) / m for k in range(m)], [1.0 / m] * m
    else:
        alphas = [k / m for k in range(m + 1)]
        weights = [0.5 / m] + [1.0 / m] * (m - 1) + [0.5 / m]
    for j in range(ens.n_samples):
        net = _net(ens, j)
        total = torch.zeros_like(x)
        for a, w in zip(alphas, weights):
            p = (x0 + a * (x - x0)).requires_grad_(True)
            (g,) = torch.autograd.grad(net(p)[torch.arange(x.shape[0]), cls].sum(), p)
            total += w * g
        ref = ((x - x0) * total).sum(1)
        torch.testing.assert_close(got[j], ref, atol=1e-12, rtol=1e-10)


def test_gradient_through_residual_blocks():
    """The explainers run on ResNet-20 (normalisation, BatchNorm, residual blocks) too."""
    from lrp_reference import randomize_batchnorm

    gen = torch.Generator().manual_seed(5)
    nets = [randomize_batchnorm(bl.nets.build("resnet20", seed=s, in_shape=(3, 4, 4)), gen)
            .double() for s in range(2)]
    ens = double_ensemble(nets)
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64, generator=gen)
    target = torch.tensor([3, 8])
    got = bl.explain(ens, x, "gradient", reduce=None, target=target)
    for j in range(2):
        p = x.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(_net(ens, j)(p)[torch.arange(2), target].sum(), p)
        torch.testing.assert_close(got[j], ref.sum(1), atol=1e-12, rtol=1e-10)
    block = bl.nets.learnable_layers(ens.module)[3]
    assert bl.explain(ens, x, "integrated_gradients", layer=block, steps=4).shape == (2, 4, 4)


def test_path_points_sum_to_one():
    for method in ("riemann_midpoint", "trapezoid"):
        a, w = path_points(5, method)
        assert math.isclose(float(w.sum()), 1.0)
        assert float(a.min()) >= 0 and float(a.max()) <= 1


# ----------------------------------------------------------------------------- grad × input
def _bias_free_relu(seed, conv=False):
    torch.manual_seed(seed)
    if conv:
        net = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Flatten(),
                            nn.Linear(4 * 3 * 3, 5, bias=False))
    else:
        net = nn.Sequential(nn.Flatten(), nn.Linear(25, 9, bias=False), nn.ReLU(),
                            nn.Linear(9, 8, bias=False), nn.ReLU(), nn.Linear(8, 5, bias=False))
    return net.double().eval()


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_grad_x_input_is_lrp0_on_bias_free_relu_net(kind):
    net = _bias_free_relu(3, conv=kind == "conv")
    side = 12 if kind == "conv" else 5
    x = torch.rand(5, 1, side, side, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    layers = bl.nets.learnable_layers(net)
    for layer in [None, *layers[:-1]]:
        gxi = bl.explain(net, x, "grad_x_input", layer=layer)
        lrp0 = bl.lrp.explain(net, x, rule="epsilon", epsilon=0.0, layer=layer)
        torch.testing.assert_close(gxi, lrp0, atol=1e-10, rtol=1e-9)


def test_grad_x_input_is_lrp0_on_bias_free_leaky_ensemble(fc2):
    ens, x = fc2
    nets = [zero_biases(_net(ens, j)) for j in range(ens.n_samples)]
    bf = double_ensemble(nets)
    for layer in (None, 1, 3):
        torch.testing.assert_close(
            bl.explain(bf, x, "grad_x_input", layer=layer, reduce=None),
            bl.lrp.explain(bf, x, rule="epsilon", epsilon=0.0, layer=layer, reduce=None),
            atol=1e-10, rtol=1e-9)


def test_gradient_by_hand_and_absolute(fc2):
    ens, x = fc2
    g = bl.explain(ens, x, "gradient", reduce=None)
    _, cls = _unit(ens, x, None)
    for j in range(ens.n_samples):
        p = x.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(_net(ens, j)(p)[torch.arange(4), cls].sum(), p)
        torch.testing.assert_close(g[j], ref.sum(1), atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(bl.explain(ens, x, "gradient", absolute=True, reduce=None),
                               g.abs(), atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- noise
@pytest.mark.parametrize("base,base_params", [("gradient", {}), ("epsilon", {}),
                                              ("integrated_gradients", {"steps": 4})])
def test_smoothgrad_sigma_zero_equals_base(fc2, base, base_params):
    ens, x = fc2
    ref = bl.explain(ens, x, base, reduce=None, layer=3, **base_params)
    for sigma, tol in ((0.0, 1e-12), (1e-9, 1e-6)):
        got = bl.explain(ens, x, "smoothgrad", reduce=None, layer=3, n=5, sigma=sigma,
                         base=base, base_params=base_params)
        torch.testing.assert_close(got, ref, atol=tol, rtol=tol)


def test_smoothgrad_is_mean_over_noisy_inputs(fc2):
    """σ > 0: the mean of the base explainer at x + σ·(range)·η_i, classes of the clean x."""
    ens, x = fc2
    from bayeslrp.explainers.noise import _input_noise

    _, cls = _unit(ens, x, None)
    got = bl.explain(ens, x, "smoothgrad", reduce=None, n=6, sigma=0.1, bounds=(0.0, 2.0))
    eta = _input_noise(6, x.shape[1:], 0, x)
    ref = torch.stack([bl.explain(ens, x + 0.2 * eta[i], "gradient", reduce=None, target=cls)
                       for i in range(6)]).mean(0)
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=1e-10)
    # an image's explanation does not depend on the other images of the batch
    torch.testing.assert_close(bl.explain(ens, x[1:3], "smoothgrad", reduce=None, n=6, sigma=0.1,
                                          bounds=(0.0, 2.0), target=cls[1:3]), got[:, 1:3],
                               atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("method", ["noisegrad", "fusiongrad"])
def test_noisegrad_sigma_zero_equals_base(fc2, method):
    ens, x = fc2
    for base in ("gradient", "alphabeta"):
        extra = {"m": 3, "sigma_x": 0.0} if method == "fusiongrad" else {}
        ref = bl.explain(ens, x, base, reduce=None)
        for sigma, tol in ((0.0, 1e-12), (1e-9, 1e-6)):
            got = bl.explain(ens, x, method, reduce=None, n=4, sigma=sigma, base=base, **extra)
            torch.testing.assert_close(got, ref, atol=tol, rtol=tol)


def test_noisegrad_weight_draws_have_mean_w_and_std_sigma_w(fc2):
    ens, _ = fc2
    stack = bl.lrp.as_stack(ens)
    n, sigma = 4000, 0.2
    noisy = noisy_stack(stack, weight_noise(stack, n, sigma, seed=5))
    assert noisy.n == stack.n * n
    learnable = set(stack.learnable_names())
    assert learnable and learnable <= set(stack.params)
    for name, value in stack.params.items():
        draws = noisy.params[name].view(stack.n, n, *value.shape[1:])
        if name not in learnable:
            assert torch.equal(draws, value.unsqueeze(1).expand_as(draws))
            continue
        w = value.unsqueeze(1)
        sd = sigma * w.abs()
        # mean: standard error σ|W|/√n; std: standard error ≈ σ|W|/√(2n)
        assert bool(((draws.mean(1) - value).abs() <= 5 * sd.squeeze(1) / math.sqrt(n)
                     + 1e-15).all())
        assert bool(((draws.std(1) - sd.squeeze(1)).abs() <= 5 * sd.squeeze(1)
                     / math.sqrt(2 * n) + 1e-15).all())


def test_noisegrad_is_mean_over_weight_draws(fc2):
    ens, x = fc2
    stack = bl.lrp.as_stack(ens)
    eta = weight_noise(stack, 3, 0.3, seed=0)
    _, cls = _unit(ens, x, None)
    got = bl.explain(ens, x, "noisegrad", reduce=None, n=3, sigma=0.3, base="gradient")
    for j in range(ens.n_samples):
        per_draw = []
        for i in range(3):
            net = _net(ens, j)
            with torch.no_grad():
                for name, p in net.named_parameters():
                    p.mul_(eta[name][i])
            per_draw.append(bl.explain(net, x, "gradient", target=cls))
        torch.testing.assert_close(got[j], torch.stack(per_draw).mean(0), atol=1e-12,
                                   rtol=1e-10)


# ----------------------------------------------------------------------------- Bayesian mean
@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("layer", [None, 3])
def test_three_sample_ensemble_is_mean_of_three_single_ones(conv, method, layer):
    ens, x = conv
    target = torch.tensor([1, 4, 7]) if layer is None else None
    params = FAST.get(method, {})
    mean, std = bl.explain(ens, x, method, layer=layer, reduce="mean_std", target=target,
                           **params)
    singles = torch.stack([bl.explain(ens.select([j]), x, method, layer=layer, target=target,
                                      **params) for j in range(3)])
    torch.testing.assert_close(mean, singles.mean(0), atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(std, singles.std(0, correction=0), atol=1e-10, rtol=1e-9)
    per = bl.explain(ens, x, method, layer=layer, reduce=None, target=target, **params)
    torch.testing.assert_close(per, singles, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "smoothgrad",
                                    "noisegrad", "epsilon_gamma_box"])
def test_predictive_target_is_the_ensemble_class(fc2, method):
    """Without a target every sample explains the predictive mean's class (SPEC §4)."""
    ens, x = fc2
    _, cls = _unit(ens, x, None)
    params = FAST.get(method, {})
    own = torch.stack([_net(ens, j)(x).argmax(-1) for j in range(ens.n_samples)])
    assert bool((own != cls).any())  # the rule matters for these images
    torch.testing.assert_close(bl.explain(ens, x, method, reduce=None, **params),
                               bl.explain(ens, x, method, reduce=None, target=cls, **params),
                               atol=0, rtol=0)
    torch.testing.assert_close(
        bl.explain(ens, x, method, reduce=None, target_mode="per_sample_argmax", **params),
        bl.explain(ens, x, method, reduce=None, target=own, **params), atol=0, rtol=0)


# ----------------------------------------------------------------------------- gradcheck
GRADCHECK_PARAMS = {"integrated_gradients": {"steps": 3}, "smoothgrad": {"n": 2},
                    "noisegrad": {"n": 2}, "fusiongrad": {"n": 2, "m": 2}}


@pytest.mark.parametrize("method", ALL)
def test_gradcheck_float64(method):
    """Second-order differentiability (the saliency attacks): with the softplus surrogate at
    the output and an inner layer, and through the exact (piecewise smooth) network."""
    ens = double_ensemble([bl.nets.build("fc2", seed=s, hidden=5, in_shape=(1, 3, 3)).double()
                           for s in range(2)])
    x = torch.rand(2, 1, 3, 3, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(22)).requires_grad_(True)
    params = GRADCHECK_PARAMS.get(method, {})
    target = torch.tensor([2, 5])
    for layer, beta in ((None, 5.0), (3, 5.0), (None, None)):
        def fn(inp):
            return bl.explain(ens, inp, method, layer=layer, create_graph=True,
                              surrogate_beta=beta, target=target if layer is None else None,
                              **params)
        assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", ["epsilon_plus", "epsilon_alpha2_beta1", "epsilon_gamma_box",
                                    "grad_x_input", "integrated_gradients"])
def test_gradcheck_float64_conv(method):
    ens = double_ensemble([bl.nets.build("conv", seed=s, channels=2, hidden=3,
                                         in_shape=(1, 16, 16)).double() for s in range(2)])
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(22)).requires_grad_(True)
    params = GRADCHECK_PARAMS.get(method, {})
    assert torch.autograd.gradcheck(
        lambda inp: bl.explain(ens, inp, method, create_graph=True, surrogate_beta=5.0,
                               **params), (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- API, errors
def test_explain_api_errors(fc2):
    ens, x = fc2
    with pytest.raises(bl.BayesLRPError, match="unknown explainer"):
        bl.explain(ens, x, "nope")
    with pytest.raises(bl.BayesLRPError, match="seed='one'"):
        bl.explain(ens, x, "gradient", seed="one")
    with pytest.raises(bl.BayesLRPError, match="integrated_gradients"):
        bl.explain(ens, x, "integrated_gradients", steps=0)
    with pytest.raises(bl.BayesLRPError, match="unknown base explainer"):
        bl.explain(ens, x, "smoothgrad", base="nope")
    with pytest.raises(bl.BayesLRPError, match="baseline"):
        bl.explain(ens, x, "integrated_gradients", baseline=torch.zeros(2, 2))
    with pytest.raises(bl.BayesLRPError, match="n_samples"):
        bl.explain(ens, x, "gradient", n_samples=9)


def test_explain_lrp_rules_match_lrp_explain(fc2):
    ens, x = fc2
    for rule in ("epsilon", "gamma", "alphabeta"):
        torch.testing.assert_close(bl.explain(ens, x, rule, layer=3),
                                   bl.lrp.explain(ens, x, rule=rule, layer=3), atol=0, rtol=0)


def test_float32_default_dtype_and_shapes(fc2):
    net = bl.nets.build("fc2", seed=0, hidden=8, in_shape=(1, 5, 5))
    x = torch.rand(3, 1, 5, 5)
    for method in ALL:
        R = bl.explain(net, x, method, **FAST.get(method, {}))
        assert R.shape == (3, 5, 5) and R.dtype == torch.float32 and torch.isfinite(R).all()
