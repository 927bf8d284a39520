import torch

import bayeslrp as bl
from bayeslrp.train.perturb import fgsm_step, pgd_steps


def test_deterministic_training_learns_and_is_seeded(tiny_data):
    x, y = tiny_data
    net = bl.nets.build("fc2", hidden=32, in_shape=(1, 8, 8))
    a = bl.train.deterministic(net, x, y, epochs=10, lr=1e-2, progress=False, seed=1)
    b = bl.train.deterministic(net, x, y, epochs=10, lr=1e-2, progress=False, seed=1)
    assert a.n_samples == 1 and a.meta["method"] == "det"
    assert a.accuracy(x, y) > 0.9
    for name in a.params:
        assert torch.equal(a.params[name], b.params[name])
    # the caller's network is not modified
    assert torch.equal(net[1].weight, bl.nets.build("fc2", hidden=32, in_shape=(1, 8, 8))[1].weight)


def test_fgsm_step_matches_hand_computation():
    net = bl.nets.build("fc2", hidden=4, in_shape=(1, 2, 2))
    x = torch.full((3, 1, 2, 2), 0.5)
    y = torch.tensor([0, 1, 2])
    xr = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(net(xr), y, reduction="sum").backward()
    expected = (x + 0.2 * xr.grad.sign()).clamp(0, 1)
    torch.testing.assert_close(fgsm_step(net, x, y, 0.2), expected)


def test_pgd_stays_in_the_ball_and_box():
    net = bl.nets.build("fc2", hidden=8, in_shape=(1, 4, 4))
    x = torch.rand(16, 1, 4, 4)
    y = torch.randint(0, 10, (16,))
    out = pgd_steps(net, x, y, 0.1, 5, 0.05, torch.Generator().manual_seed(0))
    assert (out - x).abs().max() <= 0.1 + 1e-6 and out.min() >= 0 and out.max() <= 1


def test_adversarial_training_modes(tiny_data):
    x, y = tiny_data
    net = bl.nets.build("fc2", hidden=32, in_shape=(1, 8, 8))
    for mode in ("fgsm", "mix", "pgd"):
        ens = bl.train.adversarial(net, x, y, epochs=1, mode=mode, pgd_steps_=2, progress=False)
        assert ens.meta["adv_mode"] == mode and ens.n_samples == 1


def test_bad_training_arguments_are_user_errors(tiny_data):
    import pytest

    x, y = tiny_data
    net = bl.nets.build("fc2", hidden=8, in_shape=(1, 8, 8))
    with pytest.raises(bl.BayesLRPError):
        bl.train.adversarial(net, x, y, mode="bim", progress=False)
    with pytest.raises(bl.BayesLRPError):
        bl.train.deterministic(net, x, y[:3], progress=False)
    with pytest.raises(bl.BayesLRPError):
        bl.train.deterministic(net, x, y, epochs=0, progress=False)
