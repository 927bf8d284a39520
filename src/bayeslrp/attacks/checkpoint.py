"""Resumable gradient attacks: every finished image chunk saved, a killed attack resumes.

A PGD-40 of a 100-sample posterior on 500 images runs for hours on a CPU; without this a kill
loses all of it. :class:`ChunkCheckpoint` keeps, in a scratch directory, one safetensors file
per finished (restart, image chunk) and an ``index.json`` with each file's sha256, written
after the file (the index is the commit point). The attack draws its random starts for the
whole batch before the chunks, so a resumed attack computes exactly the points of an
uninterrupted one (tested bit for bit). Nothing is unpickled; a file whose sha256 does not
match is recomputed with a warning.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_write_bytes, atomic_write_json, sha256_bytes

__all__ = ["ChunkCheckpoint"]

log = logging.getLogger("bayeslrp.attacks")

INDEX = "index.json"


class ChunkCheckpoint:
    """Finished image chunks of one attack, in ``directory``.

    Parameters
    ----------
    directory : path
        A scratch directory of this attack alone (the runner gives each task its own).

    Notes
    -----
    :meth:`begin` binds the checkpoint to one attack layout (image count, chunk slices,
    restarts, tensor shape); chunks saved under another layout (another machine's chunk
    sizes, another attack) are discarded, never mixed in.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._layout: dict[str, Any] | None = None
        self._chunks: dict[str, dict[str, str]] = {}

    def begin(self, layout: dict[str, Any]) -> None:
        """Start or resume the attack described by ``layout`` (JSON-able)."""
        layout = json.loads(json.dumps(layout))
        self._layout, self._chunks = layout, {}
        index = self._read_index()
        if index is None:
            return
        if index.get("layout") != layout:
            log.info("attack checkpoint in %s has another layout; starting over", self.directory)
            shutil.rmtree(self.directory, ignore_errors=True)
            return
        self._chunks = dict(index.get("chunks", {}))
        if self._chunks:
            log.info("attack resumes: %d finished chunk(s) in %s", len(self._chunks),
                     self.directory)

    def get(self, restart: int, chunk: int) -> torch.Tensor | None:
        """The saved result of ``(restart, chunk)``, or ``None`` (not saved, or corrupt)."""
        from safetensors import SafetensorError
        from safetensors.torch import load as st_load

        record = self._chunks.get(_name(restart, chunk))
        if record is None:
            return None
        path = self.directory / record["file"]
        try:
            data = path.read_bytes()
        except OSError:
            data = None
        if data is None or sha256_bytes(data) != record["sha256"]:
            log.warning("attack checkpoint %s is missing or corrupt (sha256 mismatch); "
                        "recomputing that chunk", path)
            return None
        try:
            return st_load(data)["x"]
        except (SafetensorError, KeyError):
            log.warning("attack checkpoint %s is unreadable; recomputing that chunk", path)
            return None

    def put(self, restart: int, chunk: int, result: torch.Tensor) -> None:
        """Save the finished ``(restart, chunk)`` (file first, then the index)."""
        from safetensors.torch import save as st_save

        name = _name(restart, chunk)
        data = st_save({"x": result.detach().to("cpu").contiguous()})
        atomic_write_bytes(self.directory / f"{name}.safetensors", data)
        self._chunks[name] = {"file": f"{name}.safetensors", "sha256": sha256_bytes(data)}
        atomic_write_json(self.directory / INDEX, {"layout": self._layout,
                                                   "chunks": self._chunks})

    def _read_index(self) -> dict | None:
        path = self.directory / INDEX
        if not path.is_file():
            return None
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("attack checkpoint index %s is unreadable; starting over", path)
            shutil.rmtree(self.directory, ignore_errors=True)
            return None
        return index if isinstance(index, dict) else None


def _name(restart: int, chunk: int) -> str:
    return f"restart{int(restart):03d}_chunk{int(chunk):05d}"
