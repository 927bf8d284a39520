"""Deep ensembles (issue 22 item 1): each member is the det (or adv) training with its seed.

Oracle: member j of ``bl.train.ensemble(..., seed=s)`` equals
``bl.train.deterministic(init(s + j), ..., seed=s + j)`` bit for bit, both for the loop and the
stacked (one optimiser over ``[M, ...]`` weights) training; measured bit-identical on the CPU
(tolerance stated: exact). Adversarial members equal ``bl.train.adversarial`` likewise.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import bayeslrp as bl
from bayeslrp import BayesLRPError
from bayeslrp.train.deep_ensemble import member_init


def _same(a: dict, j: int, b: dict) -> bool:
    return all(torch.equal(a[k][j], b[k][0]) for k in b)


@pytest.mark.parametrize("vectorize", [False, True])
def test_each_member_is_the_det_training_with_its_seed_fc2(tiny_data, vectorize):
    x, y = tiny_data
    net = bl.nets.build("fc2", seed=0, hidden=12, in_shape=[1, 8, 8], n_classes=10)
    ens = bl.train.ensemble(net, x, y, members=3, epochs=2, batch_size=64, seed=5,
                            vectorize=vectorize, progress=False)
    assert ens.n_samples == 3 and ens.meta["vectorized"] is vectorize
    assert ens.meta["member_seeds"] == [5, 6, 7]
    for j in range(3):
        start = bl.nets.build("fc2", seed=5 + j, hidden=12, in_shape=[1, 8, 8], n_classes=10)
        det = bl.train.deterministic(start, x, y, epochs=2, batch_size=64, seed=5 + j,
                                     progress=False)
        assert _same(ens.params, j, det.params), j
        # the stacked run's batch loss is mean(reduction="none"): float32 rounding of the
        # logged loss only (the weights above are identical)
        assert ens.meta["member_histories"][j]["loss"] == pytest.approx(
            det.meta["history"]["loss"], rel=1e-6)
    assert not torch.equal(ens.params["1.weight"][0], ens.params["1.weight"][1])


def test_conv_members_and_adv_members(tiny_data):
    x, y = tiny_data
    x = nn.functional.interpolate(x[:200], size=16)
    y = y[:200]
    kw = {"hidden": 6, "channels": 3, "in_shape": [1, 16, 16], "n_classes": 10}
    net = bl.nets.build("conv", seed=0, **kw)
    ens = bl.train.ensemble(net, x, y, members=2, epochs=1, seed=0, progress=False)
    adv = bl.train.ensemble(net, x, y, members=2, epochs=1, seed=0, member="adv",
                            adv_eps=0.1, progress=False)
    for j in range(2):
        start = bl.nets.build("conv", seed=j, **kw)
        det = bl.train.deterministic(start, x, y, epochs=1, seed=j, progress=False)
        assert _same(ens.params, j, det.params)
        one = bl.train.adversarial(start, x, y, eps=0.1, epochs=1, seed=j, progress=False)
        assert _same(adv.params, j, one.params)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        return self.body(x)


def test_user_module_members_are_reset_from_their_seed(tiny_data):
    x, y = tiny_data
    a, b = member_init(_Tiny(), 3), member_init(_Tiny(), 3)
    assert torch.equal(a.body[1].weight, b.body[1].weight)
    assert not torch.equal(a.body[1].weight, member_init(_Tiny(), 4).body[1].weight)
    ens = bl.train.ensemble(_Tiny(), x, y, members=2, epochs=1, seed=3, progress=False)
    det = bl.train.deterministic(member_init(_Tiny(), 4), x, y, epochs=1, seed=4,
                                 progress=False)
    assert _same(ens.params, 1, det.params)
    # the built-in path: nets.build with the member's seed
    fc2 = bl.nets.build("fc2", seed=0, hidden=4, in_shape=[1, 8, 8], n_classes=10)
    again = bl.nets.build("fc2", seed=9, hidden=4, in_shape=[1, 8, 8], n_classes=10)
    assert torch.equal(member_init(fc2, 9)[1].weight, again[1].weight)


def test_ensemble_errors(tiny_data):
    x, y = tiny_data
    net = bl.nets.build("fc2", seed=0, hidden=4, in_shape=[1, 8, 8], n_classes=10)
    with pytest.raises(BayesLRPError, match="members >= 1"):
        bl.train.ensemble(net, x, y, members=0)
    with pytest.raises(BayesLRPError, match="choose det or adv"):
        bl.train.ensemble(net, x, y, member="vi")
    with pytest.raises(BayesLRPError, match="vectorize=True needs det members"):
        bl.train.ensemble(net, x, y, members=2, member="adv", vectorize=True)


def test_stacked_training_through_vmap_matches_the_det_trainings(tiny_data, monkeypatch):
    """Off the CPU the stacked run uses ``vmap`` (``forward_stacked``); forced here on the CPU.
    Batched kernels may round differently: members agree with det within 1e-5 (max |Δw|)."""
    import bayeslrp.ensemble as ensemble_module

    x, y = tiny_data
    monkeypatch.setattr(ensemble_module, "loops_over_samples", lambda _device: False)
    net = bl.nets.build("fc2", seed=0, hidden=12, in_shape=[1, 8, 8], n_classes=10)
    ens = bl.train.ensemble(net, x, y, members=2, epochs=2, batch_size=64, seed=5,
                            vectorize=True, progress=False)
    monkeypatch.undo()
    for j in range(2):
        start = bl.nets.build("fc2", seed=5 + j, hidden=12, in_shape=[1, 8, 8], n_classes=10)
        det = bl.train.deterministic(start, x, y, epochs=2, batch_size=64, seed=5 + j,
                                     progress=False)
        diff = max(float((ens.params[k][j] - det.params[k][0]).abs().max()) for k in det.params)
        assert diff < 1e-5, (j, diff)
