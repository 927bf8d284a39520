"""Closed-form properties of bayeslrp.lrp: conservation, LRP-0 = gradient × input, z⁺ rule,
the γ rule's weights, inner-layer seeds by hand, and the Bayesian mean / std over samples."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import bayeslrp as bl
from lrp_reference import double_ensemble, randomize_batchnorm, zero_biases
from lrp_reference import one_torch_thread  # noqa: F401  (autouse fixture)

TINY = dict(epsilon=1e-10, stabilizer=1e-12)


def _bias_free(arch, n=2, **kw):
    gen = torch.Generator().manual_seed(11)
    nets = [zero_biases(randomize_batchnorm(bl.nets.build(arch, seed=s, **kw), gen)).double()
            for s in range(n)]
    return double_ensemble(nets), nets


NETS = {
    "fc2": (dict(hidden=9, in_shape=(1, 6, 6)), (1, 6, 6)),
    "conv": (dict(channels=3, hidden=5, in_shape=(1, 20, 20)), (1, 20, 20)),
    "resnet20": (dict(in_shape=(3, 4, 4), normalize=False), (3, 4, 4)),
}


def _x(shape, n=3, seed=12):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _logit_of_target(ens, x):
    logits = ens.logits(x)  # [S, B, C]
    cls = logits.softmax(-1).mean(0).argmax(-1)
    return logits.gather(-1, cls.expand(logits.shape[0], -1).unsqueeze(-1)).squeeze(-1), cls


# ------------------------------------------------------------------ conservation
@pytest.mark.parametrize("arch", list(NETS))
@pytest.mark.parametrize("rule,kw", [("epsilon", TINY), ("gamma", {"stabilizer": 1e-12}),
                                     ("alphabeta", {"stabilizer": 1e-12})],
                         ids=["eps0", "gamma", "ab10"])
def test_conservation_on_bias_free_nets(arch, rule, kw):
    kwargs, shape = NETS[arch]
    ens, _ = _bias_free(arch, **kwargs)
    x = _x(shape)
    heat = bl.lrp.explain(ens, x, rule=rule, reduce=None, **kw)
    logit, _ = _logit_of_target(ens, x)
    torch.testing.assert_close(heat.sum((-2, -1)), logit, rtol=1e-4, atol=0)


@pytest.mark.parametrize("arch", list(NETS))
def test_inner_layer_conservation(arch):
    """Σ R at the input = the seeded activation (unit) or channel sum, for every inner layer."""
    kwargs, shape = NETS[arch]
    ens, nets = _bias_free(arch, **kwargs)
    x = _x(shape)
    inner = bl.nets.learnable_layers(ens.module)[:-1]
    for layer in sorted(set(inner[:2] + inner[-2:])):
        cut = bl.lrp.resolve_layer(ens.module, layer)
        heat = bl.lrp.explain(ens, x, layer=layer, reduce=None, **TINY)
        h = torch.stack([net[:cut.stop + 1](x) for net in nets]).detach()
        seeded = (h.amax(-1) if h.dim() == 3 else h.sum((-2, -1)).amax(-1))
        torch.testing.assert_close(heat.sum((-2, -1)), seeded, rtol=1e-4, atol=1e-9)
        all_heat = bl.lrp.explain(ens, x, layer=layer, reduce=None, inner="all", **TINY)
        torch.testing.assert_close(all_heat.sum((-2, -1)), h.flatten(2).sum(-1), rtol=1e-4,
                                   atol=1e-9)


# ------------------------------------------------------------------ LRP-0 = gradient x input
@pytest.mark.parametrize("arch", list(NETS))
def test_lrp0_equals_gradient_times_input(arch):
    kwargs, shape = NETS[arch]
    ens, nets = _bias_free(arch, n=1, **kwargs)
    x = _x(shape).requires_grad_(True)
    logits = nets[0](x)
    cls = logits.argmax(-1)
    (grad,) = torch.autograd.grad(logits.gather(1, cls[:, None]).sum(), x)
    expected = (grad * x).sum(1).detach()
    heat = bl.lrp.explain(ens, x.detach(), rule="epsilon", epsilon=1e-12, stabilizer=1e-14)
    torch.testing.assert_close(heat, expected, rtol=1e-7, atol=1e-10)


# ------------------------------------------------------------------ alpha-beta(1,0) = z+ rule
def test_alphabeta_10_equals_zplus_rule():
    torch.manual_seed(13)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8, bias=False), nn.ReLU(),
                        nn.Linear(8, 6, bias=False), nn.ReLU(),
                        nn.Linear(6, 4, bias=False)).double()
    x = torch.rand(5, 1, 3, 4, dtype=torch.float64)
    heat = bl.lrp.explain(net, x, rule="alphabeta", alpha=1.0, beta=0.0, stabilizer=1e-15)
    # z+ rule (Montavon et al. 2019, eq. for a >= 0): R_j = a_j Σ_k w+_jk R_k / Σ_j a_j w+_jk
    a0 = x.flatten(1)
    a1 = torch.relu(a0 @ net[1].weight.T)
    a2 = torch.relu(a1 @ net[3].weight.T)
    out = a2 @ net[5].weight.T
    cls = out.argmax(-1)
    r = torch.zeros_like(out).scatter(1, cls[:, None], out.gather(1, cls[:, None]))
    for a, w in ((a2, net[5].weight), (a1, net[3].weight), (a0, net[1].weight)):
        wp = w.clamp(min=0)
        r = a * ((r / (a @ wp.T + 1e-15)) @ wp)
    torch.testing.assert_close(heat, r.view(5, 3, 4), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ gamma: w + γ w⁺
def test_gamma_rule_uses_w_plus_gamma_w_positive_not_squared():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 1)).double()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[2.0, -1.0, 0.5]]))
        net[1].bias.copy_(torch.tensor([0.3]))
    x = torch.tensor([[[[1.0, 1.0, 2.0]]]], dtype=torch.float64)
    g = 0.25
    heat = bl.lrp.explain(net, x, rule="gamma", gamma=g, stabilizer=0.0)
    logit = 2.0 - 1.0 + 1.0 + 0.3                            # the seed: the true logit 2.3
    wg = [2.0 + g * 2.0, -1.0, 0.5 + g * 0.5]                 # w + γ w⁺
    zg = wg[0] * 1 + wg[1] * 1 + wg[2] * 2 + (0.3 + g * 0.3)  # bias b + γ b⁺
    expected = torch.tensor([[[1 * wg[0], 1 * wg[1], 2 * wg[2]]]], dtype=torch.float64) / zg * logit
    torch.testing.assert_close(heat, expected)
    squared = [2.0 + g * 4.0, -1.0, 0.5 + g * 0.25]           # TorchLRP's w + γ (w⁺)²
    zs = squared[0] + squared[1] + 2 * squared[2] + (0.3 + g * 0.09)
    assert not torch.allclose(heat[0, 0, 0], torch.tensor(squared[0] / zs * logit,
                                                          dtype=torch.float64), atol=1e-3)


def test_epsilon_rule_by_hand_with_bias():
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[0.5, -0.25]]))
        net[1].bias.copy_(torch.tensor([-0.1]))
    x = torch.tensor([[[[2.0, 4.0]]]], dtype=torch.float64)
    z = 1.0 - 1.0 - 0.1                                      # -0.1: sign -1
    heat = bl.lrp.explain(net, x, rule="epsilon", epsilon=0.1)
    expected = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64) / (z - 0.1) * z
    torch.testing.assert_close(heat, expected)
    heat_one = bl.lrp.explain(net, x, rule="epsilon", epsilon=0.1, seed="one")
    torch.testing.assert_close(heat_one, expected / z)


# ------------------------------------------------------------------ inner-layer seeds by hand
def test_inner_linear_seed_by_hand():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 1.0],
                                          [0.5, 1.0, -1.0, 0.0],
                                          [0.0, 0.0, 2.0, -1.0]]))
        net[1].bias.copy_(torch.tensor([0.0, 0.5, 0.0]))
    x = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64).view(1, 1, 2, 2)
    # z = [2, 0.5+2-0.5+0.5 = 2.5, 1-1 = 0] -> unit 1 is the most activated, h = 2.5
    heat = bl.lrp.explain(net, x, rule="epsilon", layer=1, epsilon=0.1)
    contrib = torch.tensor([0.5 * 1.0, 1.0 * 2.0, -1.0 * 0.5, 0.0], dtype=torch.float64)
    torch.testing.assert_close(heat.flatten(), contrib / 2.6 * 2.5)
    heat_one = bl.lrp.explain(net, x, rule="epsilon", layer=1, epsilon=0.1, seed="one")
    torch.testing.assert_close(heat_one.flatten(), contrib / 2.6)
    heat_unit0 = bl.lrp.explain(net, x, rule="epsilon", layer=1, epsilon=0.1, target=0)
    torch.testing.assert_close(heat_unit0.flatten(),
                               torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64) / 2.1 * 2.0)
    heat_all = bl.lrp.explain(net, x, rule="epsilon", layer=1, epsilon=0.1, inner="all")
    # unit 2 has z = 0 (ReLU output 0): it contributes nothing
    torch.testing.assert_close(heat_all, heat + heat_unit0)


def test_inner_conv_seed_by_hand():
    net = nn.Sequential(nn.Conv2d(1, 2, 2), nn.LeakyReLU(0.5), nn.Flatten(),
                        nn.Linear(8, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]],
                                          [[[0.0, -1.0], [1.0, 0.0]]]]))
        net[0].bias.copy_(torch.tensor([0.0, 0.25]))
    x = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [0.0, 0.5, 1.0]],
                     dtype=torch.float64).view(1, 1, 3, 3)
    img = x[0, 0]
    # channel 0: z = x[i,j] + x[i+1,j+1]; channel 1: z = x[i+1,j] - x[i,j+1] + 0.25
    z0 = torch.tensor([[img[0, 0] + img[1, 1], img[0, 1] + img[1, 2]],
                       [img[1, 0] + img[2, 1], img[1, 1] + img[2, 2]]])
    z1 = torch.tensor([[img[1, 0] - img[0, 1], img[1, 1] - img[0, 2]],
                       [img[2, 0] - img[1, 1], img[2, 1] - img[1, 2]]]) + 0.25
    leaky = lambda t: torch.where(t > 0, t, 0.5 * t)  # noqa: E731
    assert leaky(z0).sum() > leaky(z1).sum()          # channel 0 is the most activated
    eps = 0.1
    expected = torch.zeros(3, 3, dtype=torch.float64)
    for i in range(2):
        for j in range(2):
            ratio = leaky(z0[i, j]) / (z0[i, j] + eps)  # seed = activation, z > 0 here
            expected[i, j] += img[i, j] * ratio
            expected[i + 1, j + 1] += img[i + 1, j + 1] * ratio
    heat = bl.lrp.explain(net, x, rule="epsilon", layer=0, epsilon=eps)
    torch.testing.assert_close(heat[0], expected)
    # inner="all" is linear in the seed: the sum of the two channels' explanations
    parts = sum(bl.lrp.explain(net, x, rule="epsilon", layer=0, target=c) for c in range(2))
    torch.testing.assert_close(bl.lrp.explain(net, x, rule="epsilon", layer=0, inner="all"), parts)


def test_inner_argmax_is_taken_per_sample():
    """Each posterior sample seeds the unit that is most activated in *its own* forward pass."""
    nets = [bl.nets.build("fc2", hidden=8, in_shape=(1, 4, 4), seed=s) for s in range(3)]
    ens = bl.Ensemble.from_modules(nets)
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    per_sample = bl.lrp.explain(ens, x, layer=3, reduce=None)
    for j, net in enumerate(nets):
        unit = net[:5](x).argmax(-1)
        single = bl.lrp.explain(net, x, layer=3, target=unit)
        torch.testing.assert_close(per_sample[j], single, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ Bayesian mean and std
def _three():
    nets = [bl.nets.build("conv", channels=2, hidden=3, in_shape=(1, 16, 16), seed=s)
            for s in range(3)]
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    return bl.Ensemble.from_modules(nets), [bl.Ensemble.from_module(n) for n in nets], x


@pytest.mark.parametrize("rule", ["epsilon", "gamma", "alphabeta"])
@pytest.mark.parametrize("layer", [0, 7])
def test_mean_equals_mean_of_single_sample_explanations(rule, layer):
    ens, singles, x = _three()
    target = ens.predict(x) if layer == 7 else None
    singles_heat = torch.stack([bl.lrp.explain(s, x, rule=rule, layer=layer, target=target)
                                for s in singles])
    mean, std = bl.lrp.explain_with_std(ens, x, rule=rule, layer=layer)
    torch.testing.assert_close(mean, singles_heat.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(std, singles_heat.std(0, correction=0), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(bl.lrp.explain(ens, x, rule=rule, layer=layer), mean)


def test_predictive_target_differs_from_per_sample_argmax_and_both_are_honoured():
    ens, singles, x = _three()
    logits = ens.logits(x)
    own = torch.stack([bl.lrp.explain(s, x) for s in singles])    # each sample: its own argmax
    per_sample = bl.lrp.explain(ens, x, reduce=None, target_mode="per_sample_argmax")
    torch.testing.assert_close(per_sample, own, rtol=1e-5, atol=1e-6)
    predictive = bl.lrp.explain(ens, x, reduce=None)
    pred = logits.softmax(-1).mean(0).argmax(-1)
    expected = torch.stack([bl.lrp.explain(s, x, target=pred) for s in singles])
    torch.testing.assert_close(predictive, expected, rtol=1e-5, atol=1e-6)


def test_n_samples_uses_the_first_samples():
    ens, singles, x = _three()
    target = ens.predict(x, n_samples=2)
    got = bl.lrp.explain(ens, x, n_samples=2, reduce=None)
    expected = torch.stack([bl.lrp.explain(s, x, target=target) for s in singles[:2]])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("budget", [1, 200_000, 3_000_000])
def test_chunking_does_not_change_results(budget):
    ens, _, x = _three()
    for layer in (None, 3):
        for mode in ("predictive", "per_sample_argmax"):
            full = bl.lrp.explain(ens, x, layer=layer, reduce=None, target_mode=mode)
            chunked = bl.lrp.explain(ens, x, layer=layer, reduce=None, target_mode=mode,
                                     memory_budget=budget)
            torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
        m1, s1 = bl.lrp.explain_with_std(ens, x, layer=layer)
        m2, s2 = bl.lrp.explain_with_std(ens, x, layer=layer, memory_budget=budget)
        torch.testing.assert_close(m2, m1, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(s2, s1, rtol=1e-4, atol=1e-6)
    plan = bl.lrp.chunk_plan(ens, x, memory_budget=budget)
    assert plan["sample_chunk"] * plan["image_chunk"] >= 1


def test_chunk_plan_keeps_all_samples_together_when_they_fit():
    ens, _, x = _three()
    plan = bl.lrp.chunk_plan(ens, x)
    assert plan == {**plan, "sample_chunk": 3, "image_chunk": 5, "chunks": 1}
    tiny = bl.lrp.chunk_plan(ens, x, memory_budget=1)
    assert (tiny["sample_chunk"], tiny["image_chunk"], tiny["chunks"]) == (1, 1, 15)


# ------------------------------------------------------------------ output format
def test_shapes_dtype_and_reductions():
    ens, _, x = _three()
    mean = bl.lrp.explain(ens, x)
    assert mean.shape == (5, 16, 16) and mean.dtype == torch.float32
    assert mean.device == ens.device and not mean.requires_grad
    full = bl.lrp.explain(ens, x, reduce=None)
    assert full.shape == (3, 5, 16, 16)
    torch.testing.assert_close(full.mean(0), mean)
    m, s = bl.lrp.explain(ens, x, reduce="mean_std")
    torch.testing.assert_close(m, mean)
    torch.testing.assert_close(s, full.std(0, correction=0), rtol=1e-4, atol=1e-6)
    assert (s >= 0).all()
    # float64 inputs are computed in the model's dtype
    assert bl.lrp.explain(ens, x.double()).dtype == torch.float32


def test_heatmap_sums_relevance_over_input_channels():
    ens, nets = _bias_free("resnet20", n=1, **NETS["resnet20"][0])
    x = _x((3, 4, 4), n=2)
    heat = bl.lrp.explain(ens, x, **TINY)
    logits = nets[0](x)
    torch.testing.assert_close(heat.sum((-2, -1)), logits.amax(-1), rtol=1e-4, atol=0)
    assert heat.shape == (2, 4, 4)


def test_surrogate_converges_to_the_exact_explanation():
    ens, _, x = _three()
    exact = bl.lrp.explain(ens, x, layer=3)
    smooth = bl.lrp.explain(ens, x, layer=3, surrogate_beta=1e4)
    rough = bl.lrp.explain(ens, x, layer=3, surrogate_beta=1.0)
    err_smooth = (smooth - exact).abs().max()
    err_rough = (rough - exact).abs().max()
    assert err_smooth < 1e-2 * exact.abs().max() < err_rough
    assert math.isfinite(float(err_rough))


@pytest.mark.parametrize("arch,layer", [("fc2", 1), ("fc2", 3), ("conv", 0), ("conv", 3),
                                        ("resnet20", 1), ("resnet20", 7)])
def test_single_seed_shortcut_equals_dense_transpose(arch, layer, monkeypatch):
    """The gather / per-pair transposed conv used for one-unit seeds equals the dense product."""
    from bayeslrp.lrp import maps
    kwargs, shape = NETS[arch]
    if arch == "fc2":
        kwargs = {**kwargs, "hidden": 40}  # wide enough for the gather path
    ens, _ = _bias_free(arch, **kwargs)
    x = _x(shape)
    for rule in ("epsilon", "alphabeta"):
        fast = bl.lrp.explain(ens, x, rule=rule, layer=layer, reduce=None)
        monkeypatch.setattr(maps, "SPARSE_SEEDS", False)
        dense = bl.lrp.explain(ens, x, rule=rule, layer=layer, reduce=None)
        monkeypatch.setattr(maps, "SPARSE_SEEDS", True)
        torch.testing.assert_close(fast, dense, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arch", list(NETS))
@pytest.mark.parametrize("rule", ["epsilon", "gamma", "alphabeta"])
def test_mean_reduction_equals_mean_of_per_sample_heatmaps(arch, rule):
    """reduce="mean" sums the first layer's transpose over samples; same numbers."""
    kwargs, shape = NETS[arch]
    gen = torch.Generator().manual_seed(31)
    nets = [randomize_batchnorm(bl.nets.build(arch, seed=s, **kwargs), gen).double()
            for s in range(3)]
    ens = double_ensemble(nets)
    x = _x(shape)
    for layer in bl.nets.learnable_layers(ens.module)[::2]:
        for inner in ("max", "all"):
            full = bl.lrp.explain(ens, x, rule=rule, layer=layer, reduce=None, inner=inner)
            mean = bl.lrp.explain(ens, x, rule=rule, layer=layer, inner=inner)
            torch.testing.assert_close(mean, full.mean(0), rtol=1e-9, atol=1e-10)


def test_plan_policy():
    from bayeslrp.lrp import engine
    ws = engine.WORKING_SET
    # dense net, predictive class: all samples of an image together, images by the budget
    assert engine._plan(100, 500, (40_000, 3_000), 1 << 30, True) == (100, 268)
    # large activations: one sample at a time, a cache-sized batch of images
    assert engine._plan(100, 500, (1_800_000, 131_072), 1 << 30, True) == (1, ws // 131_072)
    assert engine._plan(100, 500, (40_000, 3_000), 1 << 30, False) == (1, min(500, ws // 3_000))
    # the memory budget wins over everything
    assert engine._plan(100, 500, (1_800_000, 131_072), 4_000_000, False) == (1, 2)


def test_forced_chunks_give_the_same_numbers():
    ens, _, x = _three()
    for layer in (None, 0):
        ref = bl.lrp.explain(ens, x, layer=layer, reduce=None)
        for chunks in [(1, 1), (2, 3), (3, 5), (100, 100)]:
            got = bl.lrp.explain(ens, x, layer=layer, reduce=None, chunks=chunks)
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(bl.BayesLRPError, match="chunks"):
        bl.lrp.explain(ens, x, chunks=(0, 2))
