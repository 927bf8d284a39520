"""The experiment configuration: a strict pydantic schema for the YAML file describing a grid.

``load_config`` is the only entry point users need: it reads YAML (a path, YAML text or an
already parsed mapping), validates it and turns any problem into one
:class:`~bayeslrp.errors.BayesLRPError` whose message is a single line naming the offending
key, e.g. ``config error at models[1].epochs: Input should be greater than 0``.

Validation is strict: unknown keys, wrong types (no string→number coercion), impossible
values and inconsistent combinations are rejected. Defaults that depend on the dataset
(hidden size, epochs, VI learning rate; SPEC §2–3) are filled in during validation, so a
validated :class:`Config` holds every value explicitly and dumping it gives a config that
loads back to the same object. ``compat: original`` is expanded the same way: the original
code's settings (:data:`COMPAT_ORIGINAL`) are filled in where the config gives no value
(explicit values win; ``docs/compat.md``). ``docs/config.md`` documents every field.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationError,
                      field_validator, model_validator)

from bayeslrp.errors import BayesLRPError

__all__ = [
    "ARCHS", "ATTACKS", "DATASETS", "LEARNABLE_LAYERS", "METHODS", "RULES",
    "AdvModel", "AttackSpec", "BetaAttack", "CompareSpec", "Config", "DataSpec", "DetModel",
    "ExplainSpec", "FGSMAttack", "HMCModel", "MetricsSpec", "ModelSpec", "PGDAttack",
    "RegionAttack", "RuleParams", "TopKAttack", "VIModel",
    "COMPAT_ORIGINAL", "config_key", "canonical_json", "dump_config", "expand_compat",
    "load_config",
]

ARCHS = ("fc2", "conv", "resnet20")
METHODS = ("det", "adv", "vi", "hmc")
RULES = ("epsilon", "gamma", "alphabeta")
ATTACKS = ("fgsm", "pgd", "topk", "region", "beta")
DATASETS = ("mnist", "fashion_mnist", "cifar10", "digits", "synthetic")

# User-facing layer names: positions of the learnable layers in the model's top-level
# Sequential (SPEC §2), as bayeslrp.nets.learnable_layers reports them (a test checks this).
# resnet20 is [0 normalise, 1 conv, 2 bn, 3 relu, 4-12 nine residual blocks, 13 pool,
# 14 flatten, 15 linear]: the stem conv, every residual block and the classifier.
LEARNABLE_LAYERS: dict[str, tuple[int, ...]] = {
    "fc2": (1, 3, 5),
    "conv": (0, 3, 7),
    "resnet20": (1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15),
}

# (channels, height, width) of each dataset; synthetic defaults to MNIST's shape.
DATASET_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32),
    "digits": (1, 8, 8), "synthetic": (1, 28, 28),
}
# Largest balanced subset of the test split (n/10 per class without replacement): 10 × the
# smallest class count (MNIST test: digit 5 has 892 images).
MAX_POINTS: dict[str, int] = {"mnist": 8920, "fashion_mnist": 10000, "cifar10": 10000}
TRAIN_SIZES: dict[str, int] = {"mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000}

# Spec defaults that depend on the dataset (SPEC §2, §3). Missing entry = no default: the
# user must give the value.
HIDDEN_DEFAULT = {"mnist": 512, "fashion_mnist": 1024}
CONV_CHANNELS_DEFAULT = 32
DET_EPOCHS_DEFAULT = {("fc2", None): 15, ("conv", "mnist"): 5, ("conv", "fashion_mnist"): 10}
VI_EPOCHS_DEFAULT = {"mnist": 5, "fashion_mnist": 15}
VI_LR_DEFAULT = {"mnist": 0.01, "fashion_mnist": 0.001}
HMC_BLOCK_DEFAULT = 4000
PGD_STEPS_DEFAULT, PGD_ALPHA_DEFAULT = 40, 0.01
#: Initial posterior σ of VI (``bayeslrp.train.vi.DEFAULT_INIT_STD``; repeated here so that
#: validating a config does not import torch; a test checks they agree).
VI_INIT_STD_DEFAULT = 1e-3
VI_LR_SCHEDULES = ("constant", "cosine")
#: VI options added after run directories already existed, with the values every earlier run
#: trained with. A model holding these values leaves them out of its artifact key (so older
#: run directories keep their artifacts), and training fills them back in. Literal on purpose:
#: changing a default later must not make new models reuse artifacts trained with the old values.
VI_KEY_LEGACY_VALUES = {"init_std": 1e-3, "lr_schedule": "constant"}


class ConfigIssue(ValueError):
    """A cross-field problem found by a validator, with the path relative to that validator."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.path = path


# --------------------------------------------------------------------------- field types

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]
PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Epsilon = Annotated[float, Field(gt=0, le=1)]
Percent = Annotated[float, Field(gt=0, le=100)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]
Rule = Literal["epsilon", "gamma", "alphabeta"]
Arch = Literal["fc2", "conv", "resnet20"]
EnsembleMode = Literal["expected_gradient", "predictive", "per_sample_average"]


def _tuple_of(item: Any, min_length: int = 1) -> Any:
    # strict=False on the container only: YAML lists become tuples, items stay strict.
    return Annotated[tuple[item, ...], Field(strict=False, min_length=min_length)]


def _unique(values: tuple, what: str) -> tuple:
    seen: set = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ConfigIssue((i,), f"duplicate {what} {v!r}")
        seen.add(v)
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- data


class DataSpec(_Strict):
    """Which dataset, how many attacked test points, how much training data."""

    dataset: Literal["mnist", "fashion_mnist", "cifar10", "digits", "synthetic"]
    n_points: PosInt
    n_train: PosInt | None = None
    data_dir: str | None = None
    shape: Annotated[tuple[PosInt, PosInt, PosInt], Field(strict=False)] | None = None

    @model_validator(mode="after")
    def _check(self) -> "DataSpec":
        if self.n_points % 10:
            raise ConfigIssue(("n_points",), f"must be divisible by 10 (n/10 points per class); "
                                             f"got {self.n_points}")
        limit = MAX_POINTS.get(self.dataset)
        if limit is not None and self.n_points > limit:
            raise ConfigIssue(("n_points",), f"{self.dataset} has at most {limit} balanced test "
                                             f"points; got {self.n_points}")
        train = TRAIN_SIZES.get(self.dataset)
        if train is not None and self.n_train is not None and self.n_train > train:
            raise ConfigIssue(("n_train",), f"{self.dataset} has {train} training images; "
                                            f"got {self.n_train}")
        if self.shape is not None and self.dataset != "synthetic":
            raise ConfigIssue(("shape",), f"only the synthetic dataset takes a shape; "
                                          f"{self.dataset} is {DATASET_SHAPES[self.dataset]}")
        return self

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the dataset's images."""
        return self.shape if self.shape is not None else DATASET_SHAPES[self.dataset]


# --------------------------------------------------------------------------- models


class _ModelBase(_Strict):
    name: Name
    arch: Arch
    hidden: PosInt | None = None
    channels: PosInt | None = None
    seed: Seed | None = None

    @property
    def sample_count(self) -> int:
        """Number of stacked parameter samples ``S`` of the trained Ensemble."""
        return 1

    @property
    def bayesian(self) -> bool:
        return False


class DetModel(_ModelBase):
    """Deterministic training (Adam, cross-entropy)."""

    method: Literal["det"]
    epochs: PosInt | None = None
    lr: PosFloat = 1e-3
    batch_size: PosInt = 128


class AdvModel(_ModelBase):
    """Adversarial training: batches replaced by (or mixed with) FGSM/PGD examples."""

    method: Literal["adv"]
    epochs: PosInt | None = None
    lr: PosFloat = 1e-3
    batch_size: PosInt = 128
    adv_attack: Literal["fgsm", "pgd"] = "fgsm"
    adv_eps: Epsilon = 0.2
    adv_mix: bool = False
    adv_steps: PosInt | None = None
    adv_alpha: PosFloat | None = None

    @model_validator(mode="after")
    def _check(self) -> "AdvModel":
        if self.adv_attack == "fgsm":
            for key in ("adv_steps", "adv_alpha"):
                if getattr(self, key) is not None:
                    raise ConfigIssue((key,), "only used with adv_attack: pgd")
            return self
        return self.model_copy(update={
            "adv_steps": self.adv_steps or PGD_STEPS_DEFAULT,
            "adv_alpha": self.adv_alpha or PGD_ALPHA_DEFAULT})


class _BayesModel(_ModelBase):
    """Common keys of the Bayesian models: the ``own_attack_sample`` control."""

    own_attack_sample: Annotated[tuple[NonNegInt, ...], Field(strict=False)] | None = None

    @field_validator("own_attack_sample", mode="before")
    @classmethod
    def _one_or_many_samples(cls, v: Any) -> Any:
        return (v,) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("own_attack_sample")
    @classmethod
    def _samples_unique(cls, v: Any) -> Any:
        return v if v is None else _unique(v, "sample index")

    @property
    def own_models(self) -> tuple[str, ...]:
        """Names of the derived S = 1 models ``<name>.own<j>`` (control ``own_attack_sample``)."""
        return tuple(f"{self.name}.own{j}" for j in (self.own_attack_sample or ()))


class VIModel(_BayesModel):
    """Mean-field Gaussian variational inference; ``n_samples`` posterior draws are kept."""

    method: Literal["vi"]
    epochs: PosInt | None = None
    lr: PosFloat | None = None
    batch_size: PosInt = 128
    n_samples: PosInt = 100
    prior_std: PosFloat = 1.0
    init_std: PosFloat = VI_INIT_STD_DEFAULT
    lr_schedule: Literal[VI_LR_SCHEDULES] = "constant"

    @property
    def sample_count(self) -> int:
        return self.n_samples

    @property
    def bayesian(self) -> bool:
        return True


class HMCModel(_BayesModel):
    """Hamiltonian Monte Carlo; ``n_samples`` kept samples in total (pooled over chains)."""

    method: Literal["hmc"]
    n_samples: PosInt = 100
    warmup: NonNegInt = 100
    steps: PosInt = 10
    step_size: PosFloat = 0.5
    target_accept: Annotated[float, Field(gt=0, lt=1)] = 0.8
    adapt_mass: bool = False
    prior_std: PosFloat = 1.0
    chains: PosInt = 1
    mode: Literal["full", "blocks", "subset"] = "full"
    subset: PosInt | None = None
    block_size: PosInt | None = None
    init: Literal["map", "random"] = "map"
    init_model: Name | None = None
    @property
    def sample_count(self) -> int:
        return self.n_samples

    @property
    def bayesian(self) -> bool:
        return True

    @model_validator(mode="after")
    def _check(self) -> "HMCModel":
        if self.mode == "subset" and self.subset is None:
            raise ConfigIssue(("subset",), "required with mode: subset (number of training "
                                           "points)")
        if self.mode != "subset" and self.subset is not None:
            raise ConfigIssue(("subset",), "only used with mode: subset")
        if self.mode != "blocks" and self.block_size is not None:
            raise ConfigIssue(("block_size",), "only used with mode: blocks")
        if self.n_samples % self.chains:
            raise ConfigIssue(("n_samples",), f"must be divisible by chains={self.chains}")
        if self.init_model is not None and self.init != "map":
            raise ConfigIssue(("init_model",), "only used with init: map")
        if self.mode == "blocks" and self.block_size is None:
            return self.model_copy(update={"block_size": HMC_BLOCK_DEFAULT})
        return self


ModelSpec = Annotated[Union[DetModel, AdvModel, VIModel, HMCModel], Field(discriminator="method")]


# --------------------------------------------------------------------------- attacks


class _AttackBase(_Strict):
    name: Name | None = None
    eps: Epsilon = 0.2
    n_samples: PosInt | None = None
    transfer_from: Name | None = None

    @property
    def label(self) -> str:
        """The attack's name in tables and figures (``name``, else the method)."""
        return self.name or self.method  # type: ignore[attr-defined]


class FGSMAttack(_AttackBase):
    """FGSM, ``x̃ = clamp(x + ε·sign ∇x L)``."""

    method: Literal["fgsm"]
    mode: EnsembleMode = "expected_gradient"


class PGDAttack(_AttackBase):
    """PGD with a uniform random start in the ε-ball."""

    method: Literal["pgd"]
    mode: EnsembleMode = "expected_gradient"
    steps: PosInt = 40
    alpha: PosFloat = 0.01
    restarts: PosInt = 1
    targeted: bool = False


class TopKAttack(_AttackBase):
    """Ghorbani top-k saliency attack on the output-layer explanation under ``rule``."""

    method: Literal["topk"]
    k: Percent = 20.0
    steps: PosInt = 10
    alpha: PosFloat = 0.5
    rule: Rule = "epsilon"


class RegionAttack(_AttackBase):
    """Ghorbani target-region attack (a seeded random region of ``k`` % of the pixels)."""

    method: Literal["region"]
    k: Percent = 20.0
    steps: PosInt = 10
    alpha: PosFloat = 0.5
    rule: Rule = "epsilon"


class BetaAttack(_AttackBase):
    """Dombrowski β-manipulation towards a seeded random other test image's explanation."""

    method: Literal["beta"]
    steps: PosInt = 10
    lr: PosFloat = 0.01
    gamma: Annotated[float, Field(ge=0)] = 1.0
    beta: PosFloat = 100.0
    rule: Rule = "epsilon"


AttackSpec = Annotated[Union[FGSMAttack, PGDAttack, TopKAttack, RegionAttack, BetaAttack],
                       Field(discriminator="method")]


# --------------------------------------------------------------------------- explain, metrics


class RuleParams(_Strict):
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


class ExplainSpec(_Strict):
    """Which explanations: rules × layers, Bayesian means over the first n samples."""

    rules: _tuple_of(Rule) = ("epsilon",)
    layers: Union[Literal["all", "last"], tuple[int, ...]] = "all"
    n_samples: _tuple_of(PosInt) = (10, 50, 100)
    rule_params: RuleParams = RuleParams()
    bayes: Literal["mean", "per_sample_argmax", "avg_prediction"] = "mean"
    output_seed: Literal["logit", "one"] = "logit"
    inner_seed: Literal["max", "all"] = "max"

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
    def _rules_unique(cls, v: tuple) -> tuple:
        return _unique(v, "rule")

    @field_validator("layers")
    @classmethod
    def _layers_unique(cls, v: Any) -> Any:
        return v if isinstance(v, str) else _unique(v, "layer")

    @field_validator("n_samples")
    @classmethod
    def _n_unique(cls, v: tuple) -> tuple:
        return _unique(v, "sample count")

    def layers_for(self, arch: str) -> tuple[int, ...]:
        """The explained layer indices for an architecture."""
        if self.layers == "all":
            return LEARNABLE_LAYERS[arch]
        if self.layers == "last":
            return LEARNABLE_LAYERS[arch][-1:]
        return tuple(self.layers)

    def n_samples_for(self, model: _ModelBase) -> tuple[int, ...]:
        """Sample counts explained for ``model``: ``(1,)`` for det/adv, sorted for BNNs."""
        return tuple(sorted(self.n_samples)) if model.bayesian else (1,)


class MetricsSpec(_Strict):
    """Top-k robustness settings (SPEC §6)."""

    k: _tuple_of(Percent) = (20.0,)
    ties: Literal["nonzero", "index"] = "nonzero"
    topk_mode: Literal["abs", "signed"] = "abs"

    @field_validator("k")
    @classmethod
    def _k_unique(cls, v: tuple) -> tuple:
        return _unique(v, "k")


class CompareSpec(_Strict):
    """Per-image differences ``model − baseline`` against the baseline of the same arch."""

    baseline: _tuple_of(Name)

    @field_validator("baseline", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v

    @field_validator("baseline")
    @classmethod
    def _baseline_unique(cls, v: tuple) -> tuple:
        return _unique(v, "baseline")


# --------------------------------------------------------------------------- compat


#: ``compat: original`` fills these values where the config does not give them (explicit
#: values win). Paths are (section, key); see docs/compat.md for why each default differs.
COMPAT_ORIGINAL: dict[str, Any] = {
    "attacks.mode": "per_sample_average",       # fgsm and pgd only
    "metrics.topk_mode": "signed",
    "metrics.ties": "index",
    "explain.output_seed": "one",
    "explain.bayes": "per_sample_argmax",
    "models.mode": "blocks",                    # hmc only (block_size then defaults to 4000)
    "models.channels": 16,                      # conv only
}


def expand_compat(data: Mapping[str, Any]) -> dict[str, Any]:
    """The raw config with the ``compat: original`` settings filled in where not given.

    Explicit values in ``data`` are kept. Entries of the wrong type are left alone, so that
    schema validation reports them at their usual path.
    """
    out = dict(data)

    def fill(entry: Any, key: str, value: Any) -> Any:
        if isinstance(entry, dict) and key not in entry:
            return {**entry, key: value}
        return entry

    if isinstance(out.get("attacks"), list):
        out["attacks"] = [fill(a, "mode", COMPAT_ORIGINAL["attacks.mode"])
                          if isinstance(a, dict) and a.get("method") in ("fgsm", "pgd") else a
                          for a in out["attacks"]]
    if isinstance(out.get("models"), list):
        models = []
        for m in out["models"]:
            if isinstance(m, dict) and m.get("method") == "hmc":
                m = fill(m, "mode", COMPAT_ORIGINAL["models.mode"])
            if isinstance(m, dict) and m.get("arch") == "conv":
                m = fill(m, "channels", COMPAT_ORIGINAL["models.channels"])
            models.append(m)
        out["models"] = models
    for section in ("explain", "metrics"):
        entry = out.get(section, {})
        for path, value in COMPAT_ORIGINAL.items():
            if path.startswith(section + "."):
                entry = fill(entry, path.split(".", 1)[1], value)
        out[section] = entry
    return out


# --------------------------------------------------------------------------- top level


class Config(_Strict):
    """A whole experiment grid. See ``docs/config.md``."""

    name: Name = "experiment"
    seed: Seed = 0
    device: Annotated[str, StringConstraints(pattern=r"^(cpu|auto|mps|cuda(:[0-9]+)?)$")] = "cpu"
    data: DataSpec
    models: _tuple_of(ModelSpec)
    attacks: _tuple_of(AttackSpec)
    explain: ExplainSpec = ExplainSpec()
    metrics: MetricsSpec = MetricsSpec()
    compare: CompareSpec | None = None
    compat: Literal["spec", "original"] = "spec"

    @model_validator(mode="before")
    @classmethod
    def _expand_compat(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("compat") == "original":
            return expand_compat(data)
        return data

    @model_validator(mode="after")
    def _check(self) -> "Config":
        models = tuple(_resolve_model(i, m, self.data) for i, m in enumerate(self.models))
        names = [m.name for m in models]
        _unique_at(names, "models", "name", "model name")
        known = list(names)  # models and the derived models of own_attack_sample
        for i, m in enumerate(models):
            for j, (sample, own) in enumerate(zip(m.own_attack_sample or (), m.own_models)
                                              if m.bayesian else ()):
                if sample >= m.sample_count:
                    raise ConfigIssue(("models", i, "own_attack_sample", j), (
                        f"sample {sample} does not exist; model {m.name!r} keeps "
                        f"{m.sample_count} samples (0 to {m.sample_count - 1})"))
                if own in known:
                    raise ConfigIssue(("models", i, "own_attack_sample", j), (
                        f"derived model name {own!r} is already a model's name"))
                known.append(own)
        for j, a in enumerate(self.attacks):
            if a.transfer_from is not None and a.transfer_from not in known:
                raise ConfigIssue(("attacks", j, "transfer_from"), (
                    f"no model named {a.transfer_from!r}; models are {', '.join(known)}"))
        _unique_at([a.label for a in self.attacks], "attacks", "name", "attack name")
        for j, a in enumerate(self.attacks):
            if a.label == "clean":  # reserved: the unattacked images in task labels
                raise ConfigIssue(("attacks", j, "name"), "'clean' is reserved; choose "
                                                          "another attack name")
        by_name = dict(zip(names, models))
        for i, m in enumerate(models):
            if isinstance(m, HMCModel):
                _check_hmc_links(i, m, by_name, self.data)
        bayes = [(i, m) for i, m in enumerate(models) if m.bayesian]
        _check_sample_counts(("explain", "n_samples"), self.explain.n_samples, bayes)
        for j, a in enumerate(self.attacks):
            if a.n_samples is not None:
                _check_sample_counts(("attacks", j, "n_samples"), (a.n_samples,), bayes,
                                     single=True)
        if not isinstance(self.explain.layers, str):
            for j, layer in enumerate(self.explain.layers):
                for i, m in enumerate(models):
                    if layer not in LEARNABLE_LAYERS[m.arch]:
                        raise ConfigIssue(("explain", "layers", j), (
                            f"layer {layer} is not a learnable layer of arch {m.arch} "
                            f"(model {m.name!r}); use one of {list(LEARNABLE_LAYERS[m.arch])}, "
                            f"'all' or 'last'"))
        n_pixels = self.data.image_shape[1] * self.data.image_shape[2]
        for j, k in enumerate(self.metrics.k):
            if _selects_nothing(k, n_pixels, self.metrics.topk_mode):
                raise ConfigIssue(("metrics", "k", j), (
                    f"k={k}% of {n_pixels} pixels selects no pixel"
                    f"{' per sign' if self.metrics.topk_mode == 'signed' else ''}; use a larger k"))
        if self.compare is not None:
            _check_compare(self.compare, models, by_name)
        return self.model_copy(update={"models": models})

    # convenience used by the grid and the stages ------------------------------------------

    def model(self, name: str) -> DetModel | AdvModel | VIModel | HMCModel:
        """The model spec called ``name``."""
        for m in self.models:
            if m.name == name:
                return m
        raise BayesLRPError(f"no model named {name!r}; models are "
                            f"{', '.join(m.name for m in self.models)}")

    def own_models(self) -> list[tuple[str, str, int]]:
        """The derived models of ``own_attack_sample``: ``(name, parent name, sample j)``."""
        return [(own, m.name, j) for m in self.models if m.bayesian
                for own, j in zip(m.own_models, m.own_attack_sample or ())]

    def baseline_for(self, model_name: str) -> str | None:
        """Name of the baseline ``model_name`` is compared against (None: none / itself)."""
        if self.compare is None or model_name in self.compare.baseline:
            return None
        arch = self.model(model_name).arch
        for b in self.compare.baseline:
            if self.model(b).arch == arch:
                return b
        return None


def _unique_at(values: list, section: str, key: str, what: str) -> None:
    seen: set = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ConfigIssue((section, i, key), f"duplicate {what} {v!r}")
        seen.add(v)


def _selects_nothing(k: float, n_pixels: int, mode: str) -> bool:
    frac = Fraction(str(k))
    return math.floor(frac * n_pixels / (100 if mode == "abs" else 200)) == 0


def _arch_fits(arch: str, shape: tuple[int, int, int]) -> bool:
    c, h, w = shape
    if arch == "conv":
        # conv5 -> pool2 -> conv5 -> pool(2, stride 1) must leave at least one position
        return min((h - 4) // 2, (w - 4) // 2) - 5 >= 1
    if arch == "resnet20":
        return c == 3  # its normalisation layer holds CIFAR's per-channel statistics
    return True  # fc2 flattens any image


def _resolve_model(i: int, m: Any, data: DataSpec) -> Any:
    """Check arch-dependent fields and fill the dataset-dependent defaults of SPEC §2–3."""
    loc = ("models", i)
    ds = data.dataset
    if not _arch_fits(m.arch, data.image_shape):
        raise ConfigIssue(loc + ("arch",), f"arch {m.arch} does not fit {ds} images of shape "
                                           f"{data.image_shape}")
    update: dict[str, Any] = {}
    if m.arch == "resnet20":
        if m.hidden is not None:
            raise ConfigIssue(loc + ("hidden",), "resnet20 has fixed widths; remove hidden")
    elif m.hidden is None:
        if ds not in HIDDEN_DEFAULT:
            raise ConfigIssue(loc + ("hidden",), f"required for arch {m.arch} on {ds} "
                                                 f"(no default)")
        update["hidden"] = HIDDEN_DEFAULT[ds]
    if m.arch != "conv" and m.channels is not None:
        raise ConfigIssue(loc + ("channels",), "only used by arch conv")
    if m.arch == "conv" and m.channels is None:
        update["channels"] = CONV_CHANNELS_DEFAULT
    if m.method in ("det", "adv") and m.epochs is None:
        default = DET_EPOCHS_DEFAULT.get((m.arch, None), DET_EPOCHS_DEFAULT.get((m.arch, ds)))
        if default is None:
            raise ConfigIssue(loc + ("epochs",), f"required for arch {m.arch} on {ds} "
                                                 f"(no default)")
        update["epochs"] = default
    if m.method == "vi":
        for key, table in (("epochs", VI_EPOCHS_DEFAULT), ("lr", VI_LR_DEFAULT)):
            if getattr(m, key) is None:
                if ds not in table:
                    raise ConfigIssue(loc + (key,), f"required for vi on {ds} (no default)")
                update[key] = table[ds]
    return m.model_copy(update=update) if update else m


def _check_hmc_links(i: int, m: HMCModel, by_name: dict, data: DataSpec) -> None:
    loc = ("models", i)
    n_train = data.n_train or TRAIN_SIZES.get(data.dataset)
    if m.subset is not None and n_train is not None and m.subset > n_train:
        raise ConfigIssue(loc + ("subset",), f"larger than the {n_train} training images")
    if m.init_model is None:
        return
    ref = by_name.get(m.init_model)
    if ref is None:
        raise ConfigIssue(loc + ("init_model",), f"no model named {m.init_model!r}")
    if ref.method != "det":
        raise ConfigIssue(loc + ("init_model",), f"must name a det model (MAP start); "
                                                 f"{m.init_model!r} is {ref.method}")
    if (ref.arch, ref.hidden, ref.channels) != (m.arch, m.hidden, m.channels):
        raise ConfigIssue(loc + ("init_model",), f"{m.init_model!r} has a different "
                                                 f"architecture (arch, hidden, channels)")


def _check_sample_counts(loc: tuple, counts: tuple, bayes: list, single: bool = False) -> None:
    for j, n in enumerate(counts):
        for i, m in bayes:
            if n > m.sample_count:
                where = loc if single else loc + (j,)
                raise ConfigIssue(where, (
                    f"{n} samples requested but model {m.name!r} keeps only {m.sample_count}; "
                    f"lower it or raise models[{i}].n_samples"))


def _check_compare(compare: CompareSpec, models: tuple, by_name: dict) -> None:
    arch_of_baseline: dict[str, str] = {}
    for j, b in enumerate(compare.baseline):
        if b not in by_name:
            raise ConfigIssue(("compare", "baseline", j), (
                f"no model named {b!r}; models are {', '.join(by_name)}"))
        arch = by_name[b].arch
        if arch in arch_of_baseline:
            raise ConfigIssue(("compare", "baseline", j), (
                f"two baselines for arch {arch}: {arch_of_baseline[arch]!r} and {b!r}"))
        arch_of_baseline[arch] = b
    for i, m in enumerate(models):
        if m.name not in compare.baseline and m.arch not in arch_of_baseline:
            raise ConfigIssue(("models", i, "arch"), (
                f"model {m.name!r} (arch {m.arch}) has no baseline of the same arch; "
                f"add one to compare.baseline"))


# --------------------------------------------------------------------------- YAML loading


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that keeps duplicate keys visible and reads ``1e-3`` as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


class _Dups(dict):
    """A YAML mapping that remembers keys given twice (PyYAML silently keeps the last)."""

    duplicates: list


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Dups:
    loader.flatten_mapping(node)
    out = _Dups()
    out.duplicates = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            out.duplicates.append((key, key_node.start_mark.line + 1))
        try:
            out[key] = loader.construct_object(value_node, deep=True)
        except TypeError:  # unhashable key such as a list
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable key", key_node.start_mark) from None
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _find_duplicate(obj: Any, path: str = "") -> tuple[str, int] | None:
    if isinstance(obj, _Dups):
        if obj.duplicates:
            key, line = obj.duplicates[0]
            return f"{path}.{key}" if path else str(key), line
        for k, v in obj.items():
            found = _find_duplicate(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = _find_duplicate(v, f"{path}[{i}]")
            if found:
                return found
    return None


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _parse_yaml(text: str) -> Any:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise BayesLRPError(f"config error at {where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise BayesLRPError(f"config error at (file): invalid YAML: "
                            f"{' '.join(str(exc).split())}") from None
    dup = _find_duplicate(data)
    if dup:
        raise BayesLRPError(f"config error at {dup[0]}: key given twice (again on line {dup[1]})")
    return _plain(data)


# --------------------------------------------------------------------------- errors


_FIELD_NAMES = sorted({name for cls in (
    Config, DataSpec, DetModel, AdvModel, VIModel, HMCModel, FGSMAttack, PGDAttack, TopKAttack,
    RegionAttack, BetaAttack, ExplainSpec, RuleParams, MetricsSpec, CompareSpec)
    for name in cls.model_fields})


def _format_path(loc: tuple, data: Any) -> str:
    """Render a pydantic ``loc`` as ``models[1].epochs``, dropping discriminator tags."""
    parts: list[str] = []
    cur = data
    for pos, el in enumerate(loc):
        last = pos == len(loc) - 1
        if isinstance(cur, dict) and not last and cur.get("method") == el:
            continue  # the discriminator tag pydantic puts into the loc of a union member
        if isinstance(el, int):
            parts.append(f"[{el}]")
            cur = cur[el] if isinstance(cur, list) and -len(cur) <= el < len(cur) else None
        elif isinstance(cur, dict) and el in cur:
            parts.append(f".{el}")
            cur = cur[el]
        elif isinstance(cur, dict) and not last:
            continue  # a union tag ("det", "fgsm"): not a key of the input
        else:
            parts.append(f".{el}")
            cur = None
    return "".join(parts).lstrip(".") or "(top level)"


def _describe(err: dict) -> tuple[tuple, str]:
    loc = tuple(err.get("loc", ()))
    etype = err.get("type", "")
    msg = err.get("msg", "invalid value")
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigIssue):
        return loc + cause.path, str(cause)
    if etype in ("union_tag_invalid", "union_tag_not_found"):
        disc = str((err.get("ctx") or {}).get("discriminator", "method")).strip("'\"")
        if etype == "union_tag_not_found":
            msg = f"missing; must be one of {_tags_hint(loc)}"
        return loc + (disc,), msg
    if etype == "extra_forbidden" and loc and isinstance(loc[-1], str):
        close = difflib.get_close_matches(loc[-1], _FIELD_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return loc, f"unknown key{hint}"
    if etype == "missing":
        return loc, "required key is missing"
    if etype in ("tuple_type", "list_type"):  # YAML users write lists, never tuples
        return loc, "Input should be a list"
    if etype in ("model_type", "model_attributes_type", "dict_type"):
        return loc, "Input should be a mapping of keys to values"
    msg = msg.replace("Tuple should", "List should")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return loc, msg


def _tags_hint(loc: tuple) -> str:
    section = next((el for el in loc if isinstance(el, str)), "")
    tags = METHODS if section == "models" else ATTACKS if section == "attacks" else ()
    return ", ".join(tags) if tags else "the listed methods"


def _error_line(exc: ValidationError, data: Any) -> str:
    errors = exc.errors()
    loc, msg = _describe(errors[0])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    line = f"config error at {_format_path(loc, data)}: {msg}{more}"
    return " ".join(line.split())


# --------------------------------------------------------------------------- public API


def load_config(source: Any) -> Config:
    """Read and validate an experiment config.

    Parameters
    ----------
    source : str, os.PathLike, Mapping or Config
        A path to a YAML file (a one-line ``str`` is a path if it ends in ``.yaml``,
        ``.yml`` or ``.json``, contains no ``:`` or names an existing file), YAML text, an
        already parsed mapping, or a ``Config``.

    Returns
    -------
    Config
        The validated config with every default filled in.

    Raises
    ------
    BayesLRPError
        For any problem, with a one-line message ``config error at <key path>: <what>``
        (``at line L, column C`` for broken YAML).
    """
    if isinstance(source, Config):
        return source
    if isinstance(source, Mapping):
        data: Any = _plain(dict(source))
    else:
        data = _parse_yaml(_read_source(source))
    if data is None:
        raise BayesLRPError("config error at (top level): the config is empty")
    if not isinstance(data, dict):
        raise BayesLRPError(f"config error at (top level): expected a mapping of sections, "
                            f"got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise BayesLRPError(_error_line(exc, data)) from None


def _read_source(source: Any) -> str:
    if isinstance(source, Path) or (
            isinstance(source, str) and "\n" not in source and source.strip()
            and (source.endswith((".yaml", ".yml", ".json")) or ":" not in source
                 or Path(source).is_file())):
        path = Path(source)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise BayesLRPError(f"config file not found: {path}; check the path") from None
        except OSError as exc:
            raise BayesLRPError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BayesLRPError(f"config error at (file): {path} is not UTF-8 text") from None
    if isinstance(source, str):
        return source
    raise BayesLRPError(f"a config must be a path, YAML text or a mapping; got "
                        f"{type(source).__name__}")


def dump_config(config: Config) -> str:
    """YAML text of a validated config; ``load_config(dump_config(c)) == c``."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def canonical_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, tuples as lists, NaN rejected."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BayesLRPError(f"cannot hash a config slice: {exc}") from None


def config_key(obj: Any) -> str:
    """Stable hex SHA-256 of a pydantic model or a JSON-able config slice."""
    return hashlib.sha256(canonical_json(obj).encode("ascii")).hexdigest()
