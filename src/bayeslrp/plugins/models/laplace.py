"""Laplace approximations (diagonal, last layer) around a det model of the config."""
from __future__ import annotations

from typing import Any, Literal

from bayeslrp.plugins.models.base import ModelMethod
from bayeslrp.plugins.models.bayes_base import BayesSpecBase
from bayeslrp.plugins.models.init_ref import check_init_model
from bayeslrp.plugins.spec import ConfigIssue, Name, PosFloat

__all__ = ["LaplaceMethod", "LaplaceModel", "ASSUMED_CLASSES"]

#: Classes assumed by the cost estimate (one vector-Jacobian product per class and image).
ASSUMED_CLASSES = 10


class LaplaceModel(BayesSpecBase):
    """Laplace around the det model ``init_model`` (the MAP): ``kind`` diag or last_layer;
    ``prior_precision`` given, or (default) chosen by the evidence."""

    method: Literal["laplace"]
    init_model: Name | None = None
    kind: Literal["diag", "last_layer"] = "last_layer"
    prior_precision: PosFloat | None = None


class LaplaceMethod(ModelMethod):
    """``method: laplace`` — :func:`bayeslrp.train.laplace` of the ``init_model``."""

    name = "laplace"
    Spec = LaplaceModel
    bayesian = True
    unkeyed = frozenset({"name", "seed", "init_model", "own_attack_sample"})

    def resolve(self, spec: Any, dataset: str) -> dict[str, Any]:
        if spec.init_model is None:
            raise ConfigIssue(("init_model",), "required: the det model (the MAP) the Laplace "
                                               "approximation is built around")
        return {}

    def check(self, spec: Any, config: Any) -> None:
        check_init_model(spec, config, ("det",), "the MAP")

    def init_model(self, spec: Any) -> str | None:
        return spec.init_model

    def cost(self, spec, n_train, flops):
        if spec.kind == "diag":  # a forward and one backward per class and image
            return (1.0 + 2.0 * ASSUMED_CLASSES) * n_train * flops, "train"
        return 1.0 * n_train * flops, "train"

    def train(self, spec, net, x, y, *, init=None, common, scratch=None):
        from bayeslrp import train

        return train.laplace(init, x, y, kind=spec["kind"], n_samples=spec["n_samples"],
                             prior_precision=spec["prior_precision"], seed=common["seed"],
                             device=common.get("device"))

    def diagnostics(self, meta):
        return {"kind": meta.get("kind"), "prior_precision": meta.get("prior_precision"),
                "prior_precision_from": meta.get("prior_precision_from"),
                "n_laplace_params": meta.get("n_laplace_params")}
