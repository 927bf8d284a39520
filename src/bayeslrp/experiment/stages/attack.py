"""``attack``: adversarial images of the data points, made by an attack plug-in."""
from __future__ import annotations

import torch

from bayeslrp.experiment.draws import attack_samples
from bayeslrp.experiment.stages.base import Stage, StageOutput, is_bayesian, load_model
from bayeslrp.experiment.stages.data import DATA_FILE, IMAGES_FILE
from bayeslrp.experiment.stages.explainers import explainer_key_params, explainer_from_params
from bayeslrp.experiment.store import tensors_to_bytes
from bayeslrp.plugins.attacks import ATTACK_METHODS

__all__ = ["AttackStage"]


class AttackStage(Stage):
    """Params: ``attack`` (the method's key params; ``n_samples`` resolved to the samples the
    attack uses), ``seed``, and for attacks on explanations ``explain`` (how the attacked
    output-layer explanation is formed). Output ``images.safetensors`` with ``x``."""

    name = "attack"
    device_dependent = True

    def plan(self, planner) -> None:
        cfg = planner.config
        data = planner.shared["data"]
        keys = planner.shared["model_keys"]
        attack_tasks = {}
        for m in planner.shared["models"]:
            last = m.learnable_layers[-1]
            for a in cfg.attacks:
                if a.transfer_from is not None and a.transfer_from != m.name:
                    continue  # a transfer attack is computed on its source model only
                method = ATTACK_METHODS.get(a.method)()
                params = {"attack": method.key_params(a, cfg), "seed": cfg.seed}
                params["attack"]["n_samples"] = attack_samples(cfg, m, a)
                if method.uses_explainer:
                    params["explain"] = explainer_key_params(cfg, a.explained_rule, m, last,
                                                             output_layer=True)
                attack_tasks[m.name, a.label] = planner.add(
                    "attack", params, {"model": keys[m.name], "data": data.key},
                    f"attack[{m.name},{a.label}]", {"model": m.name, "attack": a.label})
        planner.shared["attacks"] = attack_tasks

    def estimate(self, task, config):
        from bayeslrp.experiment.costs import seconds
        from bayeslrp.experiment.stages.base import model_forward_flops

        spec = next(a for a in config.attacks if a.label == task.coords["attack"])
        work, kind = ATTACK_METHODS.get(spec.method)().cost(
            spec, config.data.n_points, int(task.params["attack"]["n_samples"]),
            model_forward_flops(config, task.coords["model"]))
        return seconds(work, kind, "attack")

    def run(self, params, inputs, ctx):
        spec, seed = params["attack"], int(params["seed"])
        device = torch.device(ctx.device)
        ens = load_model(inputs["model"], ctx)
        d = inputs["data"].tensors(DATA_FILE)
        x, y = d["x"].to(device), d["y"].to(device)
        model_facts = inputs["model"].facts["model"]
        bayesian = is_bayesian(model_facts)
        method = ATTACK_METHODS.get(spec["method"])()
        explainer = None
        if method.uses_explainer:
            explainer = explainer_from_params(spec["rule"], params["explain"], bayesian,
                                              layer=None)
        bounds = tuple(inputs["data"].facts.get("bounds", (0.0, 1.0)))  # a user dataset's
        resume = {}
        if method.resumable and ctx.scratch is not None:
            from bayeslrp.attacks.checkpoint import ChunkCheckpoint

            resume["checkpoint"] = ChunkCheckpoint(ctx.scratch / "chunks")
        x_adv = method.run(ens, x, y, spec, seed=seed, explainer=explainer, bounds=bounds,
                           **resume)
        n = int(spec["n_samples"])
        facts = {"model": model_facts,
                 "attack": {"source": "attack", "method": spec["method"],
                            "mode": method.mode(spec, bayesian), "n_samples": n}}
        return StageOutput({IMAGES_FILE: tensors_to_bytes({"x": x_adv.detach()})},
                           {"facts": facts})
