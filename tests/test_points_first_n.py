"""``data.points: first_n`` (the original's CIFAR-10 selection) next to the default balanced one."""
from __future__ import annotations

import copy

import pytest
import torch

from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment.config import load_config
from bayeslrp.experiment.grid import expand_grid
from bayeslrp.experiment.stages.data import _points

BASE = {"name": "p", "seed": 0, "data": {"dataset": "cifar_synthetic", "n_points": 20},
        "models": [{"name": "det", "arch": "resnet20", "method": "det", "epochs": 1}],
        "attacks": [{"method": "fgsm"}], "explain": {"rules": ["epsilon"], "layers": [15]}}


def _cfg(**data):
    cfg = copy.deepcopy(BASE)
    cfg["data"].update(data)
    return cfg


def test_default_is_balanced_and_stays_out_of_the_data_key():
    default = expand_grid(load_config(_cfg())).by_label("data")
    explicit = expand_grid(load_config(_cfg(points="balanced"))).by_label("data")
    assert "points" not in default.params and default.key == explicit.key
    first = expand_grid(load_config(_cfg(points="first_n"))).by_label("data")
    assert first.params["points"] == "first_n" and first.key != default.key


def test_first_n_takes_any_count_balanced_needs_a_multiple_of_ten():
    assert load_config(_cfg(points="first_n", n_points=25)).data.n_points == 25
    with pytest.raises(BayesLRPError, match="divisible by 10"):
        load_config(_cfg(n_points=25))
    with pytest.raises(BayesLRPError, match="points"):
        load_config(_cfg(points="last_n"))
    with pytest.raises(BayesLRPError, match="at most 1000 test points"):
        load_config(_cfg(points="first_n", n_points=1001))


def test_selected_indices():
    y = torch.arange(200) % 10
    first = _points({"n_points": 15, "points": "first_n", "seed": 0, "dataset": "x"}, y)
    assert first.tolist() == list(range(15))
    balanced = _points({"n_points": 20, "seed": 0, "dataset": "cifar_synthetic"}, y)
    assert torch.bincount(y[balanced], minlength=10).tolist() == [2] * 10
    assert balanced.tolist() != list(range(20))
    with pytest.raises(BayesLRPError, match="test split has 200"):
        _points({"n_points": 201, "points": "first_n", "seed": 0, "dataset": "x"}, y)
