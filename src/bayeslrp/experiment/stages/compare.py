"""``compare``: the run's results table and every model's comparison with its baseline.

Publishes ``results.parquet``, ``differences.parquet``, ``tests.parquet`` and
``spearman.parquet`` (concatenated and re-sorted when a plan has several documents).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bayeslrp import metrics

from bayeslrp import analysis
from bayeslrp.experiment.stages.base import Stage, StageOutput
from bayeslrp.experiment.stages.metrics import TABLE_FILE
from bayeslrp.experiment.store import table_to_bytes
from bayeslrp.fileio import atomic_write_bytes

__all__ = ["CompareStage", "RESULTS_SCHEMA", "TABLE_FILES"]

# Version of the results table's columns, part of the compare key: 2 added source_model and
# own_sample (the controls); 3 made k a float (fractional percentages) and added k_pixels;
# 4 added explainer (the explanation method; ``rule`` is its older name).
RESULTS_SCHEMA = 4
RESULTS_FILE, DIFFERENCES_FILE = analysis.RESULTS_FILE, analysis.DIFFERENCES_FILE
TESTS_FILE, SPEARMAN_FILE = analysis.TESTS_FILE, analysis.SPEARMAN_FILE
TABLE_FILES = (RESULTS_FILE, DIFFERENCES_FILE, TESTS_FILE, SPEARMAN_FILE)


def results_table(params: dict, inputs) -> pd.DataFrame:
    """Every metrics table, labelled from its artifact's facts and the task's coords."""
    frames = []
    for entry in params["tables"]:
        ref = inputs[entry["label"]]
        facts = ref.facts
        df = ref.table(TABLE_FILE)
        df["k"] = df["k"].astype(np.float64)
        if "k_pixels" not in df.columns:  # a metrics table stored before k_pixels existed
            df.insert(int(df.columns.get_loc("k")) + 1, "k_pixels", [
                metrics.topk_count(int(params["pixels"]), float(k), params["topk_mode"])
                for k in df["k"]])
        model = facts["model"]
        df.insert(0, "dataset", model["dataset"])
        df.insert(1, "model", entry["model"])
        df.insert(2, "method", model["method"])
        df.insert(3, "arch", model["arch"])
        df.insert(4, "attack", entry["attack"])
        df.insert(5, "attack_mode", facts["attack"].get("mode", ""))
        df.insert(6, "rule", entry["rule"])
        df.insert(7, "explainer", entry["rule"])
        df.insert(8, "layer", np.int64(entry["layer"]))
        # the model whose attack made x̃ (transfer control) and the posterior sample used as
        # a deterministic net (own-attack control; -1: none)
        df["source_model"] = entry.get("source_model", entry["model"])
        df["own_sample"] = np.int64(model.get("own_sample", -1))
        frames.append(df)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in analysis.RESULT_COLUMNS})
    table = pd.concat(frames, ignore_index=True)[list(analysis.RESULT_COLUMNS)]
    table["layer"] = table["layer"].astype(np.int64)
    return table.sort_values(analysis.RESULT_ORDER, kind="mergesort").reset_index(drop=True)


class CompareStage(Stage):
    """Params: ``pairs`` (``[model, baseline]``), ``bayesian`` (the posterior models of the
    ``adv<bayes`` tests) and ``tables`` (label, model, attack, rule, layer of every metrics
    table, whose artifacts are the inputs by label)."""

    name = "compare"

    def plan(self, planner) -> None:
        cfg = planner.config
        metrics = [t for t in planner.tasks if t.stage == "metrics"]
        pairs = [[m.name, cfg.baseline_for(m.name)] for m in cfg.models
                 if cfg.baseline_for(m.name) is not None]
        pairs += [[own, cfg.baseline_for(parent)] for own, parent, _ in cfg.own_models()
                  if cfg.baseline_for(parent) is not None]
        entries = [{"label": t.label, **t.coords} for t in metrics]
        shape = cfg.data.image_shape
        planner.shared["compare"] = planner.add(
            "compare", {"pairs": pairs, "tables": entries, "results_schema": RESULTS_SCHEMA,
                        "bayesian": sorted(m.name for m in cfg.models if m.bayesian),
                        "pixels": shape[1] * shape[2], "topk_mode": cfg.metrics.topk_mode},
            {t.label: t.key for t in metrics}, "compare")

    def run(self, params, inputs, ctx):
        results = results_table(params, inputs)
        diffs = analysis.paired_differences(results, [tuple(p) for p in params["pairs"]])
        own = set(results.loc[results["own_sample"] >= 0, "model"])
        tests = analysis.mann_whitney_tests(diffs, own, bayesian=params["bayesian"])
        files = {RESULTS_FILE: table_to_bytes(results.reset_index(drop=True)),
                 DIFFERENCES_FILE: table_to_bytes(diffs),
                 TESTS_FILE: table_to_bytes(tests),
                 SPEARMAN_FILE: table_to_bytes(analysis.spearman_table(results))}
        return StageOutput(files, {"rows": int(len(results))})

    def publish(self, parts, store, run_dir):
        keys = [t.key for p in parts for t in p.grid.tasks if t.stage == self.name]
        paths = {name: atomic_write_bytes(run_dir / name, _combined(store, keys, name))
                 for name in TABLE_FILES}
        paths["results"] = paths[RESULTS_FILE]
        return paths


def _combined(store, keys: list[str], name: str) -> bytes:
    if len(keys) == 1:
        return store.read_bytes(keys[0], name)
    frames = [store.load_table(k, name) for k in keys]
    frames = [f for f in frames if len(f)] or frames[:1]
    table = pd.concat(frames, ignore_index=True)
    order = [c for c in analysis.TABLE_ORDER[name] if c in table.columns]
    if len(table) and order:
        table = table.sort_values(order, kind="mergesort")
    return table_to_bytes(table.reset_index(drop=True))
