"""The explain stage's published files: heatmaps of the first attacked points for figures.

``RUN_DIR/heatmaps/<model>__<attack>__<rule>__layer<L>__n<n>.safetensors`` hold ``R_clean``,
``R_adv``, ``x``, ``x_adv`` and ``points`` of the first :data:`HEATMAP_POINTS` points.
"""
from __future__ import annotations

import re
from pathlib import Path

from bayeslrp.experiment.stages.data import DATA_FILE, IMAGES_FILE
from bayeslrp.experiment.store import tensors_to_bytes
from bayeslrp.fileio import atomic_write_bytes

__all__ = ["HEATMAP_POINTS", "write_heatmap_files"]

#: Attacked points (the first ones, in test-index order) whose heatmaps are saved for figures,
#: unless the config's ``figures.heatmap_points`` says otherwise.
HEATMAP_POINTS = 8
_HEATMAP_FILE = re.compile(r"^.+__.+__.+__layer-?\d+__n\d+\.safetensors$")


def _part_files(grid, store, folder: Path, heatmaps_file: str,
                n_points: int = HEATMAP_POINTS) -> list[Path]:
    tasks = [t for t in grid.tasks if t.stage == "explain"]
    clean = {(t.coords["model"], t.coords["rule"], t.coords["layer"]): t
             for t in tasks if t.coords["source"] == "clean"}
    written: list[Path] = []
    data = None
    for t in tasks:
        model, source = t.coords["model"], t.coords["source"]
        if source == "clean":
            continue
        rule, layer = t.coords["rule"], int(t.coords["layer"])
        clean_task = clean[model, rule, t.coords["layer"]]
        if data is None:
            data = store.load_tensors(clean_task.deps["images"], DATA_FILE)
        b = min(n_points, int(data["points"].numel()))
        R_clean = store.load_tensors(clean_task.key, heatmaps_file)
        R_adv = store.load_tensors(t.key, heatmaps_file)
        x_adv = store.load_tensors(t.deps["images"], IMAGES_FILE)["x"]
        for i, n in enumerate(R_adv["n_samples"].tolist()):
            tensors = {"R_clean": R_clean["mean"][i, :b], "R_adv": R_adv["mean"][i, :b],
                       "x": data["x"][:b], "x_adv": x_adv[:b], "points": data["points"][:b]}
            path = folder / f"{model}__{source}__{rule}__layer{layer}__n{n}.safetensors"
            atomic_write_bytes(path, tensors_to_bytes(tensors))
            written.append(path)
    return written


def _points(part) -> int:
    figures = getattr(getattr(part, "config", None), "figures", None)
    return int(figures.heatmap_points) if figures is not None else HEATMAP_POINTS


def write_heatmap_files(parts, store, run_dir: Path, heatmaps_file: str) -> Path:
    """Write the heatmap files of every part; remove those of an earlier config."""
    folder = run_dir / "heatmaps"
    folder.mkdir(exist_ok=True)
    keep = {f.name for part in parts
            for f in _part_files(part.grid, store, folder, heatmaps_file, _points(part))}
    for old in folder.iterdir():
        if old.name not in keep and _HEATMAP_FILE.match(old.name):
            old.unlink()
    return folder
