"""``manifold``: normal shares of gradients, heatmaps and perturbations at the attacked points.

One task per model (config ``analysis: {manifold: {...}}``): the tangent spaces of the data
manifold at the clean attacked points (local PCA of the K nearest training images of the whole
training split), then, for each posterior sample and for the mean of the first n samples, the
normal share of the input gradient of the explained class's logit (``prediction``), of the
loss, and of each explainer's heatmap at the output layer; and the share of every attack's
perturbation ``x̃ − x``. Every quantity uses one class per point: the predictive mean's class
over all samples. Publishes ``manifold.parquet`` (:data:`MANIFOLD_COLUMNS`).

Heatmaps are summed over channels (as LRP), so for multi-channel data their tangent spaces are
those of the channel-summed images (the image of the manifold under that linear map).
"""
from __future__ import annotations

import pandas as pd
import torch

from bayeslrp.analysis import manifold as mf
from bayeslrp.analysis.manifold_measures import (MANIFOLD_COLUMNS, MANIFOLD_FILE,
                                                 MANIFOLD_ORDER, sample_input_gradients,
                                                 share_rows)
from bayeslrp.experiment.stages.base import (Stage, StageOutput, is_bayesian, load_model,
                                             load_split, stage_seed)
from bayeslrp.experiment.stages.data import DATA_FILE, IMAGES_FILE
from bayeslrp.experiment.stages.explainers import explainer_from_params, explainer_key_params
from bayeslrp.experiment.store import table_to_bytes
from bayeslrp.fileio import atomic_write_bytes

__all__ = ["ManifoldStage"]

ATTACK_ROLE = "attack:"


class ManifoldStage(Stage):
    """Params: ``manifold`` (the config's spec), ``dataset``, ``shape``, ``explainers`` (rule →
    key params at the output layer), ``n_samples`` (clamped to the model's samples),
    ``seed``. Inputs: ``model``, ``data`` and ``attack:<label>`` per attack of the model."""

    name = "manifold"
    device_dependent = True

    def plan(self, planner) -> None:
        from bayeslrp import catalog

        cfg = planner.config
        spec = cfg.analysis.manifold if cfg.analysis is not None else None
        if spec is None:
            return
        for m in planner.shared["models"]:
            last = catalog.learnable_layers(m.arch)[-1]
            explainers = {rule: explainer_key_params(cfg, rule, m, last, output_layer=True)
                          for rule in spec.heatmap_rules(cfg.explain.rules)}
            inputs = {"model": planner.shared["model_keys"][m.name],
                      "data": planner.shared["data"].key}
            if spec.perturbations:
                for a in cfg.attacks:
                    task = planner.shared["attacks"].get((a.transfer_from or m.name, a.label))
                    if task is not None:
                        inputs[ATTACK_ROLE + a.label] = task.key
            n_list = sorted({min(n, m.sample_count) for n in spec.n_samples})
            planner.add("manifold", {"manifold": spec.model_dump(mode="json"),
                                     "dataset": cfg.data.param,
                                     "shape": list(cfg.data.image_shape),
                                     "explainers": explainers, "n_samples": n_list,
                                     "seed": cfg.seed},
                        inputs, f"manifold[{m.name}]", {"model": m.name})

    def estimate(self, task, config):
        from bayeslrp.experiment.costs import seconds
        from bayeslrp.experiment.stages.base import model_forward_flops, model_samples

        spec = task.params["manifold"]
        s, b = model_samples(config, task.coords["model"]), config.data.n_points
        passes = len(spec["quantities"]) + len(task.params["explainers"])  # each ≈ fwd + bwd
        work = 3.0 * passes * s * b * model_forward_flops(config, task.coords["model"])
        n_train = config.data.facts.train_size
        pixels = 1
        for size in config.data.image_shape:
            pixels *= size
        neighbours = 2.0 * b * n_train * pixels * len(ManifoldSpecView(spec).settings)
        return seconds(work, "explain", self.name) + seconds(neighbours, "predict", self.name)

    def run(self, params, inputs, ctx):
        spec = ManifoldSpecView(params["manifold"])
        ens = load_model(inputs["model"], ctx)
        d = inputs["data"].tensors(DATA_FILE)
        x, y, points = d["x"], d["y"], d["points"].tolist()
        x_train, _ = load_split(params["dataset"], "train", params["shape"], ctx)
        facts = inputs["model"].facts["model"]
        classes = ens.predict(x).cpu()
        seed = stage_seed(int(params["seed"]), "manifold", "random")
        image_bases = _bases(spec, x, x_train, seed)
        # the model's name is the task's coordinate, filled in by publish
        labels = {"model": "", "method": facts["method"],
                  "arch": facts["arch"], "dataset": facts["dataset"]}
        n_list = [int(n) for n in params["n_samples"]]
        frames = []
        for quantity in spec.quantities:
            grads = sample_input_gradients(ens, x, quantity, y=y, target=classes)
            frames += _measure(grads, image_bases, spec, n_list, points,
                               {**labels, "attack": "", "quantity": quantity})
        if params["explainers"]:
            heat_bases = (image_bases if x.shape[1] == 1 else
                          _bases(spec, x.sum(1, keepdim=True), x_train.sum(1, keepdim=True),
                                 seed))
            for rule, key_params in params["explainers"].items():
                explainer = explainer_from_params(rule, key_params, is_bayesian(facts), None,
                                                  n_samples=ens.n_samples, reduce=None)
                heat = _heatmaps(explainer, ens, x, classes)
                frames += _measure(heat, heat_bases, spec, n_list, points,
                                   {**labels, "attack": "", "quantity": f"heatmap:{rule}"})
        for role, ref in inputs.items():
            if role.startswith(ATTACK_ROLE):
                delta = (ref.tensors(IMAGES_FILE)["x"] - x).unsqueeze(0)
                frames += _measure(delta, image_bases, spec, [1], points,
                                   {**labels, "attack": role[len(ATTACK_ROLE):],
                                    "quantity": "perturbation"}, samples=False)
        table = pd.concat(frames, ignore_index=True)[list(MANIFOLD_COLUMNS)]
        return StageOutput({MANIFOLD_FILE: table_to_bytes(table)},
                           {"facts": {"model": facts}, "rows": int(len(table))})

    def publish(self, parts, store, run_dir):
        keys = [t.key for p in parts for t in p.grid.tasks if t.stage == self.name]
        if not keys:
            return {}
        frames = []
        for p in parts:
            for t in p.grid.tasks:
                if t.stage == self.name:
                    frame = store.load_table(t.key, MANIFOLD_FILE)
                    frame["model"] = t.coords["model"]
                    frames.append(frame)
        table = pd.concat(frames, ignore_index=True)
        table = table.sort_values(list(MANIFOLD_ORDER), kind="mergesort").reset_index(drop=True)
        return {"manifold": atomic_write_bytes(run_dir / MANIFOLD_FILE, table_to_bytes(table))}


def _heatmaps(explainer, ens, x, classes) -> torch.Tensor:
    """Every sample's heatmap ``[S, B, H, W]``, in image chunks of bounded size."""
    from bayeslrp.experiment.stages.explain import EXPLAIN_CHUNK_BYTES

    chunk = max(1, EXPLAIN_CHUNK_BYTES // (ens.n_samples * x[0, 0].numel() * 4))
    out = [explainer.explain(ens, x[i:i + chunk].to(ens.device),
                             target=classes[i:i + chunk].to(ens.device)).detach().cpu()
           for i in range(0, x.shape[0], chunk)]
    return torch.cat(out, dim=1)


class ManifoldSpecView:
    """Attribute access to a stored manifold spec (the task's params are plain JSON)."""

    def __init__(self, spec: dict):
        from bayeslrp.experiment.config_analysis import ManifoldSpec

        self._spec = ManifoldSpec(**spec)

    def __getattr__(self, name):
        return getattr(self._spec, name)

    @property
    def settings(self):
        return self._spec.settings()


def _bases(spec, x, x_train, seed) -> dict:
    """``{(k, dim): {"pca": bases, "random": bases?}}`` for every setting of ``spec``."""
    out = {}
    for i, (k, dim) in enumerate(spec.settings):
        pca = mf.tangent_spaces(x, x_train, k=k, dim=dim,
                                variance=spec.variance if dim is None else None)
        out[k, dim] = {"pca": pca}
        if i == 0 and spec.controls.random:
            out[k, dim]["random"] = mf.random_bases(pca.shape[0], pca.shape[1], pca.shape[2],
                                                    seed=seed % 2**63)
    return out


def _measure(values, bases, spec, n_list, points, labels, samples=None) -> list:
    frames = []
    for i, ((k, dim), kinds) in enumerate(bases.items()):
        for basis, u in kinds.items():
            keep_samples = (spec.samples if samples is None else samples) and i == 0 \
                and basis == "pca"
            frames.append(share_rows(values, {basis: u}, n_list,
                                     {**labels, "k": k, "dim": -1 if dim is None else dim},
                                     points, samples=keep_samples))
    return frames

