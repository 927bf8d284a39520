"""``explain``: heatmaps of clean or attacked images at one layer under one explainer.

Also publishes ``heatmaps/*.safetensors`` (the first attacked points, for the figures).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from bayeslrp.experiment.draws import draw_params, explained_view
from bayeslrp.experiment.stages.base import Stage, StageOutput, is_bayesian, load_model
from bayeslrp.experiment.stages.data import images_of
from bayeslrp.experiment.stages.explainers import explainer_from_params, explainer_key_params
from bayeslrp.experiment.stages.heatmap_files import write_heatmap_files
from bayeslrp.experiment.stages.predict import cumulative_probs, image_facts, image_sources
from bayeslrp.experiment.store import tensors_to_bytes

__all__ = ["EXPLAIN_CHUNK_BYTES", "HEATMAPS_FILE", "ExplainStage", "explain_cumulative"]

HEATMAPS_FILE = "heatmaps.safetensors"
# Bytes of per-sample heatmaps [S, b, H, W] held at once by the explain stage.
EXPLAIN_CHUNK_BYTES = 1 << 27


def _is_output_layer(ens, layer: int | None) -> bool:
    from bayeslrp import nets

    return layer is None or int(layer) == nets.learnable_layers(ens.module)[-1]


def explain_cumulative(ens, x: torch.Tensor, explainer, n_list: list[int]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over the first ``n`` samples of the per-sample heatmaps, for every ``n``.

    The per-sample heatmaps of the largest ``n`` are computed once (in image chunks, so at
    most :data:`EXPLAIN_CHUNK_BYTES` of them are held at a time) and averaged over their first
    ``n`` samples. At the output layer with ``target_mode="predictive"`` every sample explains
    the class of the predictive mean over the samples used; the class of the first ``n``
    samples can differ from that of all of them, so the images where it does are explained
    again with ``n`` samples and that class.

    Returns
    -------
    (Tensor, Tensor)
        ``mean, std`` of shape ``[len(n_list), B, H, W]`` (float32, CPU); ``std`` is the
        population standard deviation over the samples.
    """
    n_max = max(n_list)
    predictive = (_is_output_layer(ens, explainer.layer)
                  and explainer.target_mode == "predictive")
    per_sample = explainer.replace(n_samples=n_max, reduce=None)
    h, w = x.shape[-2:]
    chunk = max(1, EXPLAIN_CHUNK_BYTES // (n_max * h * w * 4))
    means, stds = [], []
    for start in range(0, x.shape[0], chunk):
        xb = x[start:start + chunk].to(ens.device)
        classes = (cumulative_probs(ens, xb, n_list).argmax(-1).to(ens.device)
                   if predictive else None)  # [len, b]
        Rs = per_sample.explain(ens, xb, target=None if classes is None else classes[-1])
        mean = torch.stack([Rs[:n].mean(0) for n in n_list])
        std = torch.stack([Rs[:n].std(0, correction=0) for n in n_list])
        del Rs
        for i, n in enumerate(n_list[:-1] if classes is not None else []):
            redo = (classes[i] != classes[-1]).nonzero().flatten()
            if redo.numel():
                Rn = per_sample.replace(n_samples=n).explain(ens, xb[redo],
                                                             target=classes[i][redo])
                mean[i, redo] = Rn.mean(0)
                std[i, redo] = Rn.std(0, correction=0)
        means.append(mean.float().cpu())
        stds.append(std.float().cpu())
    return torch.cat(means, dim=1), torch.cat(stds, dim=1)


class ExplainStage(Stage):
    """Params: ``rule`` (a registered explainer), ``rule_args``, ``layer``, ``n_samples``, and
    ``output_seed`` (output layer) or ``inner_seed`` (inner layer), ``bayes`` (Bayesian
    models), ``draw_offset`` (``explain_draws: fresh``: the first sample used). Output ``heatmaps.safetensors``: ``mean`` and ``std`` ``[len(n), B, H, W]``,
    ``n_samples``."""

    name = "explain"
    device_dependent = True

    def plan(self, planner) -> None:
        cfg = planner.config
        explain: dict[tuple, Any] = {}
        for m in planner.shared["models"]:
            layers = m.learnable_layers
            n_list = list(cfg.explain.n_samples_for(m))
            for rule in cfg.explain.rules:
                for layer in cfg.explain.layers_for(m.learnable_layers):
                    for src, images in image_sources(planner, m).items():
                        params = {"rule": rule, "layer": layer, "n_samples": n_list,
                                  **explainer_key_params(cfg, rule, m, layer,
                                                         output_layer=layer == layers[-1]),
                                  **draw_params(cfg, m)}
                        explain[m.name, src, rule, layer] = planner.add(
                            "explain", params,
                            {"model": planner.shared["model_keys"][m.name],
                             "images": images.key},
                            f"explain[{m.name},{src},{rule},L{layer}]",
                            {"model": m.name, "source": src, "rule": rule, "layer": layer})
        planner.shared["explain"] = explain

    def estimate(self, task, config):
        from bayeslrp.experiment.costs import seconds
        from bayeslrp.experiment.stages.base import model_forward_flops

        n = max(task.params["n_samples"])
        flops = 6.0 * n * config.data.n_points * model_forward_flops(config, task.coords["model"])
        return seconds(flops, "explain", "explain")

    def run(self, params: dict, inputs: Mapping[str, Any], ctx) -> StageOutput:
        from bayeslrp.compat import check_data

        ens = load_model(inputs["model"], ctx)
        model_facts = inputs["model"].facts["model"]
        explainer = explainer_from_params(params["rule"], params, is_bayesian(model_facts),
                                          layer=int(params["layer"]))
        n_list = [int(n) for n in params["n_samples"]]
        ens = explained_view(ens, params, max(n_list))
        images = images_of(inputs["images"])
        check_data(ens, images)
        mean, std = explain_cumulative(ens, images, explainer, n_list)
        facts = {"model": model_facts, "images": image_facts(inputs["images"]),
                 "rule": params["rule"], "layer": int(params["layer"])}
        tensors = {"mean": mean, "std": std, "n_samples": torch.tensor(n_list, dtype=torch.int64)}
        return StageOutput({HEATMAPS_FILE: tensors_to_bytes(tensors)}, {"facts": facts})

    def publish(self, parts, store, run_dir):
        return {"heatmaps": write_heatmap_files(parts, store, run_dir, HEATMAPS_FILE)}
