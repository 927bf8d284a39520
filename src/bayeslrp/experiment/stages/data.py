"""``data``: the attacked test points, a balanced seeded subset of the test split."""
from __future__ import annotations

from bayeslrp.experiment.stages.base import (Stage, StageOutput, dataset_classes, dataset_name,
                                             load_split, stage_seed)
from bayeslrp.experiment.store import tensors_to_bytes

__all__ = ["DATA_FILE", "DataStage", "images_of"]

DATA_FILE = "data.safetensors"
IMAGES_FILE = "images.safetensors"


def images_of(ref):
    """Images of a ``data`` or ``attack`` artifact (both store them as ``x``)."""
    return ref.tensors(DATA_FILE if ref.stage == "data" else IMAGES_FILE)["x"]


class DataStage(Stage):
    """Params: ``dataset``, ``n_points``, ``shape``, ``seed`` (and ``draw: original`` for the
    original code's draw, :func:`~bayeslrp.data.subsets.original_subset`). Output ``data.safetensors`` with
    ``x [n, C, H, W]``, ``y [n]`` and ``points [n]`` (test-set indices: sorted, or by class for the original draw)."""

    name = "data"

    def plan(self, planner) -> None:
        cfg = planner.config
        params = {"dataset": cfg.data.param, "n_points": cfg.data.n_points,
                  "shape": list(cfg.data.image_shape), "seed": cfg.seed}
        if cfg.data.points_draw != "balanced":  # the default stays out of the key
            params["draw"] = cfg.data.points_draw
        planner.shared["data"] = planner.add("data", params, {}, "data")

    def run(self, params, inputs, ctx):
        from bayeslrp import data

        x, y = load_split(params["dataset"], "test", params["shape"], ctx)
        n_classes = dataset_classes(params["dataset"])
        draw = (data.original_subset if params.get("draw") == "original"
                else data.balanced_subset)
        points = draw(y, int(params["n_points"]),
                                      seed=stage_seed(params["seed"], "points"),
                                      n_classes=n_classes)
        tensors = {"x": x[points].contiguous(), "y": y[points].contiguous(), "points": points}
        return StageOutput({DATA_FILE: tensors_to_bytes(tensors)},
                           {"facts": _facts(params["dataset"]),
                            "n_points": int(points.numel()), "n_test": int(y.numel())})

    def preflight(self, config) -> str | None:
        from bayeslrp import data

        if config.data.is_user:
            return None  # the files were read and checked with the config
        info = data.info(config.data.dataset, data_dir=config.data.data_dir, check=False)
        if info["source"] != "missing":
            return None
        return (f"{config.data.dataset} data not found; run `bayeslrp data fetch "
                f"{config.data.dataset}` or set data.data_dir")


def _facts(dataset) -> dict:
    """The data artifact's facts: the dataset's name, and a user dataset's pixel bounds."""
    if isinstance(dataset, dict):
        return {"dataset": dataset_name(dataset), "bounds": list(dataset["bounds"])}
    return {"dataset": dataset}
