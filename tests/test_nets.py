import pytest
import torch
from torch import nn

import bayeslrp as bl


def test_fc2_has_paper_parameter_count_and_layers():
    net = bl.nets.build("fc2", hidden=512)
    assert sum(p.numel() for p in net.parameters()) == 669_706
    assert bl.nets.learnable_layers(net) == [1, 3, 5]
    assert isinstance(net[2], nn.LeakyReLU) and net[2].negative_slope == 0.01


def test_conv_matches_paper_table():
    net = bl.nets.build("conv", channels=32, hidden=512)
    assert bl.nets.learnable_layers(net) == [0, 3, 7]
    assert net[3].in_channels == 32 and net[3].out_channels == 512
    assert net[7].in_features == 49 * 512
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_resnet20_shape_and_size():
    net = bl.nets.build("resnet20")
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    n_params = sum(p.numel() for p in net.parameters())
    assert 0.26e6 < n_params < 0.28e6  # He et al.: 0.27M
    layers = bl.nets.learnable_layers(net)
    assert layers[0] == 1 and layers[-1] == len(net) - 1 and len(layers) == 11


def test_activation_modules_are_not_shared():
    net = bl.nets.build("fc2", hidden=8)
    acts = [m for m in net if isinstance(m, nn.LeakyReLU)]
    assert len({id(a) for a in acts}) == len(acts) == 2


def test_same_seed_same_weights_and_spec_rebuilds():
    a = bl.nets.build("fc2", hidden=16, seed=3, in_shape=(1, 8, 8))
    b = bl.nets.build("fc2", hidden=16, seed=3, in_shape=(1, 8, 8))
    c = bl.nets.build("fc2", hidden=16, seed=4, in_shape=(1, 8, 8))
    assert torch.equal(a[1].weight, b[1].weight) and not torch.equal(a[1].weight, c[1].weight)
    rebuilt = bl.nets.build_from_spec(a.bayeslrp_spec)
    assert [type(m) for m in rebuilt] == [type(m) for m in a]


def test_unknown_architecture_is_a_user_error():
    with pytest.raises(bl.BayesLRPError, match="unknown architecture"):
        bl.nets.build("vgg")
    with pytest.raises(bl.BayesLRPError, match="bad options"):
        bl.nets.build("fc2", depth=3)
