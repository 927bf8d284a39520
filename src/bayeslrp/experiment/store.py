"""Content-addressed artifact store and run manifest.

Layout of a run directory::

    <run_dir>/
      artifacts/<stage>/<key>/      one directory per artifact, all-or-nothing
          meta.json                 key, stage, sha256 + size of every file, user metadata
          <files...>
      manifest.json                 machine, package versions, seeds, per-stage timings

An artifact's key is :func:`artifact_key` of its stage name, config slice and its inputs'
keys, so an artifact that exists and verifies is never recomputed. Artifacts are written to a
temporary directory and renamed into place, so a killed run leaves either a complete
artifact or none. A corrupt artifact (missing file, size or SHA-256 mismatch, unreadable
``meta.json``) counts as absent and is removed, so its stage runs again. Files are read
through :meth:`Store.read_bytes`, which checks the SHA-256 before anything is parsed.

The manifest is written by the driving process only (executors on other machines report
their timings back to it); it is rewritten atomically after every recorded stage and merged
across resumed runs.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bayeslrp.errors import BayesLRPError, warn
from bayeslrp.experiment.config import canonical_json, config_key
from bayeslrp.experiment.manifest import (MANIFEST_NAME, MANIFEST_REUSE_SAVE_INTERVAL,
                                          ManifestMixin, machine_info, now, package_versions)
from bayeslrp.fileio import dir_mode, fs_error, make_dirs, sha256_bytes, sha256_file

__all__ = [
    "ARTIFACT_FORMAT", "MANIFEST_NAME", "MANIFEST_REUSE_SAVE_INTERVAL", "Store", "artifact_key", "machine_info", "package_versions",
    "table_to_bytes", "tensors_to_bytes",
]

ARTIFACT_FORMAT = 1
META_NAME = "meta.json"
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_STAGE_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

Writer = Callable[[Path], None]


def artifact_key(stage_name: str, config_slice: Any,
                 input_keys: Mapping[str, str] | Sequence[str] = (), version: int = 1) -> str:
    """Key of an artifact: hex SHA-256 of its stage, config slice and inputs.

    Parameters
    ----------
    stage_name : str
        The stage that produces the artifact.
    config_slice : pydantic model or JSON-able value
        Every parameter that affects the output, and nothing else.
    input_keys : mapping role → key, or sequence of keys
        Keys of the input artifacts. A mapping is order-independent; a sequence is
        positional.
    version : int
        The stage's code version; bump it to invalidate artifacts of a changed stage.

    Returns
    -------
    str
        64 lowercase hex digits.
    """
    _check_stage(stage_name)
    inputs: Any = dict(input_keys) if isinstance(input_keys, Mapping) else list(input_keys)
    for key in (inputs.values() if isinstance(inputs, dict) else inputs):
        _check_key(key)
    doc = {"format": ARTIFACT_FORMAT, "stage": stage_name, "version": version,
           "params": json.loads(canonical_json(config_slice)), "inputs": inputs}
    return config_key(doc)


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise BayesLRPError(f"not an artifact key (64 hex digits): {key!r}")
    return key


def _check_stage(stage: Any) -> str:
    if not isinstance(stage, str) or not _STAGE_RE.match(stage):
        raise BayesLRPError(f"not a stage name (lowercase letters, digits, _): {stage!r}")
    return stage


def _check_name(name: Any) -> str:
    parts = Path(name).parts if isinstance(name, str) else ()
    if (not parts or Path(name).is_absolute() or any(p in ("..", ".") for p in parts)
            or name == META_NAME or "\\" in name):
        raise BayesLRPError(f"not a valid artifact file name: {name!r}")
    return name


def tensors_to_bytes(tensors: Mapping[str, Any]) -> bytes:
    """Serialise a ``name → Tensor`` mapping with safetensors (copies; CPU, contiguous)."""
    from safetensors.torch import save

    return save({str(k): v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()})


def table_to_bytes(table: Any) -> bytes:
    """Serialise a pandas DataFrame to Parquet bytes (pyarrow)."""
    buf = io.BytesIO()
    table.to_parquet(buf, engine="pyarrow")
    return buf.getvalue()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Store(ManifestMixin):
    """Artifacts of one run directory, addressed by key.

    Parameters
    ----------
    run_dir : path
        Created if missing.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.root = Path(run_dir)
        self.artifacts = self.root / "artifacts"
        make_dirs(self.artifacts)
        self._verified: set[str] = set()
        self._manifest: dict[str, Any] | None = None
        self._run: int | None = None
        self._last_save = float("-inf")

    # ------------------------------------------------------------------ lookup

    def path_for(self, stage: str, key: str) -> Path:
        """Where the artifact ``key`` of ``stage`` lives (whether or not it exists)."""
        return self.artifacts / _check_stage(stage) / _check_key(key)

    def _locate(self, key: str) -> Path | None:
        _check_key(key)
        for stage_dir in sorted(self.artifacts.iterdir()):
            candidate = stage_dir / key
            if candidate.is_dir():
                return candidate
        return None

    def _verify(self, path: Path, key: str) -> bool:
        return self._problem(path, key) is None

    def _problem(self, path: Path, key: str) -> str | None:
        """Why the artifact at ``path`` does not verify, or None."""
        try:
            record = json.loads((path / META_NAME).read_text("utf-8"))
            if record.get("key") != key or not isinstance(record.get("files"), dict):
                return f"{META_NAME} does not describe it"
            for name, info in record["files"].items():
                _check_name(name)
                f = path / name
                if not f.is_file():
                    return f"{name} is missing"
                if f.stat().st_size != info["bytes"] or sha256_file(f) != info["sha256"]:
                    return f"{name} does not match its checksum"
        except (OSError, ValueError, KeyError, TypeError, BayesLRPError):
            return f"{META_NAME} is unreadable"
        return None

    def _discard(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def has(self, key: str) -> bool:
        """True if the artifact exists and verifies; a corrupt one is removed.

        Each artifact is hashed once per ``Store`` object; :meth:`read_bytes` re-checks the
        file it reads.
        """
        path = self._locate(key)
        if path is None:
            self._verified.discard(key)
            return False
        if key in self._verified:
            return True
        problem = self._problem(path, key)
        if problem is None:
            self._verified.add(key)
            return True
        warn(f"artifact {path.parent.name}/{key[:12]}… is corrupt ({problem}); it is removed "
             f"and computed again")
        self._discard(path)
        return False

    def get_path(self, key: str) -> Path:
        """Directory of a present, verified artifact."""
        if not self.has(key):
            raise BayesLRPError(f"artifact {key[:12]}… is missing or corrupt in {self.root}; "
                                f"run the pipeline again to recompute it")
        path = self._locate(key)
        assert path is not None
        return path

    def _record(self, key: str) -> dict[str, Any]:
        return json.loads((self.get_path(key) / META_NAME).read_text("utf-8"))

    def load_meta(self, key: str) -> dict[str, Any]:
        """The user metadata stored with the artifact."""
        return self._record(key)["meta"]

    def load_record(self, key: str) -> dict[str, Any]:
        """The whole ``meta.json``: key, stage, created, files (sha256, bytes), meta."""
        return self._record(key)

    def read_bytes(self, key: str, name: str) -> bytes:
        """Content of one file of an artifact, SHA-256 checked before it is returned."""
        record = self._record(key)
        info = record["files"].get(_check_name(name))
        if info is None:
            raise BayesLRPError(f"artifact {key[:12]}… has no file {name!r}; it has "
                                f"{', '.join(sorted(record['files']))}")
        path = self.get_path(key)
        try:
            data: bytes | None = (path / name).read_bytes()
        except OSError:
            data = None
        if data is None or sha256_bytes(data) != info["sha256"]:
            self._verified.discard(key)
            self._discard(path)
            warn(f"artifact {path.parent.name}/{key[:12]}… file {name} changed on disk; it is "
                 f"removed")
            raise BayesLRPError(f"artifact {key[:12]}… file {name!r} changed on disk and was "
                                f"removed; run the pipeline again to recompute it")
        return data

    def read_json(self, key: str, name: str) -> Any:
        """A JSON file of an artifact, verified then parsed."""
        return json.loads(self.read_bytes(key, name).decode("utf-8"))

    # ------------------------------------------------------------------ writing

    def put(self, key: str, files: Mapping[str, bytes] | Writer, meta: Mapping[str, Any] | None
            = None, *, stage: str) -> Path:
        """Write an artifact atomically.

        Parameters
        ----------
        key : str
            The artifact's key (from :func:`artifact_key`).
        files : mapping name → bytes, or callable
            The files, or a function ``writer(directory)`` that writes them into the given
            (temporary) directory; sub-directories are allowed. ``meta.json`` is reserved.
        meta : mapping, optional
            JSON-able metadata stored in ``meta.json`` under ``"meta"``.
        stage : str
            The stage name: the artifact goes to ``artifacts/<stage>/<key>/``.

        Returns
        -------
        Path
            The artifact directory. If a valid artifact with this key already exists (e.g.
            written concurrently by another worker) it is kept and the new files dropped.
        """
        final = self.path_for(stage, key)
        if self.has(key):
            return self.get_path(key)
        meta_text = canonical_json(dict(meta or {}))  # fail early on non-JSON metadata
        make_dirs(final.parent)
        try:
            tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{key[:16]}-"))
            os.chmod(tmp, dir_mode())
        except OSError as exc:
            raise fs_error(exc, final.parent) from None
        try:
            if callable(files):
                files(tmp)
            else:
                for name, data in files.items():
                    target = tmp / _check_name(name)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "wb") as handle:
                        handle.write(data)
                        handle.flush()
                        os.fsync(handle.fileno())
            listing = {}
            for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
                name = f.relative_to(tmp).as_posix()
                if name == META_NAME:
                    raise BayesLRPError(f"{META_NAME} is reserved in an artifact")
                listing[name] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
            if not listing:
                raise BayesLRPError(f"artifact {key[:12]}… of stage {stage} has no files")
            record = {"format": ARTIFACT_FORMAT, "key": key, "stage": stage,
                      "created": now(), "files": listing, "meta": json.loads(meta_text)}
            with open(tmp / META_NAME, "w", encoding="utf-8") as handle:
                json.dump(record, handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.rename(tmp, final)
            except OSError:
                if self._verify(final, key):   # another writer finished first
                    self._discard(tmp)
                    self._verified.add(key)
                    return final
                self._discard(final)
                os.rename(tmp, final)
        except BaseException as exc:
            self._discard(tmp)
            if isinstance(exc, OSError):
                raise fs_error(exc, final) from None
            raise
        _fsync_dir(final.parent)
        self._verified.add(key)
        return final

    def save_tensors(self, key: str, tensors: Mapping[str, Any], meta: Mapping[str, Any] | None
                     = None, *, stage: str, name: str = "tensors.safetensors") -> Path:
        """Store a ``name → Tensor`` mapping as a one-file safetensors artifact."""
        return self.put(key, {name: tensors_to_bytes(tensors)}, meta, stage=stage)

    def load_tensors(self, key: str, name: str = "tensors.safetensors") -> dict[str, Any]:
        """Load verified tensors (CPU) from an artifact file."""
        from safetensors.torch import load

        return load(self.read_bytes(key, name))

    def save_table(self, key: str, table: Any, meta: Mapping[str, Any] | None = None, *,
                   stage: str, name: str = "table.parquet") -> Path:
        """Store a pandas DataFrame as a one-file Parquet artifact."""
        return self.put(key, {name: table_to_bytes(table)}, meta, stage=stage)

    def load_table(self, key: str, name: str = "table.parquet") -> Any:
        """Load a verified Parquet file of an artifact as a pandas DataFrame."""
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.read_bytes(key, name)), engine="pyarrow")

    def clean_tmp(self, older_than_s: float = 3600.0) -> int:
        """Remove temporary files and directories left by killed writers; returns how many.

        Only those older than ``older_than_s`` are removed, so writers that are still running
        are not disturbed; a run holding the run-directory lock passes 0.
        """
        removed = 0
        cutoff = time.time() - older_than_s
        leftovers = [*self.artifacts.glob("*/.tmp-*"), *self.root.glob(".*.tmp")]
        for tmp in leftovers:
            try:
                if tmp.stat().st_mtime <= cutoff:
                    if tmp.is_dir():
                        self._discard(tmp)
                    else:
                        tmp.unlink()
                    removed += 1
            except OSError:
                continue
        return removed
