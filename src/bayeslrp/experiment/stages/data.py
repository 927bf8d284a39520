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
    """Params: ``dataset``, ``n_points``, ``shape``, ``seed`` (and ``points: first_n`` or
    ``points: original`` when the config asks for the first test images or the original code's
    draw instead of a balanced subset). Output
    ``data.safetensors`` with ``x [n, C, H, W]``, ``y [n]`` and ``points [n]`` (test-set
    indices: sorted, or by class for the original draw)."""

    name = "data"

    def plan(self, planner) -> None:
        cfg = planner.config
        params = {"dataset": cfg.data.param, "n_points": cfg.data.n_points,
                  "shape": list(cfg.data.image_shape), "seed": cfg.seed}
        if cfg.data.points != "balanced":  # the default stays out of the key
            params["points"] = cfg.data.points
        planner.shared["data"] = planner.add("data", params, {}, "data")

    def run(self, params, inputs, ctx):
        x, y = load_split(params["dataset"], "test", params["shape"], ctx)
        points = _points(params, y)
        tensors = {"x": x[points].contiguous(), "y": y[points].contiguous(), "points": points}
        return StageOutput({DATA_FILE: tensors_to_bytes(tensors)},
                           {"facts": _facts(params["dataset"]),
                            "n_points": int(points.numel()), "n_test": int(y.numel())})

    def preflight(self, config) -> str | None:
        from bayeslrp import data
        from bayeslrp.data.registry import get_spec

        if config.data.is_user:
            return None  # the files were read and checked with the config
        info = data.info(config.data.dataset, data_dir=config.data.data_dir, check=False)
        if info["source"] != "missing":
            return None
        name = config.data.dataset
        spec = get_spec(name)
        if hasattr(spec, "archive"):  # CIFAR: say which file goes where (no download needed)
            return (f"{name} data not found; put {spec.archive} (or its unpacked "
                    f"{spec.archive_dir}/) in a "
                    f"directory named by data.data_dir or $BAYESLRP_DATA, or run `bayeslrp "
                    f"data fetch {name}`")
        return f"{name} data not found; run `bayeslrp data fetch {name}` or set data.data_dir"


def _points(params, y):
    """Test-set indices of the attacked points: balanced (seeded), the first n, or the original
    code's draw (:func:`~bayeslrp.data.subsets.original_subset`, seeded)."""
    import torch

    from bayeslrp import data
    from bayeslrp.errors import BayesLRPError

    n = int(params["n_points"])
    if params.get("points", "balanced") == "first_n":
        if n > y.numel():
            raise BayesLRPError(f"points: first_n asks for {n} test images; the test split "
                                f"has {y.numel()}")
        return torch.arange(n)
    draw = data.original_subset if params.get("points") == "original" else data.balanced_subset
    return draw(y, n, seed=stage_seed(params["seed"], "points"),
                n_classes=dataset_classes(params["dataset"]))


def _facts(dataset) -> dict:
    """The data artifact's facts: the dataset's name, and a user dataset's pixel bounds."""
    if isinstance(dataset, dict):
        return {"dataset": dataset_name(dataset), "bounds": list(dataset["bounds"])}
    return {"dataset": dataset}
