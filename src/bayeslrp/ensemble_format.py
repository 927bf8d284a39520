"""The saved-Ensemble directory: ``ensemble.json`` (schema-validated) + safetensors files.

Format 2 (written now)::

    {"format_version": 2,
     "architecture": {"arch": NAME, "factory": "pkg.mod:fn", "kwargs": {...}} or null,
     "module_class": "pkg.mod.Net",          # for messages only
     "n_samples": S,
     "params": {name: [S, ...shape]},        # every state_dict entry
     "files": {"params.safetensors": SHA256, "extras.safetensors": SHA256},
     "meta": {...},
     "digest": SHA256}

``digest`` is the sha256 of the canonical JSON of every other key; it covers the tensor files
through their sha256. An edited ``ensemble.json`` (a sample count, a width, the dataset, the
factory) fails the digest; an edited tensor file fails its sha256. Format 1 (``spec``,
``sha256``; no digest) is still read. Nothing is ever unpickled.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationError,
                      model_validator)

from .errors import BayesLRPError, FileSystemError
from .factories import FACTORY_PATTERN

__all__ = ["FORMAT_VERSION", "READ_VERSIONS", "ArchitectureRecord", "ModelFileError",
           "RecordV1", "RecordV2", "canonical_digest", "read_record"]

FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
PARAMS_FILE = "params.safetensors"
EXTRAS_FILE = "extras.safetensors"
META_FILE = "ensemble.json"

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
FileName = Literal["params.safetensors", "extras.safetensors"]


class ModelFileError(BayesLRPError):
    """A saved model directory that is incomplete, corrupt, edited or of an unknown format."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ArchitectureRecord(_Strict):
    """How the architecture is rebuilt: a built-in/registered name and/or a factory path."""

    arch: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    factory: Annotated[str, StringConstraints(pattern=FACTORY_PATTERN.pattern)] | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _named(self) -> "ArchitectureRecord":
        if self.arch is None and self.factory is None:
            raise ValueError("an architecture needs an arch name or a factory")
        return self


class RecordV1(BaseModel):
    """Format 1 (written before format 2): ``spec`` and per-file ``sha256``."""

    model_config = ConfigDict(extra="ignore")
    format_version: Literal[1]
    spec: ArchitectureRecord
    n_samples: Annotated[int, Field(gt=0)] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    sha256: dict[FileName, Sha256]


class RecordV2(_Strict):
    """Format 2: see the module docstring."""

    format_version: Literal[2]
    architecture: ArchitectureRecord | None
    module_class: str
    n_samples: Annotated[int, Field(gt=0)]
    params: dict[str, list[Annotated[int, Field(ge=0)]]]
    files: dict[FileName, Sha256]
    meta: dict[str, Any]
    digest: Sha256

    @model_validator(mode="after")
    def _consistent(self) -> "RecordV2":
        if PARAMS_FILE not in self.files:
            raise ValueError(f"files lacks {PARAMS_FILE}")
        if not self.params:
            raise ValueError("params is empty")
        for name, shape in self.params.items():
            if not shape or shape[0] != self.n_samples:
                raise ValueError(f"params[{name!r}] has shape {shape}, not {self.n_samples} "
                                 f"samples first")
        return self


def canonical_digest(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of ``record`` without ``digest``."""
    body = {k: v for k, v in record.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _issue(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "top level"
    return f"{where}: {err['msg']}"


def read_record(path: Path) -> RecordV1 | RecordV2:
    """The validated ``ensemble.json`` of the model directory ``path``.

    Raises
    ------
    ModelFileError
        Missing, not JSON, an unknown ``format_version``, a schema violation, or (format 2)
        a digest that does not match: one line naming the file and what to do.
    """
    meta_path = Path(path) / META_FILE
    if not meta_path.is_file():
        raise ModelFileError(f"{path} is not a saved model: {META_FILE} is missing")
    try:
        text = meta_path.read_text(encoding="utf-8")
    except PermissionError:
        raise FileSystemError(meta_path, "is not readable",
                              "ask its owner for read permission or copy the model") from None
    try:
        raw = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError):
        raise ModelFileError(f"{meta_path} is corrupt (not a bayeslrp model description)") from None
    if not isinstance(raw, dict):
        raise ModelFileError(f"{meta_path} is corrupt (not a bayeslrp model description)")
    version = raw.get("format_version")
    if version not in READ_VERSIONS or isinstance(version, bool):
        raise ModelFileError(f"{meta_path} has format_version {version!r}; this bayeslrp reads "
                             f"{', '.join(map(str, READ_VERSIONS))} (save it again, or update "
                             f"bayeslrp)")
    schema = RecordV1 if version == 1 else RecordV2
    try:
        record = schema.model_validate(raw)
    except ValidationError as exc:
        raise ModelFileError(f"{meta_path} is corrupt or edited ({_issue(exc)})") from None
    if version == 2 and canonical_digest(raw) != record.digest:
        raise ModelFileError(f"{meta_path} was edited or is corrupt: its digest does not match "
                             f"its content; save the model again")
    return record


def write_record(**fields: Any) -> dict[str, Any]:
    """A format-2 record of ``fields`` (every key but ``digest``) with its digest, validated."""
    # through JSON first: the digest is of what a reader will see (string keys, lists)
    record = json.loads(json.dumps({"format_version": FORMAT_VERSION, **fields}))
    record["digest"] = canonical_digest(record)
    RecordV2.model_validate(record)
    return record
