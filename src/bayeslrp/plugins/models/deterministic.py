"""Deterministic training (Adam, cross-entropy; SPEC §3)."""
from __future__ import annotations

from typing import Any, Literal

from bayeslrp.plugins.models.base import ModelMethod, ModelSpecBase, last_value
from bayeslrp.plugins.models.train_options import TrainOptionFields, train_options
from bayeslrp.plugins.spec import ConfigIssue, Name, NonNegInt, PosFloat, PosInt

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
    #: The accuracy-matched control: early-stopped at this model's test accuracy
    #: (:func:`bayeslrp.train.accuracy_matched`), within ``match_tolerance``, checked every
    #: ``match_every`` optimiser steps.
    match_accuracy: Name | None = None
    match_tolerance: PosFloat = 0.005
    match_every: PosInt = 1


MATCH_KEYS = ("match_accuracy", "match_tolerance", "match_every")


class DetMethod(ModelMethod):
    """``method: det`` — :func:`bayeslrp.train.deterministic`; with ``match_accuracy`` —
    :func:`bayeslrp.train.accuracy_matched` (the named model is a training input)."""

    name = "det"
    Spec = DetModel
    # the matched model's name is not a training setting: its artifact enters the key
    unkeyed = frozenset({"name", "seed", "match_accuracy"})
    #: the train stage passes the test split and the ``init`` model's meta to :meth:`train`
    uses_test_split = True

    def init_model(self, spec: Any) -> str | None:
        return spec.match_accuracy

    def key_params(self, spec: Any) -> dict[str, Any]:
        params = super().key_params(spec)
        if spec.match_accuracy is None:  # the keys of plain det models stay as they were
            for key in MATCH_KEYS:
                params.pop(key, None)
        else:
            params["match_accuracy"] = True
        return params

    def check(self, spec: Any, config: Any) -> None:
        target = spec.match_accuracy
        if target is None:
            for key in ("match_tolerance", "match_every"):  # the resolved config has both
                if getattr(spec, key) != type(spec).model_fields[key].default:
                    raise ConfigIssue((key,), "only used with match_accuracy")
            return
        names = {m.name: m for m in config.models}
        if target not in names:
            raise ConfigIssue(("match_accuracy",), f"no model named {target!r}")
        seen, current = [spec.name], target
        while current is not None:  # the models current depends on must not include this one
            if current in seen:
                raise ConfigIssue(("match_accuracy",), f"{target!r} depends on {spec.name!r} "
                                                       f"(through init_model/match_accuracy)")
            seen.append(current)
            ref = names[current]
            current = _depends_on(ref)
        if spec.epochs == 0:
            raise ConfigIssue(("epochs",), "match_accuracy trains: give epochs >= 1")

    def resolve(self, spec: Any, dataset: str) -> dict[str, Any]:
        if spec.epochs == 0 and spec.init_weights is None:
            raise ConfigIssue(("epochs",), "0 epochs keeps the initial weights: give "
                                           "init_weights (a trained network), or epochs >= 1")
        return default_epochs(spec.arch, dataset) if spec.epochs is None else {}

    def test_passes(self, spec, n_train):
        if spec.match_accuracy is None:
            return 0.0
        steps = (spec.epochs or 1) * -(-n_train // spec.batch_size)
        return 1.0 + steps / spec.match_every

    def weight_reference(self, spec, init):
        return None if spec.get("match_accuracy") else init  # matched, not started from

    def train(self, spec, net, x, y, *, init=None, common, scratch=None, test_split=None,
              init_meta=None):
        from bayeslrp import train

        if spec.get("match_accuracy"):
            x_test, y_test = test_split
            return train.accuracy_matched(
                net, x, y, x_test, y_test, target=float(init_meta["test_accuracy"]),
                tolerance=spec["match_tolerance"], check_every=spec["match_every"],
                epochs=spec["epochs"], lr=spec["lr"], batch_size=spec["batch_size"],
                options=train_options(spec), **common)
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
        if "matched" in meta:
            return {key: meta["matched"].get(key) for key in
                    ("target_accuracy", "reached_accuracy", "tolerance", "within_tolerance",
                     "steps", "partial_step")}
        return {"final_loss": last_value(meta, "loss"),
                "final_train_accuracy": last_value(meta, "train_accuracy")}


def _depends_on(spec: Any) -> str | None:
    """The model ``spec`` is trained from (its method's :meth:`ModelMethod.init_model`)."""
    from bayeslrp.plugins.models import MODEL_METHODS

    return MODEL_METHODS.get(spec.method)().init_model(spec)
