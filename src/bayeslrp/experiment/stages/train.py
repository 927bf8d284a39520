"""``train``: one model of the config trained by its model-method plug-in, as an Ensemble.

Also publishes ``models.json`` (every model artifact of the run: trained and selected).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment.stages.base import (MODEL_DIR, Stage, StageOutput, dataset_classes,
                                             dataset_name, generator, load_model, load_split,
                                             model_forward_flops, stage_seed)
from bayeslrp.fileio import atomic_write_json
from bayeslrp.plugins.models import MODEL_METHODS

__all__ = ["TrainStage", "build_model_net", "json_safe", "train_subset"]

MODEL_STAGES = ("train", "select")


def train_subset(x, y, n_train: int | None, seed: int):
    """The data's seeded random training subset (``n_train`` images, kept in index order).

    Seeded by the config's seed: the subset is a property of the data section, shared by
    every model whatever its own seed.
    """
    import torch

    if n_train is None or n_train >= x.shape[0]:
        return x, y
    idx = torch.randperm(x.shape[0], generator=generator(seed, "n_train"))[:n_train]
    idx = idx.sort().values
    return x[idx], y[idx]


def json_safe(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers and non-finite floats as None."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return json_safe(obj.item())
    return obj


def build_model_net(spec: dict, shape: list[int], n_classes: int, seed: int):
    """The freshly initialised network of a model's key params, loaded from its
    ``init_weights`` when it has them (checked against the file's sha256 when the params
    carry it). A built-in arch gets the data's shape and classes; a registered or factory one
    exactly its ``arch_kwargs``."""
    from bayeslrp import catalog, nets
    from bayeslrp.experiment.arch_probe import build_network, load_weights

    init_seed = stage_seed(seed, "init")
    if spec["arch"] in catalog.ARCHS:
        kwargs: dict[str, Any] = {"in_shape": list(shape), "n_classes": n_classes}
        for key in ("hidden", "channels"):
            if spec.get(key) is not None:
                kwargs[key] = spec[key]
        net = nets.build(spec["arch"], seed=init_seed, **kwargs)
    else:
        net = build_network(spec["arch"], spec.get("arch_kwargs"), seed=init_seed)
    weights = spec.get("init_weights")
    if weights is not None:
        path, sha = (weights["path"], weights["sha256"]) if isinstance(weights, dict) \
            else (weights, None)
        load_weights(path, net, sha)
    return net


class TrainStage(Stage):
    """Params: ``dataset``, ``n_train``, ``shape``, ``model`` (the method's key params),
    ``seed`` (the model's), and ``subset_seed`` (the data's, when it differs from ``seed``).
    Input ``init`` (optional): the model the method starts from. The test accuracy of the
    predictive mean over all samples on the full test split goes into the meta."""

    name = "train"
    device_dependent = True

    def plan(self, planner) -> None:
        cfg = planner.config
        train: dict[str, Any] = {}
        pending = list(cfg.models)
        while pending:  # init_model dependencies first (config validation forbids cycles)
            progressed = False
            for m in list(pending):
                method = MODEL_METHODS.get(m.method)()
                init = method.init_model(m)
                if init is not None and init not in train:
                    continue
                seed = m.seed if m.seed is not None else cfg.seed
                params = {"dataset": cfg.data.param, "n_train": cfg.data.n_train,
                          "shape": list(cfg.data.image_shape), "model": method.key_params(m),
                          "seed": seed}
                if cfg.data.n_train is not None and seed != cfg.seed:
                    params["subset_seed"] = cfg.seed
                deps = {"init": train[init].key} if init is not None else {}
                train[m.name] = planner.add("train", params, deps, f"train[{m.name}]",
                                            {"model": m.name})
                pending.remove(m)
                progressed = True
            if not progressed:
                raise BayesLRPError(f"models {[m.name for m in pending]} wait on each other "
                                    f"through init_model")
        planner.shared["train"] = train
        planner.shared["model_keys"] = {name: t.key for name, t in train.items()}
        planner.shared["models"] = list(cfg.models)

    def run(self, params, inputs, ctx):
        import torch

        from bayeslrp.evaluation import evaluate_model

        spec, seed = params["model"], int(params["seed"])
        method = MODEL_METHODS.get(spec["method"])()
        device = torch.device(ctx.device)
        x, y = load_split(params["dataset"], "train", params["shape"], ctx)
        x, y = train_subset(x, y, params["n_train"], int(params.get("subset_seed", seed)))
        n_classes = dataset_classes(params["dataset"])
        net = build_model_net(spec, params["shape"], n_classes, seed)
        init = load_model(inputs["init"], ctx) if "init" in inputs else None
        x_test, y_test = load_split(params["dataset"], "test", params["shape"], ctx)
        extra = {}
        if getattr(method, "uses_test_split", False):  # e.g. det's match_accuracy
            extra = {"test_split": (x_test.to(device), y_test),
                     "init_meta": inputs["init"].meta if "init" in inputs else None}
        ens = method.train(spec, net, x.to(device), y.to(device), init=init,
                           common=_common(method, seed, ctx, device, params["dataset"]),
                           scratch=ctx.scratch, **extra)
        expected = int(spec.get("n_samples", 1))
        if ens.n_samples != expected:
            raise BayesLRPError(f"{spec['method']} training returned {ens.n_samples} samples, "
                                f"the config asks for {expected}")
        evaluation = evaluate_model(ens, x_test.to(device), y_test,
                                    init=method.weight_reference(spec, init))
        ens = ens.to("cpu")
        facts = {"method": spec["method"], "arch": spec["arch"],
                 "dataset": dataset_name(params["dataset"]),
                 "n_samples": ens.n_samples, "bayesian": method.bayesian}
        meta = {"facts": {"model": facts}, "test_accuracy": evaluation["test_accuracy"],
                "n_test": int(y_test.numel()), "n_train": int(x.shape[0]),
                "diagnostics": json_safe(method.diagnostics(ens.meta)),
                "calibration": json_safe(evaluation["calibration"]),
                "posterior": json_safe(evaluation["posterior"])}
        return StageOutput(lambda directory: ens.save(directory / MODEL_DIR), meta)

    def estimate(self, task, config):
        from bayeslrp.experiment.costs import seconds

        name = task.coords["model"]
        spec = config.model(name)
        flops = model_forward_flops(config, name)
        method = MODEL_METHODS.get(spec.method)()
        work, kind = method.cost(spec, config.data.train_size, flops)
        passes = spec.sample_count + method.test_passes(spec, config.data.train_size)
        test = passes * _test_size(config) * flops
        return seconds(work, kind, "train") + seconds(test, "test", "train") - 0.3

    def publish(self, parts, store, run_dir):
        entries = []
        for part in parts:
            order = [m.name for m in part.config.models]
            order += [own for own, _, _ in part.config.own_models()]
            tasks = {t.coords["model"]: t for t in part.grid.tasks if t.stage in MODEL_STAGES}
            entries += [_model_entry(tasks[name], store) for name in order if name in tasks]
        return {"models.json": atomic_write_json(run_dir / "models.json", entries)}


def _common(method, seed: int, ctx, device, dataset) -> dict[str, Any]:
    """The options every train function takes; ``bounds`` (a user dataset's pixel range) for
    the methods whose training makes clamped examples (``uses_bounds``)."""
    common = {"seed": seed, "progress": ctx.progress, "device": device}
    if getattr(method, "uses_bounds", False) and isinstance(dataset, dict):
        common["bounds"] = tuple(dataset["bounds"])
    return common


def _test_size(config) -> int:
    from bayeslrp import catalog

    if config.data.is_user:
        return config.data.dataset.describe()["test_size"]
    facts = catalog.DATASETS[config.data.dataset]
    return 10000 if config.data.dataset in ("mnist", "fashion_mnist", "cifar10") \
        else facts.max_points


def _model_entry(task, store) -> dict[str, Any]:
    meta = store.load_meta(task.key)
    facts = meta["facts"]["model"]
    return {"name": task.coords["model"], "method": facts["method"], "arch": facts["arch"],
            "dataset": facts["dataset"], "test_accuracy": meta["test_accuracy"],
            "n_test": meta.get("n_test"), "n_samples": facts["n_samples"],
            "n_train": meta.get("n_train"), "diagnostics": meta.get("diagnostics", {}),
            # absent (None) for models trained before calibration was recorded
            "calibration": meta.get("calibration"), "posterior": meta.get("posterior"),
            "artifact": task.key,
            **({"own_sample": facts["own_sample"]} if "own_sample" in facts else {})}
