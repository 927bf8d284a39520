"""``metrics``: the per-image robustness table of one model × attack × explainer × layer."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd

from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment.stages.base import Stage, StageOutput
from bayeslrp.experiment.stages.data import DATA_FILE
from bayeslrp.experiment.stages.explain import HEATMAPS_FILE
from bayeslrp.experiment.stages.predict import PROBS_FILE
from bayeslrp.experiment.store import table_to_bytes

__all__ = ["MetricsStage", "TABLE_FILE"]

TABLE_FILE = "table.parquet"


class MetricsStage(Stage):
    """One row per sample count × k × image: ``n_samples, k, point, label, pred_clean,
    pred_adv, success, lrp_robustness, nnz, softmax_robustness``."""

    name = "metrics"

    def plan(self, planner) -> None:
        cfg = planner.config
        explain, predict = planner.shared["explain"], planner.shared["predict"]
        data = planner.shared["data"]
        for m in planner.shared["models"]:
            n_list = list(cfg.explain.n_samples_for(m))
            for rule in cfg.explain.rules:
                for layer in cfg.explain.layers_for(m.learnable_layers):
                    for a in cfg.attacks:
                        params = {"k": list(cfg.metrics.k), "ties": cfg.metrics.ties,
                                  "topk_mode": cfg.metrics.topk_mode, "n_samples": n_list}
                        if cfg.metrics.k_pixels:  # absent otherwise: keys stay as they were
                            params["k_pixels"] = list(cfg.metrics.k_pixels)
                        deps = {"data": data.key,
                                "clean": explain[m.name, "clean", rule, layer].key,
                                "adv": explain[m.name, a.label, rule, layer].key,
                                "p_clean": predict[m.name, "clean"].key,
                                "p_adv": predict[m.name, a.label].key}
                        coords = {"model": m.name, "attack": a.label, "rule": rule,
                                  "layer": layer}
                        if a.transfer_from is not None and a.transfer_from != m.name:
                            coords["source_model"] = a.transfer_from
                        planner.add("metrics", params, deps,
                                    f"metrics[{m.name},{a.label},{rule},L{layer}]", coords)

    def run(self, params, inputs, ctx):
        from bayeslrp import metrics

        d = inputs["data"].tensors(DATA_FILE)
        clean, adv = inputs["clean"].tensors(HEATMAPS_FILE), inputs["adv"].tensors(HEATMAPS_FILE)
        p_clean = inputs["p_clean"].tensors(PROBS_FILE)["probs"]
        p_adv = inputs["p_adv"].tensors(PROBS_FILE)["probs"]
        n_list = [int(n) for n in params["n_samples"]]
        for name, t in (("clean", clean), ("adv", adv)):
            if t["n_samples"].tolist() != n_list:
                raise BayesLRPError(f"the {name} explanations hold sample counts "
                                    f"{t['n_samples'].tolist()}, expected {n_list}; rerun")
        y, points = d["y"], d["points"]
        n_pixels = int(clean["mean"].shape[-1] * clean["mean"].shape[-2])
        ks = [(float(k), k) for k in params["k"]]
        ks += [(100.0 * c / n_pixels, Fraction(100 * int(c), n_pixels))
               for c in params.get("k_pixels", [])]
        frames = []
        for i, n in enumerate(n_list):
            pred_c, pred_a = p_clean[i].argmax(-1), p_adv[i].argmax(-1)
            soft = metrics.softmax_robustness(p_clean[i], p_adv[i])
            success = metrics.attack_success(y, pred_c, pred_a)
            for k_label, k in ks:
                res = metrics.lrp_robustness_details(clean["mean"][i], adv["mean"][i], k=k,
                                                     mode=params["topk_mode"],
                                                     ties=params["ties"])
                frames.append(pd.DataFrame({
                    "n_samples": np.full(points.numel(), n, dtype=np.int64),
                    "k": np.full(points.numel(), k_label, dtype=np.float64),
                    "k_pixels": np.full(points.numel(), metrics.topk_count(
                        n_pixels, k, params["topk_mode"]), dtype=np.int64),
                    "point": points.numpy().astype(np.int64),
                    "label": y.numpy().astype(np.int64),
                    "pred_clean": pred_c.numpy().astype(np.int64),
                    "pred_adv": pred_a.numpy().astype(np.int64),
                    "success": success.numpy().astype(bool),
                    "lrp_robustness": res.robustness.double().numpy(),
                    "nnz": res.nnz.numpy().astype(np.int64),
                    "softmax_robustness": soft.double().numpy(),
                }))
        table = pd.concat(frames, ignore_index=True)
        adv_facts = inputs["adv"].facts
        facts = {"model": adv_facts["model"], "attack": adv_facts["images"],
                 "rule": adv_facts["rule"], "layer": adv_facts["layer"]}
        return StageOutput({TABLE_FILE: table_to_bytes(table)}, {"facts": facts})
