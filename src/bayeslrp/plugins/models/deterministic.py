"""Deterministic training (Adam, cross-entropy; SPEC §3)."""
from __future__ import annotations

from typing import Any, Literal

from bayeslrp.plugins.models.base import ModelMethod, ModelSpecBase, last_value
from bayeslrp.plugins.models.train_options import TrainOptionFields, train_options
from bayeslrp.plugins.spec import ConfigIssue, NonNegInt, PosFloat, PosInt

__all__ = ["DetMethod", "DetModel", "default_epochs"]

#: SPEC §3 epochs: fc2 15 (any data), conv 5 on MNIST, 10 on Fashion-MNIST; resnet20 200
#: (the original's CIFAR-10 recipe).
DET_EPOCHS_DEFAULT = {("fc2", None): 15, ("conv", "mnist"): 5, ("conv", "fashion_mnist"): 10,
                      ("resnet20", None): 200}


def default_epochs(arch: str, dataset: str) -> dict[str, Any]:
    """``{"epochs": n}`` from the SPEC table, or a ConfigIssue when it has no entry."""
    default = DET_EPOCHS_DEFAULT.get((arch, None), DET_EPOCHS_DEFAULT.get((arch, dataset)))
    if default is None:
        raise ConfigIssue(("epochs",), f"required for arch {arch} on {dataset} (no default)")
    return {"epochs": default}


class DetModel(ModelSpecBase, TrainOptionFields):
    """Deterministic training (cross-entropy; Adam unless ``optimizer: sgd``)."""

    method: Literal["det"]
    #: 0 (with ``init_weights``): the loaded network as it is, untrained.
    epochs: NonNegInt | None = None
    lr: PosFloat = 1e-3
    batch_size: PosInt = 128


class DetMethod(ModelMethod):
    """``method: det`` — :func:`bayeslrp.train.deterministic`."""

    name = "det"
    Spec = DetModel

    def resolve(self, spec: Any, dataset: str) -> dict[str, Any]:
        if spec.epochs == 0 and spec.init_weights is None:
            raise ConfigIssue(("epochs",), "0 epochs keeps the initial weights: give "
                                           "init_weights (a trained network), or epochs >= 1")
        return default_epochs(spec.arch, dataset) if spec.epochs is None else {}

    def train(self, spec, net, x, y, *, init=None, common, scratch=None):
        from bayeslrp import train

        if spec["epochs"] == 0:  # init_weights used as they are (the config demands them)
            from bayeslrp.ensemble import Ensemble
            from bayeslrp.train.preflight import preflight

            preflight(net, x, y, common.get("device"))
            return Ensemble.from_module(net, meta={"method": "det", "epochs": 0,
                                                   "seed": common["seed"], "history": {}})
        return train.deterministic(net, x, y, epochs=spec["epochs"], lr=spec["lr"],
                                   batch_size=spec["batch_size"],
                                   options=train_options(spec), **common)

    def diagnostics(self, meta):
        return {"final_loss": last_value(meta, "loss"),
                "final_train_accuracy": last_value(meta, "train_accuracy")}
