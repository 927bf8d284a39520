"""The config sections besides models and attacks: data, explain, metrics, compare, figures."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from bayeslrp import catalog
from bayeslrp.plugins.spec import (ConfigIssue, Name, Percent, PosFloat, PosInt, StrictSpec,
                                   tuple_of, unique)

__all__ = ["CompareSpec", "DataSpec", "ExplainSpec", "FIG6_POINT_CHOICES", "FiguresSpec",
           "MetricsSpec", "RuleParams", "UserDataSpec"]


class UserDataSpec(StrictSpec):
    """A user's own dataset: a train and a test file (``.npz``, ``.pt``) or IDX folder.

    ``bounds`` is the pixel value range (default [0, 1]; uint8 images are mapped onto it), the
    range every attack clamps to; ``x_key`` / ``y_key`` name the arrays in a file. Relative
    paths are relative to the working directory. The files are read when the config is
    checked (every problem is a config error then) and their sha256 is part of the data key.
    """

    train: str
    test: str
    bounds: Annotated[tuple[float, float], Field(strict=False)] = (0.0, 1.0)
    x_key: Name = "x"
    y_key: Name = "y"

    @model_validator(mode="after")
    def _check(self) -> "UserDataSpec":
        from bayeslrp.errors import BayesLRPError

        if not self.bounds[0] < self.bounds[1]:
            raise ConfigIssue(("bounds",), f"must be [low, high] with low < high; got "
                                           f"{list(self.bounds)}")
        try:
            self.describe()
        except BayesLRPError as exc:  # point at the file the message names
            key = "test" if Path(self.test).name in str(exc) and \
                Path(self.train).name not in str(exc) else "train"
            raise ConfigIssue((key,), str(exc)) from None
        return self

    def describe(self) -> dict:
        """The files' facts (:func:`bayeslrp.data.user_facts.describe`; cached per file)."""
        from bayeslrp.data.user_facts import describe

        return describe(self.train, self.test, self.bounds, self.x_key, self.y_key)

    def param(self) -> dict:
        """The ``dataset`` key param of the stages that read the data."""
        from bayeslrp.data.user_facts import dataset_param

        return dataset_param(self.train, self.test, self.bounds, self.x_key, self.y_key)

    def facts(self) -> catalog.DatasetFacts:
        f = self.describe()
        return catalog.DatasetFacts(tuple(f["shape"]), f["n_classes"], tuple(f["bounds"]),
                                    f["train_size"], f["max_points"])

    @property
    def label(self) -> str:
        return f"user data {Path(self.train).name}/{Path(self.test).name}"


def _dataset_kind(value) -> str:
    """A mapping (or spec) is a user's files; anything else must be a built-in name."""
    return "files" if isinstance(value, (dict, UserDataSpec)) else "name"


class DataSpec(StrictSpec):
    """Which dataset, how many attacked test points, how much training data.

    ``dataset`` is a built-in name or a user's own files (:class:`UserDataSpec`).
    ``n_train`` draws a seeded random subset of the training split; it is a property of the
    data, shared by every model of the config (seeded by the config's ``seed``).
    ``points``: ``balanced`` (default: ``n_points / n_classes`` per class, seeded, without
    replacement), ``first_n`` (the first ``n_points`` test images, as the original's CIFAR-10
    code) or ``original`` (the original MNIST code's draw: n/K per class with replacement,
    ordered by class; docs/compat.md).
    """

    dataset: Annotated[Union[Annotated[Literal[tuple(catalog.DATASETS)], Tag("name")],
                             Annotated[UserDataSpec, Tag("files")]],
                       Discriminator(_dataset_kind)]
    n_points: PosInt
    points: Literal["balanced", "first_n", "original"] = "balanced"
    n_train: PosInt | None = None
    data_dir: str | None = None
    shape: Annotated[tuple[PosInt, PosInt, PosInt], Field(strict=False)] | None = None

    @model_validator(mode="after")
    def _check(self) -> "DataSpec":
        facts = self.facts
        per = 10 if not self.is_user else facts.n_classes
        if self.points != "first_n" and self.n_points % per:
            raise ConfigIssue(("n_points",), f"must be divisible by {per} (n/{per} points per "
                                             f"class); got {self.n_points}")
        if self.n_points > facts.max_points:
            what = "balanced " if self.points == "balanced" else ""
            raise ConfigIssue(("n_points",), f"{self.name} has at most {facts.max_points} "
                                             f"{what}test points; got {self.n_points}")
        if self.n_train is not None and self.n_train > facts.train_size:
            raise ConfigIssue(("n_train",), f"{self.name} has {facts.train_size} training "
                                            f"images; got {self.n_train}")
        if self.shape is not None and self.dataset != "synthetic":
            raise ConfigIssue(("shape",), f"only the synthetic dataset takes a shape; "
                                          f"{self.name} is {facts.shape}")
        return self

    @property
    def is_user(self) -> bool:
        """Whether the dataset is a user's own files."""
        return isinstance(self.dataset, UserDataSpec)

    @property
    def name(self) -> str:
        """The dataset's name (built-in) or a label of the user's files, for messages."""
        return self.dataset.label if self.is_user else self.dataset

    @property
    def facts(self) -> catalog.DatasetFacts:
        """Shape, classes, bounds, sizes of the dataset."""
        return self.dataset.facts() if self.is_user else catalog.DATASETS[self.dataset]

    @property
    def param(self):
        """The ``dataset`` key param of the data-reading stages: the built-in name, or the
        user's files with their sha256 (:meth:`UserDataSpec.param`)."""
        return self.dataset.param() if self.is_user else self.dataset

    @property
    def bounds(self) -> tuple[float, float]:
        """Pixel value range of the images."""
        return tuple(self.facts.bounds)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the dataset's images."""
        return self.shape if self.shape is not None else tuple(self.facts.shape)

    @property
    def train_size(self) -> int:
        """Training images the models see (``n_train`` or the whole split)."""
        return self.n_train or self.facts.train_size


class RuleParams(StrictSpec):
    """Parameters of the LRP rules (paper 000 §V: ε = 0.1, γ = 0.1, α = 1, β = 0)."""

    epsilon: PosFloat = 0.1
    gamma: PosFloat = 0.1
    alpha: Annotated[float, Field(ge=1)] = 1.0
    beta: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _check(self) -> "RuleParams":
        if not math.isclose(self.alpha - self.beta, 1.0, rel_tol=0, abs_tol=1e-12):
            raise ConfigIssue(("alpha",), f"alpha - beta must equal 1 (conservation); got "
                                          f"alpha={self.alpha}, beta={self.beta}")
        return self


class ExplainSpec(StrictSpec):
    """Which explanations: explainers × layers, Bayesian means over the first n samples.

    ``methods`` lists the explainers, each a name or ``{method: NAME, ...params}``
    (:mod:`bayeslrp.experiment.config_methods` expands it); ``rules`` is the shorthand: names
    of registered explainers (the LRP rules ``epsilon``, ``gamma``, ``alphabeta``, or
    plug-ins) with a plug-in's own parameters in ``options.<name>``.
    """

    rules: tuple_of(str) = ("epsilon",)
    layers: Union[Literal["all", "last"], tuple[int, ...]] = "all"
    n_samples: tuple_of(PosInt) = (10, 50, 100)
    rule_params: RuleParams = RuleParams()
    options: dict[str, dict[str, Any]] | None = None
    bayes: Literal["mean", "per_sample_argmax", "avg_prediction"] = "mean"
    output_seed: Literal["logit", "one"] = "logit"
    inner_seed: Literal["max", "all", "original"] = "max"
    #: ``fresh``: Bayesian models are explained with samples their attacks did not use
    #: (:mod:`bayeslrp.experiment.draws`).
    explain_draws: Literal["same", "fresh"] = "same"

    @model_validator(mode="before")
    @classmethod
    def _methods_form(cls, data: Any) -> Any:
        from bayeslrp.experiment.config_methods import expand_methods

        return expand_methods(data)

    @field_validator("layers", mode="before")
    @classmethod
    def _layers_shape(cls, v: Any) -> Any:
        if isinstance(v, str) and v in ("all", "last"):
            return v
        if isinstance(v, (list, tuple)) and v and all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v):
            return tuple(v)
        # Validated here in full so that the union below never produces per-member errors.
        raise ValueError("must be 'all', 'last' or a non-empty list of layer indices (>= 0)")

    @field_validator("rules")
    @classmethod
    def _rules_known(cls, v: tuple) -> tuple:
        from bayeslrp.explainers import EXPLAINERS

        for i, name in enumerate(v):
            if name not in EXPLAINERS:
                raise ConfigIssue((i,), f"unknown explainer {name!r}; registered: "
                                        f"{', '.join(EXPLAINERS.names())}")
        return unique(v, "rule")

    @field_validator("layers")
    @classmethod
    def _layers_unique(cls, v: Any) -> Any:
        return v if isinstance(v, str) else unique(v, "layer")

    @field_validator("n_samples")
    @classmethod
    def _n_unique(cls, v: tuple) -> tuple:
        return unique(v, "sample count")

    @model_validator(mode="after")
    def _check(self) -> "ExplainSpec":
        from bayeslrp.explainers import EXPLAINERS

        if self.bayes == "avg_prediction":
            raise ConfigIssue(("bayes",), "avg_prediction is not implemented by "
                                          "bayeslrp.lrp.explain; use mean or per_sample_argmax")
        for name in self.options or {}:
            if name not in EXPLAINERS:
                raise ConfigIssue(("options", name), f"unknown explainer; registered: "
                                                     f"{', '.join(EXPLAINERS.names())}")
            if name not in self.rules:
                raise ConfigIssue(("options", name), f"explainer {name!r} is not in rules")
        for name in self.rules:
            method = EXPLAINERS.get(name)()
            try:  # a plug-in's options are validated here, at load time
                params = method.key_args(self)
            except ValueError as exc:
                raise ConfigIssue(("options", name), " ".join(str(exc).split())[:300]) from None
            try:
                method.check_settings(params, self.output_seed)
            except ValueError as exc:
                raise ConfigIssue(("output_seed",), " ".join(str(exc).split())[:300]) from None
        return self

    def layers_for(self, arch: str | tuple[int, ...]) -> tuple[int, ...]:
        """The explained layer indices for a built-in architecture or a model's layers."""
        layers = catalog.learnable_layers(arch) if isinstance(arch, str) else tuple(arch)
        if self.layers == "all":
            return layers
        if self.layers == "last":
            return layers[-1:]
        return tuple(self.layers)

    def n_samples_for(self, model: Any) -> tuple[int, ...]:
        """Sample counts explained for ``model``: ``(1,)`` for det/adv, sorted for BNNs."""
        return tuple(sorted(self.n_samples)) if model.bayesian else (1,)


class MetricsSpec(StrictSpec):
    """Top-k robustness settings (SPEC §6).

    ``k``: percentages of the pixels (fractions allowed, e.g. 12.5); ``k_pixels``: pixel
    counts (paper 001's Top-100 / Top-200 of 784). Each gives its own rows of the results
    table: ``k`` the percentage (``100·K/P`` for a pixel count), ``k_pixels`` the count ``K``.
    """

    k: tuple_of(Percent) = (20.0,)
    k_pixels: tuple_of(PosInt, min_length=0) = ()
    ties: Literal["nonzero", "index"] = "nonzero"
    topk_mode: Literal["abs", "signed"] = "abs"

    @field_validator("k")
    @classmethod
    def _k_unique(cls, v: tuple) -> tuple:
        return unique(v, "k")

    @field_validator("k_pixels")
    @classmethod
    def _k_pixels_unique(cls, v: tuple) -> tuple:
        return unique(v, "pixel count")


class CompareSpec(StrictSpec):
    """Per-image differences ``model − baseline`` against the baseline of the same arch."""

    baseline: tuple_of(Name)

    @field_validator("baseline", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v

    @field_validator("baseline")
    @classmethod
    def _baseline_unique(cls, v: tuple) -> tuple:
        return unique(v, "baseline")


#: How Fig. 6 (and the top-k pixel figure) picks its image (docs/figures.md).
FIG6_POINT_CHOICES = ("first_failed", "original")


class FiguresSpec(StrictSpec):
    """What the figures of a run show; read when the figures are drawn, in no artifact key.

    ``fig6_point``: ``first_failed`` (default) — the first saved point on which the attack
    failed on both models; ``original`` — the original code's choice: among the points where
    it failed on both and the Bayesian robustness is not 1, the one with the lowest
    deterministic robustness. ``heatmap_points``: how many attacked points (the first ones)
    get their heatmaps saved in ``RUN_DIR/heatmaps`` for the figures.
    """

    fig6_point: Literal[FIG6_POINT_CHOICES] = "first_failed"
    heatmap_points: PosInt = 8
