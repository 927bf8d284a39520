"""``predict``: predictive probabilities of clean or attacked images for every sample count."""
from __future__ import annotations

import torch

from bayeslrp.experiment.draws import draw_params, explained_view
from bayeslrp.experiment.stages.base import Stage, StageOutput, load_model
from bayeslrp.experiment.stages.data import images_of
from bayeslrp.experiment.store import tensors_to_bytes

__all__ = ["PROBS_FILE", "PredictStage", "cumulative_probs", "image_sources", "image_facts"]

PROBS_FILE = "probs.safetensors"
PREDICT_CHUNK_IMAGES = 1024


def cumulative_probs(ens, x: torch.Tensor, n_list: list[int]) -> torch.Tensor:
    """Predictive mean softmax over the first ``n`` samples for every ``n``: ``[len, B, C]``.

    One pass over the largest ``n``; the per-sample softmax is accumulated in float64 so the
    mean of the first ``n`` samples is exact up to rounding, whatever ``n``.
    """
    n_max = max(n_list)
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], PREDICT_CHUNK_IMAGES):
            xb = x[start:start + PREDICT_CHUNK_IMAGES].to(ens.device)
            # float64 on the CPU: exact sums whatever the device (no float64 cumsum on CUDA)
            probs = ens.logits(xb, n_max).softmax(-1).cpu().to(torch.float64)  # [S, b, C]
            csum = probs.cumsum(0)
            out.append(torch.stack([csum[n - 1] / n for n in n_list]))
    return torch.cat(out, dim=1)


def image_sources(planner, model) -> dict:
    """``{"clean": data task, attack label: attack task}`` of the images ``model`` sees."""
    sources = {"clean": planner.shared["data"]}
    for a in planner.config.attacks:
        sources[a.label] = planner.shared["attacks"][a.transfer_from or model.name, a.label]
    return sources


def image_facts(ref) -> dict:
    """``{"source": "clean"}`` for the data, the attack's facts for attacked images."""
    return ref.facts.get("attack", {"source": "clean"})


class PredictStage(Stage):
    """Params ``n_samples`` and, with ``explain_draws: fresh``, ``draw_offset`` (the first
    sample used). Output ``probs.safetensors``: ``probs [len(n), B, C]`` (float64),
    ``n_samples``."""

    name = "predict"
    device_dependent = True

    def plan(self, planner) -> None:
        cfg = planner.config
        predict = {}
        for m in planner.shared["models"]:
            n_list = cfg.explain.n_samples_for(m)
            for src, images in image_sources(planner, m).items():
                predict[m.name, src] = planner.add(
                    "predict", {"n_samples": list(n_list), **draw_params(cfg, m)},
                    {"model": planner.shared["model_keys"][m.name], "images": images.key},
                    f"predict[{m.name},{src}]", {"model": m.name, "source": src})
        planner.shared["predict"] = predict

    def estimate(self, task, config):
        from bayeslrp.experiment.costs import seconds
        from bayeslrp.experiment.stages.base import model_forward_flops

        n = max(task.params["n_samples"])
        flops = n * config.data.n_points * model_forward_flops(config, task.coords["model"])
        return seconds(flops, "predict", "predict")

    def run(self, params, inputs, ctx):
        from bayeslrp.compat import check_data

        ens = load_model(inputs["model"], ctx)
        n_list = [int(n) for n in params["n_samples"]]
        ens = explained_view(ens, params, max(n_list))
        images = images_of(inputs["images"])
        check_data(ens, images)  # holds by the config's fit checks; a saved model is not trusted
        probs = cumulative_probs(ens, images, n_list)
        facts = {"model": inputs["model"].facts["model"], "images": image_facts(inputs["images"])}
        return StageOutput({PROBS_FILE: tensors_to_bytes(
            {"probs": probs, "n_samples": torch.tensor(n_list, dtype=torch.int64)})},
            {"facts": facts})
