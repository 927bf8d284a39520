"""MC dropout (issue 22 item 1): the Ensemble of masks written into the weights is the dropout
net in train mode with the same masks (SPEC §9).

Oracle: the trained network with its training-time dropout hooks (:class:`InputDropout`) in
train mode, each hooked layer fed the stored mask of draw s on every image, gives logits equal
to sample s of the Ensemble (its network, ``sample_module(s)``): bit for bit at p = 0.5
(1/(1−p) = 2 and the 0/1 mask are exact in floating point, so h·m·2 and W·m·2 round
identically), within 1e-6 relative at p = 0.3.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import bayeslrp as bl
from bayeslrp import BayesLRPError
from bayeslrp.train.mc_dropout import InputDropout, default_dropout_layers


def _net(arch):
    if arch == "fc2":
        return bl.nets.build("fc2", seed=0, hidden=16, in_shape=[1, 8, 8], n_classes=10), 8
    return bl.nets.build("conv", seed=0, hidden=8, channels=4, in_shape=[1, 16, 16],
                         n_classes=10), 16


def _train_mode_logits(ens, p, x, s):
    """Sample s's logits from the dropout net: MAP weights, hooks, train mode, mask of s."""
    layers = ens.meta["layers"]
    # the trained network: every unmasked entry is the draw's, each masked layer's weight the
    # stored trained (unmasked) one
    net = ens.sample_module(s)
    state = net.state_dict()
    state.update({k[len("trained."):]: v for k, v in ens.extras.items()
                  if k.startswith("trained.")})
    net.load_state_dict(state)
    hooks = InputDropout(net, layers, p, seed=0)
    hooks.fixed = {name: ens.extras[f"mask.{name}"][s] for name in layers}
    try:
        with torch.no_grad():
            return net.train()(x)
    finally:
        hooks.remove()


@pytest.mark.parametrize("arch", ["fc2", "conv"])
def test_ensemble_forward_is_the_train_mode_dropout_net(tiny_data, arch):
    x, y = tiny_data
    net, size = _net(arch)
    x = nn.functional.interpolate(x, size=size) if size != 8 else x
    for p, exact in ((0.5, True), (0.3, False)):
        ens = bl.train.mc_dropout(net, x, y, p=p, n_samples=4, epochs=1, progress=False,
                                  seed=2)
        logits = ens.logits(x[:50])
        for s in range(4):
            ref = _train_mode_logits(ens, p, x[:50], s)
            with torch.no_grad():
                sample = ens.sample_module(s)(x[:50])
            if exact:
                assert torch.equal(sample, ref), (arch, s)
            else:
                assert torch.allclose(sample, ref, rtol=1e-6, atol=1e-6), (arch, s)
            # the stacked forward: on the CPU conv kernels run channels-last, which agrees
            # to float32 rounding only (bayeslrp.ensemble._sample_params)
            assert torch.allclose(logits[s], ref, rtol=1e-5, atol=1e-6), (arch, s)


def test_masks_are_seeded_bernoulli_and_layers_default(tiny_data):
    x, y = tiny_data
    net, _ = _net("fc2")
    assert default_dropout_layers(net) == ["3", "5"]
    conv, _ = _net("conv")
    assert default_dropout_layers(conv) == ["7"]  # the dense head only
    ens = bl.train.mc_dropout(net, x, y, p=0.25, n_samples=200, epochs=1, progress=False)
    masks = ens.extras["mask.3"].double()
    assert masks.shape == (200, 16)
    assert abs(float(masks.mean()) - 0.75) < 0.03  # 3200 Bernoulli(0.75): sd 0.008
    assert not torch.equal(ens.extras["mask.3"], ens.extras["mask.5"])
    w = ens.extras["trained.3.weight"]
    assert torch.equal(ens.params["3.weight"][7], w * (masks[7].float() / 0.75))
    assert torch.equal(ens.params["1.weight"][7], ens.params["1.weight"][0])  # not dropped
    again = bl.train.mc_dropout(net, x, y, p=0.25, n_samples=200, epochs=1, progress=False)
    assert all(torch.equal(ens.params[k], again.params[k]) for k in ens.params)


def test_training_uses_dropout(tiny_data):
    x, y = tiny_data
    net, _ = _net("fc2")
    det = bl.train.deterministic(net, x, y, epochs=1, progress=False)
    drop = bl.train.mc_dropout(net, x, y, p=0.5, n_samples=1, epochs=1, progress=False)
    assert drop.meta["history"]["loss"][0] != det.meta["history"]["loss"][0]
    assert not net._forward_pre_hooks and not any(m._forward_pre_hooks for m in net.modules())


def test_mc_dropout_errors(tiny_data):
    x, y = tiny_data
    net, _ = _net("fc2")
    with pytest.raises(BayesLRPError, match=r"p must be in \(0, 1\)"):
        bl.train.mc_dropout(net, x, y, p=1.0)
    with pytest.raises(BayesLRPError, match="is a Conv2d"):
        conv, size = _net("conv")
        bl.train.mc_dropout(conv, nn.functional.interpolate(x, size=size), y, layers=["3"])
    with pytest.raises(BayesLRPError, match="not a module"):
        bl.train.mc_dropout(net, x, y, layers=["9"])
