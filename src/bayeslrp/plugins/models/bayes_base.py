"""Keys common to Bayesian model specs: kept posterior samples and the own-attack control."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from bayeslrp.plugins.models.base import ModelSpecBase
from bayeslrp.plugins.spec import NonNegInt, PosInt, unique

__all__ = ["BayesSpecBase"]


class BayesSpecBase(ModelSpecBase):
    """A posterior of ``n_samples`` kept samples; ``own_attack_sample`` adds S = 1 models."""

    n_samples: PosInt = 100
    own_attack_sample: Annotated[tuple[NonNegInt, ...], Field(strict=False)] | None = None

    @field_validator("own_attack_sample", mode="before")
    @classmethod
    def _one_or_many_samples(cls, v: Any) -> Any:
        return (v,) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("own_attack_sample")
    @classmethod
    def _samples_unique(cls, v: Any) -> Any:
        return v if v is None else unique(v, "sample index")

    @property
    def sample_count(self) -> int:
        return self.n_samples

    @property
    def bayesian(self) -> bool:
        return True

    @property
    def own_models(self) -> tuple[str, ...]:
        """Names of the derived S = 1 models ``<name>.own<j>`` (control ``own_attack_sample``)."""
        return tuple(f"{self.name}.own{j}" for j in (self.own_attack_sample or ()))
