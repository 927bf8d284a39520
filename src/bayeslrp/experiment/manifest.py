"""The run manifest of a run directory: versions, machine, seeds, per-task timings.

The manifest is written by the driving process only (executors on other machines report
their timings back to it); it is rewritten atomically after every recorded stage and merged
across resumed runs. Every run entry records the ``pid`` and ``host`` of its process; an
entry still ``"running"`` whose process is gone is marked ``"interrupted"`` by the next run
that starts (:meth:`ManifestMixin.begin_run`).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import time
from collections.abc import Mapping
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

from bayeslrp.errors import FileSystemError
from bayeslrp.experiment.config import canonical_json
from bayeslrp.fileio import atomic_write_json

__all__ = ["MANIFEST_NAME", "MANIFEST_REUSE_SAVE_INTERVAL", "ManifestMixin", "machine_info",
           "package_versions", "pid_alive"]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
#: Records of *reused* tasks are saved at most this often (seconds). A rerun of a big grid
#: reuses thousands of tasks in a second; rewriting the whole manifest for each was quadratic.
#: Computed tasks and the end of a run are always saved at once.
MANIFEST_REUSE_SAVE_INTERVAL = 1.0
_PACKAGES = ("torch", "numpy", "scipy", "pandas", "pyarrow", "pydantic", "safetensors",
             "pyyaml", "bayeslrp")


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the results (``"not installed"`` if absent)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine_info() -> dict[str, Any]:
    """Platform, CPU count, torch version and threads, accelerator if any."""
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "processor": platform.processor(), "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception as exc:  # torch broken or absent: record it, never fail a run for it
        info["torch"] = f"unavailable ({type(exc).__name__})"
    return info


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id runs on this machine."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _abandoned(run: Mapping[str, Any]) -> bool:
    """A ``running`` entry whose process is gone (or that predates pid records)."""
    if run.get("status") != "running":
        return False
    if "pid" not in run:
        return True
    if run.get("host") != socket.gethostname():
        return False  # cannot tell from here; another machine may still be working
    return run["pid"] == os.getpid() or not pid_alive(run["pid"])


class ManifestMixin:
    """The manifest part of :class:`~bayeslrp.experiment.store.Store` (needs ``self.root``)."""

    root: Path
    _manifest: dict[str, Any] | None
    _run: int | None
    _last_save: float

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    def load_manifest(self) -> dict[str, Any]:
        """The manifest on disk (an empty one if there is none or it is unreadable)."""
        try:
            data = json.loads(self.manifest_path.read_text("utf-8"))
            if isinstance(data, dict) and isinstance(data.get("runs"), list):
                data.setdefault("artifacts", {})
                return data
        except (OSError, ValueError):
            pass
        return {"format": MANIFEST_FORMAT, "runs": [], "artifacts": {}}

    def _write_manifest(self) -> None:
        assert self._manifest is not None
        atomic_write_json(self.manifest_path, self._manifest)
        self._last_save = time.monotonic()

    def _write_manifest_in_place(self) -> None:
        """Last resort when the directory went read-only: rewrite the file itself."""
        text = json.dumps(self._manifest, indent=2, sort_keys=True) + "\n"
        with open(self.manifest_path, "r+", encoding="utf-8") as handle:
            handle.write(text)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())

    def begin_run(self, *, config_key: str | None = None, seeds: Mapping[str, Any] | None = None,
                  extra: Mapping[str, Any] | None = None) -> int:
        """Start a new run entry in the manifest (kept: every earlier run); returns its index.

        Earlier entries left ``"running"`` by a process that is gone become
        ``"interrupted"``.
        """
        manifest = self.load_manifest()
        if self.manifest_path.exists() and not manifest["runs"]:
            # unreadable manifest: keep it for inspection rather than overwrite silently
            aside = self.manifest_path.with_name(f"{MANIFEST_NAME}.unreadable-{int(time.time())}")
            os.replace(self.manifest_path, aside)
        for earlier in manifest["runs"]:
            if _abandoned(earlier):
                earlier["status"] = "interrupted"
        run = {"run": len(manifest["runs"]), "started": now(), "finished": None,
               "status": "running", "pid": os.getpid(), "host": socket.gethostname(),
               "config_key": config_key, "seeds": dict(seeds or {}),
               "machine": machine_info(), "packages": package_versions(),
               "extra": json.loads(canonical_json(dict(extra or {}))), "stages": []}
        manifest["runs"].append(run)
        self._manifest = manifest
        self._run = run["run"]
        self._write_manifest()
        return self._run

    def record_stage(self, label: str, stage: str, key: str, *, computed: bool, seconds: float,
                     **extra: Any) -> None:
        """Record that a task was computed (with its time) or reused, and save the manifest.

        A computed task is saved at once; reused ones at most every
        ``MANIFEST_REUSE_SAVE_INTERVAL`` seconds and at :meth:`end_run` (a killed run may lose
        the last second of *reuse* records, never an artifact or a computed record).
        """
        if self._manifest is None or self._run is None:
            self.begin_run()
        assert self._manifest is not None and self._run is not None
        entry = {"label": label, "stage": stage, "key": key, "computed": bool(computed),
                 "seconds": round(float(seconds), 6), "at": now(), **extra}
        self._manifest["runs"][self._run]["stages"].append(json.loads(canonical_json(entry)))
        summary = self._manifest["artifacts"].setdefault(key, {"stage": stage, "labels": []})
        if label not in summary["labels"]:
            summary["labels"].append(label)
        if computed:
            summary["compute_seconds"] = entry["seconds"]
            summary["computed_in_run"] = self._run
        if computed or time.monotonic() - self._last_save >= MANIFEST_REUSE_SAVE_INTERVAL:
            self._write_manifest()

    def end_run(self, status: str = "finished") -> bool:
        """Close the current run entry with a status (``finished``, ``failed``, …).

        Returns whether the manifest could be saved. When the run directory is no longer
        writable the file is rewritten in place; if that fails too the entry stays
        ``running`` on disk and the next run marks it ``interrupted``.
        """
        if self._manifest is None or self._run is None:
            return True
        run = self._manifest["runs"][self._run]
        run["finished"], run["status"] = now(), status
        try:
            self._write_manifest()
        except FileSystemError:
            try:
                self._write_manifest_in_place()
            except OSError:
                return False
        return True
