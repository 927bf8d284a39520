"""Attacks on real MNIST with a small trained fc2 (slow: trains for about two minutes).

Run with ``pytest tests/slow/test_attacks_real.py -m slow -s`` to see the numbers.
"""
from __future__ import annotations

import pytest
import torch

import bayeslrp as bl

pytestmark = pytest.mark.slow

N_POINTS = 100


@pytest.fixture(scope="module")
def mnist_model():
    x_train, y_train = bl.data.load("mnist", "train")
    x_test, y_test = bl.data.load("mnist", "test")
    net = bl.nets.build("fc2", seed=0, hidden=128)
    ens = bl.train.deterministic(net, x_train, y_train, epochs=2, progress=False, seed=0)
    idx = bl.data.balanced_subset(y_test, n=N_POINTS, seed=0)
    return ens, x_test[idx], y_test[idx]


@pytest.fixture(scope="module")
def perturbed_ensemble(mnist_model):
    """A 4-sample ensemble around the trained weights (exercises the S > 1 code paths)."""
    ens, _, _ = mnist_model
    gen = torch.Generator().manual_seed(1)
    params = {k: v + 0.02 * torch.randn((4, *v.shape[1:]), generator=gen)
              for k, v in ens.params.items()}
    return bl.Ensemble(ens.spec, params)


def explain(ens, x):
    return bl.lrp.explain(ens, x, rule="epsilon")


def test_pgd_loss_is_at_least_fgsm_loss_for_most_points(mnist_model):
    ens, x, y = mnist_model
    assert ens.accuracy(x, y) > 0.9
    x_fgsm = bl.attacks.fgsm(ens, x, y, eps=0.2)
    x_pgd = bl.attacks.pgd(ens, x, y, eps=0.2, steps=40, alpha=0.01, seed=0)
    fgsm = bl.attacks.evaluate(ens, x, x_fgsm, y)
    pgd = bl.attacks.evaluate(ens, x, x_pgd, y)
    at_least = (pgd["loss_adv"] >= fgsm["loss_adv"] - 1e-6).float().mean().item()
    print(f"\nPGD loss >= FGSM loss on {at_least:.1%} of {N_POINTS} points; adversarial accuracy "
          f"FGSM {fgsm['correct_adv'].float().mean():.3f}, "
          f"PGD {pgd['correct_adv'].float().mean():.3f}")
    assert at_least >= 0.9
    assert float(pgd["linf"].max()) <= 0.2 + 1e-6


def test_bayesian_pgd_modes_on_mnist(perturbed_ensemble, mnist_model):
    _, x, y = mnist_model
    ens = perturbed_ensemble
    for mode in ("expected_gradient", "predictive", "per_sample_average"):
        xa = bl.attacks.pgd(ens, x, y, eps=0.2, steps=10, alpha=0.03, mode=mode, seed=0)
        out = bl.attacks.evaluate(ens, x, xa, y)
        print(f"\n{mode}: clean acc {out['correct_clean'].float().mean():.3f}, "
              f"adv acc {out['correct_adv'].float().mean():.3f}")
        assert float(out["loss_adv"].mean()) > float(out["loss_clean"].mean()) + 1.0


def test_topk_beats_random_noise_and_keeps_labels(mnist_model):
    ens, x, _ = mnist_model
    R0 = explain(ens, x)
    pred = ens.predict(x)
    gen = torch.Generator().manual_seed(0)
    noise = (x + 0.2 * (torch.randint(0, 2, x.shape, generator=gen) * 2 - 1)).clamp(0, 1)
    x_topk = bl.attacks.topk(ens, x, eps=0.2, k=20, alpha=0.5, steps=10)
    rob_noise = bl.metrics.lrp_robustness(R0, explain(ens, noise), k=20)
    rob_topk = bl.metrics.lrp_robustness(R0, explain(ens, x_topk), k=20)
    changed = (ens.predict(x_topk) != pred).float().mean().item()
    noise_changed = (ens.predict(noise) != pred).float().mean().item()
    print(f"\n20%-LRP robustness median: random sign noise {rob_noise.median():.3f} "
          f"(labels changed {noise_changed:.1%}), top-k {rob_topk.median():.3f} "
          f"(labels changed {changed:.1%})")
    assert float(rob_topk.median()) < float(rob_noise.median())
    assert changed <= 0.01
    assert float((x_topk - x).abs().max()) <= 0.2 + 1e-6


def test_region_moves_relevance_into_the_region_and_keeps_labels(mnist_model):
    ens, x, _ = mnist_model
    mask = bl.attacks.random_region(x.shape[0], (28, 28), k=20, seed=0)
    x_reg = bl.attacks.region(ens, x, eps=0.2, k=20, steps=10, seed=0)

    def share(images):
        R = explain(ens, images).abs()
        return (R * mask).flatten(1).sum(1) / R.flatten(1).sum(1)

    changed = (ens.predict(x_reg) != ens.predict(x)).float().mean().item()
    rob = bl.metrics.lrp_robustness(explain(ens, x), explain(ens, x_reg), k=20)
    print(f"\nregion: |R| share in A_k median {share(x).median():.3f} -> "
          f"{share(x_reg).median():.3f}; "
          f"20%-LRP robustness median {rob.median():.3f}; labels changed {changed:.1%}")
    assert float(share(x_reg).median()) > float(share(x).median()) + 0.05
    assert changed <= 0.01


def test_manipulate_moves_the_heatmap_towards_the_target(mnist_model):
    ens, x, _ = mnist_model
    target = x[bl.attacks.random_other_indices(x.shape[0], seed=0)]
    R_target = explain(ens, target)
    before = (explain(ens, x) - R_target).flatten(1).norm(dim=1)
    results = {}
    for name, params in {"paper (lr 0.01, eps 0.2)": {},
                         "lr 0.1, no eps-ball": {"lr": 0.1, "eps": None}}.items():
        xm = bl.attacks.manipulate(ens, x, target, steps=10, **params)
        after = (explain(ens, xm) - R_target).flatten(1).norm(dim=1)
        results[name] = float((1 - after / before).median())
        changed = (ens.predict(xm) != ens.predict(x)).float().mean().item()
        print(f"\nmanipulate {name}: median reduction of ||R(x~) - R(x^)|| {results[name]:.1%}, "
              f"labels changed {changed:.1%}")
    assert results["paper (lr 0.01, eps 0.2)"] >= 0.10
    assert results["lr 0.1, no eps-ball"] >= 0.30


def test_saliency_attacks_on_a_bayesian_ensemble(perturbed_ensemble, mnist_model):
    _, x, _ = mnist_model
    ens = perturbed_ensemble
    xs = x[:40]
    R0 = explain(ens, xs)
    x_topk = bl.attacks.topk(ens, xs, steps=5)
    rob = bl.metrics.lrp_robustness(R0, explain(ens, x_topk), k=20)
    print(f"\nS=4 ensemble top-k: median robustness {rob.median():.3f}")
    assert torch.equal(ens.predict(x_topk), ens.predict(xs))
    assert float(rob.median()) < 0.9
    inner = bl.attacks.topk(ens, xs, steps=3, layer=3)
    assert torch.equal(ens.predict(inner), ens.predict(xs))
    assert float((inner - xs).abs().max()) <= 0.2 + 1e-6
