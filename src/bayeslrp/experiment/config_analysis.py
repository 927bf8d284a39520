"""The config's ``analysis`` section: measurements made on the grid's models and points.

``analysis: {manifold: {...}}`` — how much of each gradient and heatmap lies off the data
manifold (paper 000 Theorem IV.1), see :mod:`bayeslrp.experiment.stages.manifold` and
docs/manifold.md.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from bayeslrp.plugins.spec import PosInt, StrictSpec, tuple_of, unique

__all__ = ["AnalysisSpec", "ManifoldControls", "ManifoldSpec"]

Share = Annotated[float, Field(gt=0, le=1)]


class ManifoldControls(StrictSpec):
    """Controls: a random subspace of the same dimension (``random``) and the sensitivity of
    the shares to the neighbourhood size ``k`` and the dimension ``dim`` (mean rows only)."""

    random: bool = True
    k: tuple_of(PosInt, min_length=0) = ()
    dim: tuple_of(PosInt, min_length=0) = ()


class ManifoldSpec(StrictSpec):
    """Normal shares of gradients, heatmaps and attack perturbations (SPEC §9).

    ``k`` nearest training images per attacked point and ``dim`` tangent directions (or, with
    ``dim: null``, the fewest explaining ``variance`` of the local variance); ``n_samples``
    the sample counts whose mean is measured; ``quantities`` the input gradients measured
    (``prediction``: the explained class's logit; ``loss``: the cross-entropy); ``heatmaps``
    adds every explainer of ``explain.rules`` at the output layer; ``perturbations`` the
    normal share of ``x̃ − x`` of every attack; ``samples`` keeps one row per posterior
    sample (PCA basis, main ``k``/``dim``).
    """

    k: Annotated[int, Field(ge=2)] = 50
    dim: PosInt | None = 10
    variance: Share | None = None
    n_samples: tuple_of(PosInt) = (1, 2, 5, 10, 20, 50, 100)
    quantities: tuple_of(Literal["prediction", "loss"], min_length=0) = ("prediction", "loss")
    heatmaps: Union[bool, tuple_of(str)] = True
    perturbations: bool = True
    samples: bool = True
    controls: ManifoldControls = ManifoldControls()

    @field_validator("n_samples")
    @classmethod
    def _sorted_unique(cls, v: tuple) -> tuple:
        return tuple(sorted(unique(v, "sample count")))

    @field_validator("heatmaps")
    @classmethod
    def _registered(cls, v):
        from bayeslrp.explainers import EXPLAINERS

        if isinstance(v, tuple):
            unknown = [name for name in v if name not in EXPLAINERS.names()]
            if unknown:
                raise ValueError(f"unknown explainer {unknown[0]!r}; registered: "
                                 f"{', '.join(EXPLAINERS.names())}")
            return unique(v, "explainer")
        return v

    def heatmap_rules(self, rules: tuple[str, ...]) -> tuple[str, ...]:
        """The explainers whose heatmaps are measured, given the config's ``explain.rules``."""
        if self.heatmaps is True:
            return tuple(rules)
        return () if self.heatmaps is False else tuple(self.heatmaps)

    @model_validator(mode="after")
    def _dimension(self) -> "ManifoldSpec":
        if self.dim is None and self.variance is None:
            raise ValueError("give dim (the tangent dimension) or variance (dim: null)")
        if self.dim is not None and self.variance is not None:
            raise ValueError("give dim or variance, not both (set dim: null to use variance)")
        for k, dim in self.settings():
            if dim is not None and dim >= k:
                raise ValueError(f"dim {dim} must be below the neighbourhood size k = {k}")
        if not (self.quantities or self.heatmaps or self.perturbations):
            raise ValueError("nothing to measure: give quantities, heatmaps or perturbations")
        return self

    def settings(self) -> list[tuple[int, int | None]]:
        """Every ``(k, dim)`` measured: the main one first, then the sensitivity controls."""
        pairs = [(self.k, self.dim)]
        pairs += [(k, self.dim) for k in self.controls.k if k != self.k]
        pairs += [(self.k, d) for d in self.controls.dim if d != self.dim]
        return pairs


class AnalysisSpec(StrictSpec):
    """Analyses run on the grid's models and attacked points."""

    manifold: ManifoldSpec | None = None
