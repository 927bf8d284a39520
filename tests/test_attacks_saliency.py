"""Saliency attacks (top-k, target region, manipulation) with stand-in explanations.

The explanation is injected through ``explain_fn``: closed-form heatmaps (``c ⊙ x``, ``x``) give
exact oracles for the steps; gradient × input (second order through autograd) exercises the
attacks on a trained network.
"""
from __future__ import annotations

import pytest
import torch

import bayeslrp as bl
from bayeslrp.attacks.saliency import random_other_indices, random_region

SHAPE = (1, 8, 8)


def _constant_net(cls=3):
    """fc2 whose prediction is always ``cls`` (all weights zero)."""
    net = bl.nets.build("fc2", hidden=4, in_shape=SHAPE)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net[5].bias[cls] = 5.0
    return bl.Ensemble.from_module(net)


def linear_explain(c):
    """Heatmap ``R = c ⊙ x`` (independent of the network)."""
    def explain(ens, x, *, rule, layer, n_samples, create_graph, surrogate_beta, **kwargs):
        return c * x[:, 0]
    return explain


def identity_explain(ens, x, *, rule, layer, n_samples, create_graph, surrogate_beta, **kwargs):
    return x[:, 0]


def grad_x_input(ens, x, *, rule, layer, n_samples, create_graph, surrogate_beta, **kwargs):
    """Gradient × input of the predictive-mean class's mean logit (second order when asked)."""
    with torch.enable_grad():
        xr = x if x.requires_grad else x.detach().requires_grad_(True)
        logits = ens.logits(xr, n_samples)
        cls = logits.detach().softmax(-1).mean(0).argmax(-1)
        chosen = logits.mean(0).gather(1, cls[:, None]).sum()
        (g,) = torch.autograd.grad(chosen, xr, create_graph=create_graph)
        R = (g * xr).sum(1)
    return R if create_graph else R.detach()


@pytest.fixture
def images():
    return torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def trained():
    gen = torch.Generator().manual_seed(0)
    centres = torch.rand(10, *SHAPE, generator=gen)
    y = torch.arange(300) % 10
    x = (centres[y] + 0.15 * torch.randn(300, *SHAPE, generator=gen)).clamp(0, 1)
    nets = [bl.nets.build("fc2", seed=s, hidden=32, in_shape=SHAPE) for s in range(2)]
    members = [bl.train.deterministic(n, x, y, epochs=4, lr=1e-2, progress=False, seed=s)
               for s, n in enumerate(nets)]
    ens = bl.Ensemble.from_modules([m.sample_module(0) for m in members])
    return ens, x[:24], y[:24]


def test_region_steps_follow_the_closed_form_gradient(images):
    ens = _constant_net()
    c = torch.randn(8, 8, generator=torch.Generator().manual_seed(1))
    mask = random_region(4, (8, 8), k=20, seed=3)
    explain = linear_explain(c)
    one = bl.attacks.region(ens, images, eps=0.2, alpha=0.5, steps=1, region_mask=mask,
                            magnitude=False, normalize=False, explain_fn=explain)
    direction = (c.sign() * mask).unsqueeze(1)  # ∇ Σ_A c x = c · 1_A
    torch.testing.assert_close(one, (images + 0.1 * direction).clamp(0, 1), rtol=0, atol=1e-7)
    # same direction every step: two steps of 0.1 reach the ball, the third is projected back
    three = bl.attacks.region(ens, images, eps=0.2, alpha=0.5, steps=3, region_mask=mask,
                              magnitude=False, normalize=False, explain_fn=explain)
    torch.testing.assert_close(three, (images + 0.2 * direction).clamp(0, 1), rtol=0, atol=1e-6)


def test_a_step_that_changes_the_class_is_not_taken(images):
    ens = _constant_net(cls=3)  # always predicts 3
    explain = linear_explain(torch.ones(8, 8))
    kept = bl.attacks.region(ens, images, torch.full((4,), 5), steps=3, explain_fn=explain)
    assert torch.equal(kept, images)  # every candidate "changes" the class from 5 → rejected
    moved = bl.attacks.region(ens, images, torch.full((4,), 3), steps=3, explain_fn=explain)
    assert not torch.equal(moved, images)


def test_manipulate_first_adam_step_is_a_signed_step_towards_the_target(images):
    ens = _constant_net()
    target = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(9))
    got = bl.attacks.manipulate(ens, images, target, eps=None, lr=0.01, steps=1,
                                explain_fn=identity_explain)
    # loss ‖x̃ − x̂‖²: Adam's first step is lr · sign(gradient)
    expected = (images - 0.01 * (images - target).sign()).clamp(0, 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    far = bl.attacks.manipulate(ens, images, target, eps=0.05, lr=0.01, steps=30,
                                explain_fn=identity_explain)
    assert float((far - images).abs().max()) <= 0.05 + 1e-6
    before = (images - target).flatten(1).norm(dim=1)
    after = (far - target).flatten(1).norm(dim=1)
    assert bool((after < before).all())


def test_topk_on_a_trained_ensemble_lowers_overlap_and_keeps_labels(trained):
    ens, x, _ = trained
    clean_pred = ens.predict(x)
    xa = bl.attacks.topk(ens, x, eps=0.2, k=20, steps=5, explain_fn=grad_x_input)
    assert float((xa - x).abs().max()) <= 0.2 + 1e-6
    assert float(xa.min()) >= 0 and float(xa.max()) <= 1
    assert torch.equal(ens.predict(xa), clean_pred)
    R0 = grad_x_input(ens, x, rule=None, layer=None, n_samples=2, create_graph=False,
                      surrogate_beta=None)
    Ra = grad_x_input(ens, xa, rule=None, layer=None, n_samples=2, create_graph=False,
                      surrogate_beta=None)
    overlap = bl.metrics.lrp_robustness(R0, Ra, k=20)
    assert float(overlap.median()) < 0.8
    # chunking over images does not change the result
    again = bl.attacks.topk(ens, x, eps=0.2, k=20, steps=5, explain_fn=grad_x_input,
                            batch_size=5)
    torch.testing.assert_close(again, xa, rtol=0, atol=1e-6)


def test_region_on_a_trained_ensemble_moves_relevance_into_the_region(trained):
    ens, x, _ = trained
    xa = bl.attacks.region(ens, x, eps=0.2, k=20, steps=5, seed=4, explain_fn=grad_x_input)
    mask = random_region(x.shape[0], (8, 8), k=20, seed=4)

    def share(images):
        R = grad_x_input(ens, images, rule=None, layer=None, n_samples=2, create_graph=False,
                         surrogate_beta=None).abs()
        return (R * mask).flatten(1).sum(1) / R.flatten(1).sum(1)

    assert torch.equal(ens.predict(xa), ens.predict(x))
    assert bool((share(xa) >= share(x) - 1e-7).all())
    assert float((share(xa) - share(x)).median()) > 0.05


def test_manipulate_on_a_trained_ensemble_moves_towards_the_target_heatmap(trained):
    ens, x, _ = trained
    target = x[random_other_indices(x.shape[0], seed=1)]
    xa = bl.attacks.manipulate(ens, x, target, steps=10, lr=0.01, explain_fn=grad_x_input)

    def heat(images):
        return grad_x_input(ens, images, rule=None, layer=None, n_samples=2, create_graph=False,
                            surrogate_beta=None)

    before = (heat(x) - heat(target)).flatten(1).norm(dim=1)
    after = (heat(xa) - heat(target)).flatten(1).norm(dim=1)
    assert float((after / before).median()) < 0.95


def test_explanation_options_are_passed_through(images):
    seen = []

    def recording(ens, x, *, rule, layer, n_samples, create_graph, surrogate_beta, **kwargs):
        seen.append((rule, layer, n_samples, create_graph, surrogate_beta, kwargs))
        return x[:, 0]

    ens = bl.Ensemble.from_modules([bl.nets.build("fc2", seed=s, hidden=4, in_shape=SHAPE)
                                    for s in range(3)])
    bl.attacks.topk(ens, images, steps=1, rule="gamma", layer=3, n_samples=2,
                    explain_fn=recording, target="all")
    assert ("gamma", 3, 2, True, None, {"target": "all"}) in seen
    assert ("gamma", 3, 2, False, None, {"target": "all"}) in seen
    seen.clear()
    bl.attacks.manipulate(ens, images, images.flip(0), steps=1, beta=50.0, rule="alpha_beta",
                          explain_fn=recording)
    assert ("alpha_beta", None, 3, True, 50.0, {}) in seen
    assert ("alpha_beta", None, 3, False, None, {}) in seen  # the target heatmap is the true LRP
    seen.clear()
    bl.attacks.region(ens, images, steps=1, seed=1, explain_fn=recording, lrp_seed="one")
    assert all(kwargs == {"seed": "one"} for *_, kwargs in seen)  # LRP's own seed option


def test_default_explanation_is_bayeslrp_lrp(trained):
    ens, x, _ = trained
    xs = x[:8]
    R0 = bl.lrp.explain(ens, xs, rule="epsilon")
    xa = bl.attacks.topk(ens, xs, steps=3)
    assert torch.equal(ens.predict(xa), ens.predict(xs))
    assert float((xa - xs).abs().max()) <= 0.2 + 1e-6
    assert float(bl.metrics.lrp_robustness(R0, bl.lrp.explain(ens, xa)).mean()) < 1.0
    target = xs.flip(0)
    xm = bl.attacks.manipulate(ens, xs, target, steps=3, lr=0.05, layer=3)
    R_t = bl.lrp.explain(ens, target, layer=3)
    before = (bl.lrp.explain(ens, xs, layer=3) - R_t).flatten(1).norm(dim=1)
    after = (bl.lrp.explain(ens, xm, layer=3) - R_t).flatten(1).norm(dim=1)
    assert float(after.mean()) < float(before.mean())


def test_bad_heatmap_shape_is_reported(images):
    def wrong(ens, x, **kwargs):
        return x.flatten(1)

    with pytest.raises(bl.BayesLRPError, match="expected heatmaps"):
        bl.attacks.topk(_constant_net(), images, steps=1, explain_fn=wrong)


def test_random_other_indices_are_seeded_and_never_the_image_itself():
    a = random_other_indices(50, seed=3)
    assert torch.equal(a, random_other_indices(50, seed=3))
    assert not torch.equal(a, random_other_indices(50, seed=4))
    assert bool((a != torch.arange(50)).all()) and int(a.min()) >= 0 and int(a.max()) < 50
    counts = torch.bincount(random_other_indices(2, seed=0))
    assert counts.tolist() == [1, 1]
    draws = torch.stack([random_other_indices(5, seed=s) for s in range(400)])
    freq = torch.stack([(draws == j).float().mean(0) for j in range(5)])  # [target, image]
    off = freq[~torch.eye(5, dtype=torch.bool)]
    assert float((off - 0.25).abs().max()) < 0.1  # uniform over the 4 others
    with pytest.raises(bl.BayesLRPError):
        random_other_indices(1)


def test_random_region_has_k_percent_of_pixels_and_is_seeded():
    m = random_region(6, (10, 10), k=20, seed=1)
    assert m.dtype == torch.bool and m.shape == (6, 10, 10)
    assert m.flatten(1).sum(1).tolist() == [20] * 6
    assert torch.equal(m, random_region(6, (10, 10), k=20, seed=1))
    assert not torch.equal(m, random_region(6, (10, 10), k=20, seed=2))
    assert not torch.equal(m[0], m[1])  # one region per image


def test_run_attack_dispatches_saliency_attacks(images):
    from bayeslrp.explainers import Explainer
    from bayeslrp.plugins.attacks.gradient import attack_seed

    net = bl.nets.build("fc2", hidden=6, in_shape=(1, 8, 8), seed=3)
    ens = bl.Ensemble.from_module(net)
    y = ens.predict_proba(images).argmax(-1)
    explainer = Explainer("epsilon", {"epsilon": 0.1})
    got = bl.attacks.run_attack(ens, images, y, "region", steps=2, seed=5)
    torch.testing.assert_close(got, bl.attacks.region(ens, images, steps=2,
                                                      seed=attack_seed(5, "region"),
                                                      explainer=explainer))
    got = bl.attacks.run_attack(ens, images, y, "beta", steps=1, seed=2)
    target = images[random_other_indices(4, seed=attack_seed(2, "beta-target"))]
    torch.testing.assert_close(got, bl.attacks.manipulate(ens, images, target, steps=1,
                                                          explainer=explainer))
    # the explainer object and the loose keywords give the same attack
    torch.testing.assert_close(bl.attacks.topk(ens, images, steps=2, explainer=explainer),
                               bl.attacks.topk(ens, images, steps=2, rule="epsilon",
                                               epsilon=0.1))