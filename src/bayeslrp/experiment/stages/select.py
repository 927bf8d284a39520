"""``select``: one posterior sample of a Bayesian model as an S = 1 model (control
``own_attack_sample``)."""
from __future__ import annotations

from dataclasses import dataclass

from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment.stages.base import (MODEL_DIR, Stage, StageOutput, load_model,
                                             load_split)

__all__ = ["OwnSample", "SelectStage"]


@dataclass(frozen=True)
class OwnSample:
    """Posterior sample ``sample`` of a Bayesian model, used as a deterministic net."""

    name: str
    parent: str
    sample: int
    arch: str
    sample_count: int = 1
    bayesian: bool = False
    learnable_layers: tuple[int, ...] = ()


class SelectStage(Stage):
    """Params: ``sample`` (j), ``dataset`` and ``shape`` (for the sample's test accuracy). Input
    ``model``: the trained Bayesian model. Its facts keep the parent's method and add
    ``own_sample: j``, so later stages attack and explain it as a deterministic net."""

    name = "select"
    device_dependent = True

    def plan(self, planner) -> None:
        cfg = planner.config
        train = planner.shared["train"]
        for own, parent, j in cfg.own_models():
            t = planner.add("select", {"sample": j, "dataset": cfg.data.param,
                                       "shape": list(cfg.data.image_shape)},
                            {"model": train[parent].key}, f"select[{own}]", {"model": own})
            planner.shared["model_keys"][own] = t.key
            planner.shared["models"].append(OwnSample(
                own, parent, j, cfg.model(parent).arch,
                learnable_layers=cfg.model(parent).learnable_layers))

    def estimate(self, task, config):
        from bayeslrp.experiment.costs import seconds
        from bayeslrp.experiment.stages.base import model_forward_flops

        return seconds(10000 * model_forward_flops(config, task.coords["model"]), "test",
                       "select")

    def run(self, params, inputs, ctx):
        j = int(params["sample"])
        parent = inputs["model"]
        from bayeslrp.evaluation import evaluate_model
        from bayeslrp.experiment.stages.train import json_safe

        ens = load_model(parent, ctx)
        if not 0 <= j < ens.n_samples:
            raise BayesLRPError(f"sample {j} does not exist; the model keeps {ens.n_samples}")
        ens = ens.select([j])
        x_test, y_test = load_split(params["dataset"], "test", params["shape"], ctx)
        evaluation = evaluate_model(ens, x_test.to(ens.device), y_test)
        facts = {**parent.facts["model"], "n_samples": 1, "own_sample": j}
        meta = {"facts": {"model": facts}, "test_accuracy": evaluation["test_accuracy"],
                "n_test": int(y_test.numel()), "n_train": parent.meta.get("n_train"),
                "diagnostics": {"parent_test_accuracy": parent.meta.get("test_accuracy")},
                "calibration": json_safe(evaluation["calibration"]),
                "posterior": json_safe(evaluation["posterior"])}
        return StageOutput(lambda directory: ens.to("cpu").save(directory / MODEL_DIR), meta)
