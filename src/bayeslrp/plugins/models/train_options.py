"""Optimiser, learning-rate steps and augmentation keys shared by the trained model methods.

At their defaults (Adam, no weight decay, constant rate, no augmentation: the paper's MNIST
settings) these keys stay out of a model's artifact key, so run directories made before they
existed keep their models.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Mapping

from pydantic import Field, field_validator

from bayeslrp.plugins.spec import PosInt, StrictSpec, tuple_of

__all__ = ["TRAIN_OPTION_DEFAULTS", "TrainOptionFields", "drop_default_options",
           "train_options"]

#: The keys and their defaults (those of :class:`bayeslrp.train.TrainOptions`).
TRAIN_OPTION_DEFAULTS: dict[str, Any] = {"optimizer": "adam", "momentum": 0.9,
                                         "weight_decay": 0.0, "lr_milestones": [],
                                         "lr_gamma": 0.1, "augment": "none"}


class TrainOptionFields(StrictSpec):
    """``optimizer`` (adam | sgd), ``momentum``, ``weight_decay``, ``lr_milestones`` (epochs
    at which the rate is multiplied by ``lr_gamma``) and ``augment`` (none | crop_flip)."""

    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    lr_milestones: tuple_of(PosInt, min_length=0) = ()
    lr_gamma: Annotated[float, Field(gt=0, le=1)] = 0.1
    augment: Literal["none", "crop_flip"] = "none"

    @field_validator("lr_milestones")
    @classmethod
    def _increasing(cls, v: Any) -> Any:
        if list(v) != sorted(set(v)):
            raise ValueError(f"must be strictly increasing epochs; got {list(v)}")
        return v


def drop_default_options(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without the training-option keys that hold their defaults."""
    return {k: v for k, v in params.items()
            if not (k in TRAIN_OPTION_DEFAULTS and _same(v, TRAIN_OPTION_DEFAULTS[k]))}


def _same(value: Any, default: Any) -> bool:
    if isinstance(default, list):
        return list(value or []) == default
    return value == default


def train_options(spec: Mapping[str, Any]):
    """The :class:`bayeslrp.train.TrainOptions` of a model's key parameters."""
    from bayeslrp.train.options import TrainOptions

    values = {k: spec.get(k, d) for k, d in TRAIN_OPTION_DEFAULTS.items()}
    values["lr_milestones"] = tuple(values["lr_milestones"] or ())
    return TrainOptions(**values)
