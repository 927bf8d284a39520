"""The torch-free catalog agrees with the networks, the data readers and the config."""
from __future__ import annotations

import pytest

import bayeslrp as bl
from bayeslrp import catalog
from bayeslrp.data.registry import SPECS


@pytest.mark.parametrize("arch,kwargs", [("fc2", {"hidden": 8}), ("conv", {"hidden": 4,
                                                                          "channels": 2}),
                                         ("resnet20", {"in_shape": (3, 32, 32)})])
def test_learnable_layers_match_the_networks(arch, kwargs):
    net = bl.nets.build(arch, **kwargs)
    assert tuple(bl.nets.learnable_layers(net)) == catalog.learnable_layers(arch)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "digits"])
def test_dataset_facts_are_the_readers_facts(name):
    spec, facts = SPECS[name], catalog.DATASETS[name]
    assert (spec.shape, spec.n_train, spec.n_classes) == (facts.shape, facts.train_size,
                                                          facts.n_classes)
    assert facts.bounds == (0.0, 1.0)
    assert facts.pixels == facts.shape[1] * facts.shape[2]
