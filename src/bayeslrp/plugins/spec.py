"""Building blocks of config specs shared by the config schema and every plug-in's spec.

Torch-free: validating a config never imports torch.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = ["ConfigIssue", "Epsilon", "Name", "NonNegInt", "Percent", "PosFloat", "PosInt",
           "Seed", "StrictSpec", "EnsembleMode", "tuple_of", "unique"]


class ConfigIssue(ValueError):
    """A semantic problem found by a check, with the key path relative to where it was found.

    Raised from plug-in checks and validators; :func:`bayeslrp.experiment.config.load_config`
    turns it into the one-line ``config error at <path>: <message>``.
    """

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.path = tuple(path)


Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]
PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Epsilon = Annotated[float, Field(gt=0, le=1)]
Percent = Annotated[float, Field(gt=0, le=100)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]
EnsembleMode = Literal["expected_gradient", "predictive", "per_sample_average"]


def tuple_of(item: Any, min_length: int = 1) -> Any:
    """A YAML list read as a tuple (strict items, lenient container)."""
    return Annotated[tuple[item, ...], Field(strict=False, min_length=min_length)]


def unique(values: tuple, what: str) -> tuple:
    """``values`` unchanged, or a :class:`ConfigIssue` at the first repeated one."""
    seen: set = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ConfigIssue((i,), f"duplicate {what} {v!r}")
        seen.add(v)
    return values


class StrictSpec(BaseModel):
    """Base of every config spec: unknown keys rejected, no coercion, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
