"""docs/lrp.md's table of ResNet-20 learnable layers matches the code (so it cannot rot)."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

import bayeslrp as bl
from bayeslrp import catalog

DOC = Path(__file__).resolve().parents[1] / "docs" / "lrp.md"


def _rows():
    text = DOC.read_text("utf-8")
    block = re.search(r"<!-- resnet20-layers:.*?-->(.*?)<!-- /resnet20-layers -->", text, re.S)
    assert block, "the resnet20 layer table markers are missing from docs/lrp.md"
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in block.group(1).strip().splitlines()[2:]]
    assert rows and all(len(r) == 5 for r in rows)
    return rows


def _shape(text):
    return tuple(int(v) for v in re.findall(r"\d+", text))


def test_indices_are_the_learnable_layers():
    indices = [int(r[0]) for r in _rows()]
    net = bl.nets.build("resnet20")
    assert indices == bl.nets.learnable_layers(net) == list(catalog.learnable_layers("resnet20"))


def test_module_paths_kinds_and_output_shapes():
    net = bl.nets.build("resnet20")
    x = torch.rand(1, 3, 32, 32)
    outputs = {}
    h = x
    for i, module in enumerate(net):
        h = module(h)
        outputs[i] = h.shape[1:]
    for index, path, kind, shape, _ in _rows():
        position = int(re.match(r"`(\d+)`", path).group(1))
        assert position == int(index)
        module = net[position]
        name = kind.split("(")[0].strip("`")
        assert type(module).__name__ == name
        if isinstance(module, nn.Conv2d):
            assert "(+ `2` folded)" in path and isinstance(net[position + 1], nn.BatchNorm2d)
            numbers = (module.in_channels, module.out_channels, module.kernel_size[0])
        elif isinstance(module, nn.Linear):
            numbers = (module.in_features, module.out_features)
        else:
            numbers = (module.conv1.in_channels, module.conv1.out_channels)
            stride = module.conv1.stride[0]
            assert ("stride 2" in kind) == (stride == 2)
        inside = re.search(r"\((.*?)\)", kind).group(1)  # "(16, 32, stride 2)"
        assert _shape(inside)[:len(numbers)] == numbers
        assert _shape(shape) == tuple(outputs[position])
