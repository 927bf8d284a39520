"""The experiment configuration: a strict pydantic schema for the YAML file describing a grid.

``load_config`` is the only gate: it reads YAML (a path, YAML text or an already parsed
mapping), validates it — the schema and every semantic check of every plug-in — and turns any
problem into one :class:`~bayeslrp.errors.BayesLRPError` whose message is a single line naming
the offending key, e.g. ``config error at models[1].epochs: Input should be greater than 0``.
Nothing is checked mid-run.

The ``models`` and ``attacks`` entries are the union of the specs registered in
:data:`~bayeslrp.plugins.models.MODEL_METHODS` and :data:`~bayeslrp.plugins.attacks.ATTACK_METHODS`
(discriminated by ``method``); ``explain.rules`` names entries of
:data:`~bayeslrp.explainers.EXPLAINERS`. The schema is assembled from the registries when a
config is loaded, so methods registered later (by user or test code) are accepted.

Validation is strict: unknown keys, wrong types (no string→number coercion), impossible values
and inconsistent combinations are rejected. Defaults that depend on the dataset (hidden size,
epochs, VI learning rate; SPEC §2–3) are filled in during validation, so a validated
:class:`Config` holds every value explicitly and dumping it gives a config that loads back to
the same object. ``compat: original`` is expanded the same way (``docs/compat.md``).
``docs/config.md`` documents every field.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, Field, StringConstraints, ValidationError, create_model,
                      model_validator)

from bayeslrp import catalog
from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment.config_compat import COMPAT_ORIGINAL, expand_compat
from bayeslrp.experiment.config_analysis import AnalysisSpec
from bayeslrp.experiment.config_sections import (CompareSpec, DataSpec, ExplainSpec,
                                                 FiguresSpec, MetricsSpec, RuleParams)
from bayeslrp.experiment.config_text import error_line, field_names, parse_yaml, plain
from bayeslrp.plugins.attacks import ATTACK_METHODS
from bayeslrp.plugins.attacks.gradient import FGSMAttack, PGDAttack
from bayeslrp.plugins.attacks.saliency import BetaAttack, RegionAttack, TopKAttack
from bayeslrp.plugins.models import MODEL_METHODS, AdvModel, DetModel, HMCModel, VIModel
from bayeslrp.plugins.models.vi import VI_INIT_STD_DEFAULT, VI_KEY_LEGACY_VALUES, VI_LR_SCHEDULES
from bayeslrp.plugins.spec import ConfigIssue, Name, Seed, StrictSpec, tuple_of

__all__ = [
    "ARCHS", "DATASETS", "LEARNABLE_LAYERS", "AdvModel", "BetaAttack", "CompareSpec", "Config",
    "DataSpec", "DetModel", "ExplainSpec", "FGSMAttack", "FiguresSpec", "HMCModel", "MetricsSpec", "PGDAttack",
    "RegionAttack", "RuleParams", "TopKAttack", "VIModel", "COMPAT_ORIGINAL",
    "VI_INIT_STD_DEFAULT", "VI_KEY_LEGACY_VALUES", "VI_LR_SCHEDULES", "canonical_json",
    "config_key", "config_schema", "dump_config", "expand_compat", "load_config", "read_source",
    "validate_spec",
]

ARCHS = tuple(catalog.ARCHS)
DATASETS = tuple(catalog.DATASETS)
LEARNABLE_LAYERS: dict[str, tuple[int, ...]] = {a: f.learnable_layers
                                                 for a, f in catalog.ARCHS.items()}
HIDDEN_DEFAULT = {"mnist": 512, "fashion_mnist": 1024}
CONV_CHANNELS_DEFAULT = 32


def _union(registry) -> Any:
    specs = tuple(cls.Spec for cls in registry)
    if len(specs) == 1:
        return Annotated[specs[0], Field()]
    return Annotated[Union[specs], Field(discriminator="method")]


class Config(StrictSpec):
    """A whole experiment grid. See ``docs/config.md``.

    ``models`` and ``attacks`` hold the registered specs; :func:`load_config` validates with
    :func:`config_schema`, this class extended by the registries' current unions.
    """

    name: Name = "experiment"
    seed: Seed = 0
    device: Annotated[str, StringConstraints(pattern=r"^(cpu|auto|mps|cuda(:[0-9]+)?)$")] = "cpu"
    data: DataSpec
    models: tuple_of(_union(MODEL_METHODS))
    attacks: tuple_of(_union(ATTACK_METHODS))
    explain: ExplainSpec = ExplainSpec()
    metrics: MetricsSpec = MetricsSpec()
    compare: CompareSpec | None = None
    analysis: AnalysisSpec | None = None
    figures: FiguresSpec = FiguresSpec()
    compat: Literal["spec", "original"] = "spec"

    @model_validator(mode="before")
    @classmethod
    def _expand_compat(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("compat") == "original":
            return expand_compat(data)
        return data

    @model_validator(mode="after")
    def _check(self) -> "Config":
        from bayeslrp.experiment.config_checks import check_config

        return check_config(self)

    # convenience used by the grid and the stages ------------------------------------------

    def model(self, name: str) -> Any:
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


_SCHEMAS: dict[tuple[int, int], type[Config]] = {}


def config_schema() -> type[Config]:
    """:class:`Config` with the unions of the currently registered model and attack specs."""
    version = (MODEL_METHODS.version, ATTACK_METHODS.version)
    if version not in _SCHEMAS:
        _SCHEMAS.clear()
        _SCHEMAS[version] = create_model(
            "Config", __base__=Config, __module__=__name__,
            models=(tuple_of(_union(MODEL_METHODS)), ...),
            attacks=(tuple_of(_union(ATTACK_METHODS)), ...))
    return _SCHEMAS[version]


def known_keys() -> list[str]:
    classes = [Config, DataSpec, ExplainSpec, RuleParams, MetricsSpec, CompareSpec, FiguresSpec]
    classes += [cls.Spec for cls in MODEL_METHODS] + [cls.Spec for cls in ATTACK_METHODS]
    return field_names(classes)


def _tags() -> dict[str, tuple[str, ...]]:
    return {"models": MODEL_METHODS.names(), "attacks": ATTACK_METHODS.names()}


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
        data: Any = plain(dict(source))
    else:
        data = parse_yaml(read_source(source))
    if data is None:
        raise BayesLRPError("config error at (top level): the config is empty")
    if not isinstance(data, dict):
        raise BayesLRPError(f"config error at (top level): expected a mapping of sections, "
                            f"got {type(data).__name__}")
    try:
        return config_schema().model_validate(data)
    except ValidationError as exc:
        raise BayesLRPError(error_line(exc, data, known_keys(), _tags())) from None


def validate_spec(cls: type[BaseModel], data: Mapping[str, Any], where: str) -> Any:
    """Validate one plug-in spec (e.g. an attack's options from the library or the CLI).

    Raises
    ------
    BayesLRPError
        ``<where> error at <key>: <what>`` in one line.
    """
    try:
        return cls.model_validate(plain(dict(data)))
    except ValidationError as exc:
        line = error_line(exc, dict(data), field_names([cls]), {})
        raise BayesLRPError(line.replace("config error", f"{where} error", 1)) from None


def read_source(source: Any) -> str:
    """Text of a config given as a path or as YAML text."""
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


_read_source = read_source  # the name earlier releases used


def dump_config(config: Config) -> str:
    """YAML text of a validated config; ``load_config(dump_config(c)) == c``."""
    import yaml

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


def selects_nothing(k: float, n_pixels: int, mode: str) -> bool:
    """Whether ``k`` % of ``n_pixels`` selects no pixel (per sign in ``signed`` mode)."""
    frac = Fraction(str(k))
    return math.floor(frac * n_pixels / (100 if mode == "abs" else 200)) == 0
