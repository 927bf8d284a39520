"""Read the artifacts of a finished run directory (``RUN_DIR``) for figures and the report.

A run directory holds ``results.parquet`` (one row per model × attack × rule × layer ×
n_samples × k × image, schema in :data:`RESULT_COLUMNS`), the compare stage's
``differences.parquet`` and ``tests.parquet``, ``heatmaps/*.safetensors``, ``models.json``,
``manifest.json`` and ``config.yaml``. Only ``results.parquet`` is required; every other file
is optional and its absence is reported, never invented. The run's baselines are those of
``differences.parquet`` (:func:`bayeslrp.analysis.baseline_map`; none without it).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayeslrp.errors import BayesLRPError

__all__ = ["HeatmapKey", "HeatmapSet", "OPTIONAL_COLUMNS", "RESULT_COLUMNS", "RunData",
           "load_run", "validate_results"]

#: Column → pandas dtype kind expected in ``results.parquet`` ("O" string, "i" integer,
#: "f" float, "b" bool).
RESULT_COLUMNS: dict[str, str] = {
    "dataset": "O", "model": "O", "method": "O", "arch": "O", "attack": "O",
    "attack_mode": "O", "rule": "O", "layer": "i", "n_samples": "i", "k": "f", "point": "i",
    "label": "i", "pred_clean": "i", "pred_adv": "i", "success": "b",
    "lrp_robustness": "f", "nnz": "i", "softmax_robustness": "f",
}
#: Columns that older run directories lack (same dtype codes); checked when present.
OPTIONAL_COLUMNS: dict[str, str] = {"k_pixels": "i", "source_model": "O", "own_sample": "i",
                                    "explainer": "O"}

_HEATMAP_NAME = re.compile(
    r"^(?P<model>.+?)__(?P<attack>.+?)__(?P<rule>.+?)__layer(?P<layer>-?\d+)__n(?P<n>\d+)"
    r"\.safetensors$")
_HEATMAP_TENSORS = ("R_clean", "R_adv", "x", "x_adv", "points")


@dataclass(frozen=True, order=True)
class HeatmapKey:
    """Identifies one saved heatmap file: model, attack, rule, layer, posterior samples."""

    model: str
    attack: str
    rule: str
    layer: int
    n_samples: int


@dataclass(frozen=True)
class HeatmapSet:
    """Saved heatmaps of a handful of attacked images for one :class:`HeatmapKey`.

    Attributes
    ----------
    key : HeatmapKey
    R_clean, R_adv : numpy.ndarray
        ``[B, H, W]`` relevance of the clean and the attacked image.
    x, x_adv : numpy.ndarray
        ``[B, C, H, W]`` clean and attacked images in [0, 1].
    points : numpy.ndarray
        ``[B]`` int64 test-set indices.
    """

    key: HeatmapKey
    R_clean: np.ndarray
    R_adv: np.ndarray
    x: np.ndarray
    x_adv: np.ndarray
    points: np.ndarray

    def index_of(self, point: int) -> int:
        """Position of test index ``point`` in this set; ``BayesLRPError`` when absent."""
        where = np.flatnonzero(self.points == int(point))
        if where.size == 0:
            raise BayesLRPError(f"point {point} has no saved heatmap for {self.key}; saved points "
                                f"are {self.points.tolist()}")
        return int(where[0])


@dataclass
class RunData:
    """Everything read from a run directory.

    Attributes
    ----------
    path : Path
    results : pandas.DataFrame
        The results table with the dtypes of :data:`RESULT_COLUMNS`.
    models : list of dict
        Entries of ``models.json`` (empty when the file is absent).
    manifest : dict
        ``manifest.json`` (empty when absent).
    config_text : str or None
        ``config.yaml`` verbatim, ``None`` when absent.
    heatmap_files : dict
        :class:`HeatmapKey` → file path, for every correctly named file in ``heatmaps/``.
    tests : pandas.DataFrame or None
        ``tests.parquet``: the compare stage's Mann-Whitney tests (``None`` when absent).
    differences : pandas.DataFrame or None
        ``differences.parquet``: the per-image differences against the baselines.
    baselines : dict of str to str
        ``{model: baseline}`` (:func:`bayeslrp.analysis.baseline_map` of ``differences``;
        empty when the run compares nothing). Also ``results.attrs["baselines"]``.
    k_percents : tuple of float or None
        The config's ``metrics.k`` percentages (every document of ``config.yaml``), ``None``
        when unknown; tells a pixel-count k apart in labels. Also
        ``results.attrs["k_percents"]``.
    """

    path: Path
    results: pd.DataFrame
    models: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    config_text: str | None = None
    heatmap_files: dict[HeatmapKey, Path] = field(default_factory=dict)
    tests: pd.DataFrame | None = None
    differences: pd.DataFrame | None = None
    baselines: dict[str, str] = field(default_factory=dict)
    k_percents: tuple[float, ...] | None = None
    _cache: dict[HeatmapKey, HeatmapSet] = field(default_factory=dict, repr=False)

    def heatmaps(self, key: HeatmapKey) -> HeatmapSet | None:
        """The saved :class:`HeatmapSet` for ``key``, or ``None`` when it was not saved."""
        if key not in self.heatmap_files:
            return None
        if key not in self._cache:
            self._cache[key] = _read_heatmaps(self.heatmap_files[key], key)
        return self._cache[key]

    def heatmap_keys(self, **match: Any) -> list[HeatmapKey]:
        """Saved heatmap keys whose fields equal every ``match`` item, sorted."""
        return sorted(k for k in self.heatmap_files
                      if all(getattr(k, name) == value for name, value in match.items()))


def validate_results(df: pd.DataFrame, source: str = "results table") -> pd.DataFrame:
    """Check the columns and dtypes of a results table and return it with canonical dtypes.

    Raises
    ------
    BayesLRPError
        When a column is missing or cannot hold its documented type.
    """
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise BayesLRPError(f"{source} lacks the columns {', '.join(missing)}; it was not written "
                            f"by this version of bayeslrp — rerun the experiment")
    from bayeslrp.analysis import with_explainer_column

    out = with_explainer_column(df.copy())
    expected = {**RESULT_COLUMNS, **{c: t for c, t in OPTIONAL_COLUMNS.items() if c in out}}
    for column, kind in expected.items():
        values = out[column]
        try:
            if kind == "O":
                out[column] = values.fillna("").astype(str)
            elif kind == "i":
                out[column] = values.astype(np.int64)
            elif kind == "f":
                out[column] = values.astype(np.float64)
            else:
                out[column] = values.astype(bool)
        except (TypeError, ValueError) as exc:
            raise BayesLRPError(f"{source}: column {column!r} has values of the wrong type ({exc})"
                                ) from None
    return out


def _read_heatmaps(path: Path, key: HeatmapKey) -> HeatmapSet:
    # safetensors holds raw tensors only (no code), so reading an unverified file is safe.
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BayesLRPError(f"cannot read heatmap file {path} ({exc}); delete it and rerun the "
                            f"experiment") from None
    missing = [name for name in _HEATMAP_TENSORS if name not in tensors]
    if missing:
        raise BayesLRPError(f"heatmap file {path} lacks the tensors {', '.join(missing)}")
    R, R_adv = tensors["R_clean"].astype(np.float64), tensors["R_adv"].astype(np.float64)
    x, x_adv = tensors["x"].astype(np.float64), tensors["x_adv"].astype(np.float64)
    points = tensors["points"].astype(np.int64).reshape(-1)
    if R.ndim != 3 or R.shape != R_adv.shape or x.ndim != 4 or x.shape != x_adv.shape \
            or not (R.shape[0] == x.shape[0] == points.shape[0]) or R.shape[1:] != x.shape[2:]:
        raise BayesLRPError(f"heatmap file {path} has inconsistent shapes: R_clean {R.shape}, "
                            f"R_adv {R_adv.shape}, x {x.shape}, x_adv {x_adv.shape}, "
                            f"points {points.shape}")
    return HeatmapSet(key, R, R_adv, x, x_adv, points)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BayesLRPError(f"cannot read {path} ({exc}); rerun the experiment to rewrite it"
                            ) from None


def _models_list(raw: Any, path: Path) -> list[dict[str, Any]]:
    """``models.json`` as a list of dicts; accepts a list or a ``name → entry`` mapping."""
    if isinstance(raw, dict) and "models" in raw and isinstance(raw["models"], (list, dict)):
        raw = raw["models"]
    if isinstance(raw, dict):
        entries = [dict(value, name=value.get("name", name)) for name, value in raw.items()
                   if isinstance(value, dict)]
    elif isinstance(raw, list):
        entries = [dict(value) for value in raw if isinstance(value, dict)]
    else:
        raise BayesLRPError(f"{path} must hold a list of models or a mapping name → model")
    return entries


def _read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise BayesLRPError(f"cannot read {path} ({type(exc).__name__}: {exc}); delete it and "
                            f"rerun the experiment") from None


def _k_percents(config_text: str | None) -> tuple[float, ...] | None:
    """The ``metrics.k`` of every document of ``config.yaml``; ``None`` when unknown."""
    import yaml

    if config_text is None:
        return None
    try:
        docs = [d for d in yaml.safe_load_all(config_text) if d is not None]
    except yaml.YAMLError:
        return None
    percents: set[float] = set()
    for doc in docs:
        metrics = doc.get("metrics") if isinstance(doc, dict) else None
        if not isinstance(metrics, dict) or not isinstance(metrics.get("k"), (list, tuple)):
            return None
        percents.update(float(k) for k in metrics["k"])
    return tuple(sorted(percents)) if docs else None


def _heatmap_files(path: Path) -> dict[HeatmapKey, Path]:
    files: dict[HeatmapKey, Path] = {}
    if (path / "heatmaps").is_dir():
        for file in sorted((path / "heatmaps").glob("*.safetensors")):
            match = _HEATMAP_NAME.match(file.name)
            if match:
                key = HeatmapKey(match["model"], match["attack"], match["rule"],
                                 int(match["layer"]), int(match["n"]))
                files[key] = file
    return files


def _optional_table(path: Path) -> pd.DataFrame | None:
    return _read_table(path) if path.is_file() else None


def load_run(run_dir: str | Path) -> RunData:
    """Read a run directory.

    Parameters
    ----------
    run_dir : str or Path
        The directory an experiment run wrote.

    Returns
    -------
    RunData
        ``results.attrs`` carries ``baselines`` (the run's ``{model: baseline}``) and
        ``k_percents`` for the figure functions.

    Raises
    ------
    BayesLRPError
        When the directory does not exist, is empty or has no readable ``results.parquet``.
    """
    from bayeslrp.analysis import baseline_map

    path = Path(run_dir)
    if not path.is_dir():
        raise BayesLRPError(f"run directory {path} does not exist; run an experiment first "
                            f"(bayeslrp run CONFIG) or pass the right path")
    if not any(path.iterdir()):
        raise BayesLRPError(f"run directory {path} is empty; run an experiment into it first")
    results_path = path / "results.parquet"
    if not results_path.is_file():
        raise BayesLRPError(f"{path} has no results.parquet; the run has not finished — rerun "
                            f"it (finished stages are kept)")
    results = validate_results(_read_table(results_path), str(results_path))
    models: list[dict[str, Any]] = []
    if (path / "models.json").is_file():
        models = _models_list(_read_json(path / "models.json"), path / "models.json")
    manifest: dict[str, Any] = {}
    if (path / "manifest.json").is_file():
        raw = _read_json(path / "manifest.json")
        manifest = raw if isinstance(raw, dict) else {"manifest": raw}
    config_text = None
    if (path / "config.yaml").is_file():
        config_text = (path / "config.yaml").read_text(encoding="utf-8", errors="replace")
    differences = _optional_table(path / "differences.parquet")
    baselines = baseline_map(differences)  # the one baseline rule: compare.baseline
    k_percents = _k_percents(config_text)
    results.attrs["baselines"] = dict(baselines)
    results.attrs["k_percents"] = k_percents
    return RunData(path, results, models, manifest, config_text, _heatmap_files(path),
                   _optional_table(path / "tests.parquet"), differences, baselines, k_percents)
