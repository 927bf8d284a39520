"""The original code's test-point draw: n/K per class, with replacement, ordered by class."""
from __future__ import annotations

import copy

import pytest
import torch

import bayeslrp as bl
from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment.config import load_config
from bayeslrp.experiment.grid import expand_grid


def test_original_subset_per_class_with_replacement_ordered_by_class():
    y = torch.tensor([0, 1, 2] * 3 + [2])  # class sizes 3, 3, 4
    idx = bl.data.original_subset(y, n=30, seed=1)
    assert idx.shape == (30,)
    assert y[idx].tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert len(set(idx[:10].tolist())) < 10        # 10 draws from 3 points repeat
    assert torch.equal(idx, bl.data.original_subset(y, n=30, seed=1))
    assert not torch.equal(idx, bl.data.original_subset(y, n=30, seed=2))
    # with replacement: every point of a class is drawn about equally often
    big = bl.data.original_subset(torch.tensor([0, 0, 1, 1]), n=20000, seed=0)
    share = float((big[:10000] == 0).float().mean())
    assert abs(share - 0.5) < 0.02                 # 4 sigma = 0.02 for 10000 draws
    with pytest.raises(BayesLRPError, match="multiple"):
        bl.data.original_subset(y, n=31)
    with pytest.raises(BayesLRPError, match="class 1 has no points"):
        bl.data.original_subset(torch.tensor([0, 2]), n=3, n_classes=3)


DATA_CFG = {"data": {"dataset": "synthetic", "n_points": 20},
            "models": [{"name": "det", "method": "det", "arch": "fc2", "hidden": 8}],
            "attacks": [{"method": "fgsm"}]}


def test_original_points_option_enters_the_data_key_only_when_set():
    base = expand_grid(load_config(DATA_CFG)).by_label("data")
    cfg = copy.deepcopy(DATA_CFG)
    cfg["data"]["points"] = "balanced"
    assert expand_grid(load_config(cfg)).by_label("data").key == base.key
    cfg["data"]["points"] = "original"
    task = expand_grid(load_config(cfg)).by_label("data")
    assert task.params["points"] == "original" and task.key != base.key
    with pytest.raises(BayesLRPError, match="points"):
        load_config({**DATA_CFG, "data": {**DATA_CFG["data"], "points": "random"}})
    with pytest.raises(BayesLRPError, match="divisible by 10"):
        load_config({**DATA_CFG, "data": {**DATA_CFG["data"], "points": "original",
                                          "n_points": 25}})
