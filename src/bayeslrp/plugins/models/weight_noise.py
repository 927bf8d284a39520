"""NoiseGrad weight noise: a trained model's weights × N(1, σ²) as a posterior (SPEC §9)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from bayeslrp.plugins.models.base import ModelMethod
from bayeslrp.plugins.models.bayes_base import BayesSpecBase
from bayeslrp.plugins.models.init_ref import check_init_model
from bayeslrp.plugins.spec import ConfigIssue, Name, PosFloat

__all__ = ["WeightNoiseMethod", "WeightNoiseModel"]


class WeightNoiseModel(BayesSpecBase):
    """``n_samples`` draws Ŵ ⊙ η, η ~ N(1, σ²), of the det/adv model ``init_model``; ``sigma``
    given, or chosen on the training data (``max_accuracy_drop``, see
    :func:`bayeslrp.train.weight_noise.choose_sigma`)."""

    method: Literal["weight_noise"]
    init_model: Name | None = None
    sigma: PosFloat | None = None
    max_accuracy_drop: Annotated[float, Field(gt=0, lt=1)] = 0.02


class WeightNoiseMethod(ModelMethod):
    """``method: weight_noise`` — :func:`bayeslrp.train.weight_noise` of the ``init_model``."""

    name = "weight_noise"
    Spec = WeightNoiseModel
    bayesian = True
    unkeyed = frozenset({"name", "seed", "init_model", "own_attack_sample"})

    def resolve(self, spec: Any, dataset: str) -> dict[str, Any]:
        if spec.init_model is None:
            raise ConfigIssue(("init_model",), "required: the trained det (or adv) model whose "
                                               "weights are perturbed")
        if spec.sigma is not None and "max_accuracy_drop" in spec.model_fields_set:
            raise ConfigIssue(("max_accuracy_drop",), "only used without sigma (the sigma "
                                                      "heuristic)")
        return {}

    def key_params(self, spec: Any) -> dict[str, Any]:
        params = super().key_params(spec)
        if spec.sigma is not None:
            params.pop("max_accuracy_drop", None)
        return params

    def check(self, spec: Any, config: Any) -> None:
        check_init_model(spec, config, ("det", "adv"), "a trained network")

    def init_model(self, spec: Any) -> str | None:
        return spec.init_model

    def cost(self, spec, n_train, flops):
        from bayeslrp.train.weight_noise import HEURISTIC_DRAWS, HEURISTIC_POINTS, SIGMA_GRID

        if spec.sigma is not None:
            return 0.0, "train"
        probes = 2 + len(SIGMA_GRID).bit_length()  # the two ends, then bisection
        return probes * HEURISTIC_DRAWS * min(n_train, HEURISTIC_POINTS) * flops, "train"

    def train(self, spec, net, x, y, *, init=None, common, scratch=None):
        from bayeslrp import train

        return train.weight_noise(init, spec["sigma"], n_samples=spec["n_samples"],
                                  seed=common["seed"], x=x, y=y,
                                  max_accuracy_drop=spec.get("max_accuracy_drop", 0.02),
                                  device=common.get("device"))

    def diagnostics(self, meta):
        keys = ("sigma", "sigma_from", "heuristic_base_accuracy", "heuristic_accuracy")
        return {k: meta[k] for k in keys if k in meta}
