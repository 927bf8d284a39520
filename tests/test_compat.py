"""``bayeslrp.compat``: a model and its data checked against each other before a forward pass."""
from __future__ import annotations

import pytest
import torch

import bayeslrp as bl
from bayeslrp.compat import check_data, check_model, model_facts


def _ens(in_shape=(1, 8, 8), n_classes=10, **meta):
    net = bl.nets.build("fc2", hidden=4, in_shape=in_shape, n_classes=n_classes)
    return bl.Ensemble.from_module(net, meta=meta)


def test_model_facts_come_from_the_spec_and_the_metadata():
    facts = model_facts(_ens((3, 8, 8), 5, dataset="mine", bounds=[-1, 1]))
    assert facts == {"in_shape": (3, 8, 8), "n_classes": 5, "dataset": "mine",
                     "bounds": [-1, 1]}
    assert model_facts(_ens())["dataset"] is None


def test_matching_data_passes_silently(capsys):
    check_data(_ens(dataset="digits"), torch.rand(2, 1, 8, 8), torch.tensor([0, 9]),
               dataset="digits", n_classes=10, bounds=(0.0, 1.0))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("x, y, kwargs, words", [
    (torch.rand(2, 1, 9, 8), None, {}, "wrong image size"),
    (torch.rand(2, 3, 8, 8), None, {}, "wrong channel count"),
    (torch.rand(1, 8, 8), None, {}, "must be a tensor [B, C, H, W]"),
    (torch.rand(2, 1, 8, 8), None, {"n_classes": 12}, "12 classes but the model predicts 10"),
    (torch.rand(2, 1, 8, 8), torch.tensor([0.0, 1.0]), {}, "integer tensor"),
    (torch.rand(2, 1, 8, 8), torch.tensor([0, 10]), {}, "classes 0..9"),
])
def test_mismatches_are_one_line(x, y, kwargs, words):
    with pytest.raises(bl.BayesLRPError, match=words.replace("[", r"\[").replace("]", r"\]")):
        check_data(_ens(), x, y, **kwargs)


def test_other_pixel_range_than_the_models_is_refused():
    with pytest.raises(bl.BayesLRPError, match="trained on pixels in"):
        check_data(_ens(bounds=[0.0, 1.0]), torch.rand(2, 1, 8, 8), bounds=(-1.0, 1.0))


def test_another_dataset_of_the_same_shape_warns(capsys):
    check_data(_ens(dataset="mnist"), torch.rand(2, 1, 8, 8), dataset="fashion_mnist")
    assert capsys.readouterr().err.strip() == \
        "warning: the model was trained on mnist and is used on fashion_mnist"


@pytest.mark.parametrize("obj, words", [(torch.nn.Linear(2, 2), "Ensemble.from_module"),
                                        ("model", "got str")])
def test_only_an_ensemble_is_a_model(obj, words):
    with pytest.raises(bl.BayesLRPError, match=words):
        check_model(obj)
