"""Expansion of a validated :class:`~bayeslrp.experiment.config.Config` into a task graph.

A :class:`Task` is pure data: the stage to run, the parameters it needs (exactly those that
affect its output), the keys of its input artifacts by role, and its own artifact key
(:func:`~bayeslrp.experiment.store.artifact_key` of all three). The runner looks up the
stage function by ``task.stage``, skips tasks whose key the store already holds, and runs
the rest in :attr:`Grid.tasks` order (a topological order).

Stages and their inputs (roles)::

    data                                    balanced attacked test points
    train[model]         (init)             Ensemble; ``init`` = the det model of init_model
    select[model.own<j>] model              posterior sample j as an S = 1 model
                                            (control ``own_attack_sample``)
    attack[model,atk]    model, data        adversarial images
    predict[model,src]   model, images      predictive probabilities for every n
    explain[model,src,rule,L]   model, images   mean (and std) heatmap for every n, from one
                                            pass over the largest n (reduce=None: the mean
                                            of the first n per-sample heatmaps)
    metrics[model,atk,rule,L]   data, clean, adv, p_clean, p_adv   per-image table
    compare                                 every metrics table; differences vs baselines

``src`` is ``clean`` (images = data) or an attack label (images = that attack; for an attack
with ``transfer_from: B``, the attack of model B, computed once). Clean
explanations and predictions are shared by all attacks. Parameters that cannot change a
stage's output are left out of its key (the run name, the device, the data directory,
model and attack labels except in ``compare``), so renaming never recomputes.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment.config import (LEARNABLE_LAYERS, VI_KEY_LEGACY_VALUES, Config,
                                        load_config)
from bayeslrp.experiment.store import artifact_key

__all__ = ["STAGES", "STAGE_VERSIONS", "Grid", "Task", "expand_grid", "topological_order"]

STAGES = ("data", "train", "select", "attack", "predict", "explain", "metrics", "compare")
# Bump a stage's version when its code changes its output: its artifacts and everything
# downstream get new keys.
STAGE_VERSIONS: dict[str, int] = {stage: 1 for stage in STAGES}
# Version of the results table's columns, part of the compare key: 2 added source_model and
# own_sample (the controls), so compare artifacts stored before that are not reused.
RESULTS_SCHEMA = 2
SALIENCY_ATTACKS = ("topk", "region", "beta")


@dataclass(frozen=True)
class Task:
    """One unit of work.

    Attributes
    ----------
    stage : str
        Stage name (one of :data:`STAGES`).
    key : str
        Artifact key of the output.
    params : dict
        JSON-able parameters for the stage function; all of them enter the key.
    deps : dict
        Role → artifact key of each input.
    label : str
        Unique readable name, e.g. ``explain[hmc,fgsm,epsilon,L5]``.
    coords : dict
        Where the task sits in the grid (model, attack/source, rule, layer) for reports;
        not part of the key.
    """

    stage: str
    key: str
    params: dict = field(repr=False)
    deps: dict = field(default_factory=dict)
    label: str = ""
    coords: dict = field(default_factory=dict, repr=False)

    def __hash__(self) -> int:
        return hash((self.label, self.key))


def _task(stage: str, params: dict, deps: Mapping[str, str], label: str,
          coords: Mapping[str, Any]) -> Task:
    key = artifact_key(stage, params, deps, version=STAGE_VERSIONS[stage])
    return Task(stage=stage, key=key, params=params, deps=dict(deps), label=label,
                coords=dict(coords))


def topological_order(tasks: Iterable[Task]) -> list[Task]:
    """Order tasks so that every input is produced before it is used.

    Deterministic: among ready tasks, earlier stages first, then the given order. Several
    tasks may share a key (identical computations under different labels); a dependency is
    satisfied by the first of them.

    Raises
    ------
    ValueError
        If a dependency is produced by no task, or the dependencies form a cycle.
    """
    tasks = list(tasks)
    producers: dict[str, int] = {}
    for i, t in enumerate(tasks):
        producers.setdefault(t.key, i)
    rank = {s: r for r, s in enumerate(STAGES)}
    waiting: dict[int, set[int]] = {}
    users: dict[int, list[int]] = {i: [] for i in range(len(tasks))}
    for i, t in enumerate(tasks):
        needs = set()
        for role, dep in t.deps.items():
            if dep not in producers:
                raise ValueError(f"task {t.label} needs {role}={dep[:12]}… which no task makes")
            needs.add(producers[dep])
        needs.discard(i)
        waiting[i] = needs
        for j in needs:
            users[j].append(i)

    def prio(i: int) -> tuple[int, int]:
        return (rank.get(tasks[i].stage, len(rank)), i)

    ready = [prio(i) for i, n in waiting.items() if not n]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u].discard(i)
            if not waiting[u]:
                heapq.heappush(ready, prio(u))
    if len(order) != len(tasks):
        done = set(order)
        stuck = [tasks[i].label for i in range(len(tasks)) if i not in done]
        raise ValueError(f"dependency cycle among {stuck[:5]}")
    return [tasks[i] for i in order]


@dataclass(frozen=True)
class Grid:
    """All tasks of a config in topological order, with lookups."""

    tasks: tuple[Task, ...]

    def __len__(self) -> int:
        return len(self.tasks)

    def by_label(self, label: str) -> Task:
        for t in self.tasks:
            if t.label == label:
                return t
        raise KeyError(label)

    def stage(self, name: str) -> list[Task]:
        """Tasks of one stage, in order."""
        return [t for t in self.tasks if t.stage == name]

    def unique(self) -> list[Task]:
        """The first task of each key: the work that actually has to be done."""
        seen: set[str] = set()
        out = []
        for t in self.tasks:
            if t.key not in seen:
                seen.add(t.key)
                out.append(t)
        return out

    def downstream(self, labels: Iterable[str]) -> set[str]:
        """Labels of the given tasks and every task that (transitively) uses them."""
        affected = set(labels)
        keys = {t.key for t in self.tasks if t.label in affected}
        for t in self.tasks:  # topological order: one pass suffices
            if t.label in affected or any(d in keys for d in t.deps.values()):
                affected.add(t.label)
                keys.add(t.key)
        return affected


# --------------------------------------------------------------------------- expansion


def _model_params(model: Any) -> dict:
    # own_attack_sample only adds derived models downstream; it does not change training.
    params = model.model_dump(mode="json", exclude={"name", "seed", "init_model",
                                                    "own_attack_sample"})
    for key, legacy in VI_KEY_LEGACY_VALUES.items():
        if key in params and params[key] == legacy:
            del params[key]
    return params


@dataclass(frozen=True)
class _OwnSample:
    """Posterior sample ``sample`` of a Bayesian model, used as a deterministic net."""

    name: str
    parent: str
    sample: int
    arch: str
    sample_count: int = 1
    bayesian: bool = False


def _rule_args(rule: str, cfg: Config) -> dict:
    rp = cfg.explain.rule_params
    if rule == "epsilon":
        return {"epsilon": rp.epsilon}
    if rule == "gamma":
        return {"gamma": rp.gamma}
    return {"alpha": rp.alpha, "beta": rp.beta}


def _explain_args(cfg: Config, model: Any, arch_layers: tuple[int, ...], layer: int) -> dict:
    """How relevance is seeded and averaged: only the options that matter for this task."""
    args: dict[str, Any] = {}
    if layer == arch_layers[-1]:
        args["output_seed"] = cfg.explain.output_seed
    else:
        args["inner_seed"] = cfg.explain.inner_seed
    if model.bayesian:
        args["bayes"] = cfg.explain.bayes
    return args


def expand_grid(config: Config | Any) -> Grid:
    """Expand a config into its task graph.

    Parameters
    ----------
    config : Config, or anything :func:`load_config` accepts

    Returns
    -------
    Grid
        Every task, topologically ordered.
    """
    cfg = load_config(config)
    data_spec = cfg.data
    tasks: list[Task] = []

    data = _task("data", {"dataset": data_spec.dataset, "n_points": data_spec.n_points,
                          "shape": list(data_spec.image_shape), "seed": cfg.seed},
                 {}, "data", {})
    tasks.append(data)

    train: dict[str, Task] = {}
    pending = list(cfg.models)
    while pending:  # init_model dependencies first (config validation forbids cycles)
        progressed = False
        for m in list(pending):
            init = getattr(m, "init_model", None)
            if init is not None and init not in train:
                continue
            params = {"dataset": data_spec.dataset, "n_train": data_spec.n_train,
                      "shape": list(data_spec.image_shape), "model": _model_params(m),
                      "seed": m.seed if m.seed is not None else cfg.seed}
            deps = {"init": train[init].key} if init is not None else {}
            train[m.name] = _task("train", params, deps, f"train[{m.name}]", {"model": m.name})
            tasks.append(train[m.name])
            pending.remove(m)
            progressed = True
        if not progressed:
            raise BayesLRPError(f"models {[m.name for m in pending]} wait on each other "
                                f"through init_model")

    models: list[Any] = list(cfg.models)
    model_keys = {name: t.key for name, t in train.items()}
    for own, parent, j in cfg.own_models():  # control own_attack_sample
        t = _task("select", {"sample": j, "dataset": data_spec.dataset,
                             "shape": list(data_spec.image_shape)},
                  {"model": train[parent].key}, f"select[{own}]", {"model": own})
        tasks.append(t)
        model_keys[own] = t.key
        models.append(_OwnSample(own, parent, j, cfg.model(parent).arch))

    attack_tasks: dict[tuple[str, str], Task] = {}
    for m in models:
        arch_layers = LEARNABLE_LAYERS[m.arch]
        for a in cfg.attacks:
            if a.transfer_from is not None and a.transfer_from != m.name:
                continue  # a transfer attack is computed on its source model only
            params = {"attack": a.model_dump(mode="json", exclude={"name", "transfer_from"}),
                      "seed": cfg.seed}
            params["attack"]["n_samples"] = min(a.n_samples or m.sample_count, m.sample_count)
            if a.method in SALIENCY_ATTACKS:
                params["explain"] = {"rule_args": _rule_args(a.rule, cfg),
                                     **_explain_args(cfg, m, arch_layers, arch_layers[-1])}
            t = _task("attack", params, {"model": model_keys[m.name], "data": data.key},
                      f"attack[{m.name},{a.label}]", {"model": m.name, "attack": a.label})
            tasks.append(t)
            attack_tasks[m.name, a.label] = t

    for m in models:
        arch_layers = LEARNABLE_LAYERS[m.arch]
        n_list = cfg.explain.n_samples_for(m)
        model_key = model_keys[m.name]
        sources: dict[str, Task] = {"clean": data}
        for a in cfg.attacks:
            sources[a.label] = attack_tasks[a.transfer_from or m.name, a.label]

        predict: dict[str, Task] = {}
        for src, images in sources.items():
            predict[src] = _task("predict", {"n_samples": list(n_list)},
                                 {"model": model_key, "images": images.key},
                                 f"predict[{m.name},{src}]", {"model": m.name, "source": src})
            tasks.append(predict[src])

        for rule in cfg.explain.rules:
            for layer in cfg.explain.layers_for(m.arch):
                explain: dict[str, Task] = {}
                for src, images in sources.items():
                    params = {"rule": rule, "rule_args": _rule_args(rule, cfg), "layer": layer,
                              "n_samples": list(n_list),
                              **_explain_args(cfg, m, arch_layers, layer)}
                    explain[src] = _task(
                        "explain", params, {"model": model_key, "images": images.key},
                        f"explain[{m.name},{src},{rule},L{layer}]",
                        {"model": m.name, "source": src, "rule": rule, "layer": layer})
                    tasks.append(explain[src])
                for a in cfg.attacks:
                    params = {"k": list(cfg.metrics.k), "ties": cfg.metrics.ties,
                              "topk_mode": cfg.metrics.topk_mode, "n_samples": list(n_list)}
                    deps = {"data": data.key, "clean": explain["clean"].key,
                            "adv": explain[a.label].key, "p_clean": predict["clean"].key,
                            "p_adv": predict[a.label].key}
                    coords = {"model": m.name, "attack": a.label, "rule": rule, "layer": layer}
                    if a.transfer_from is not None and a.transfer_from != m.name:
                        coords["source_model"] = a.transfer_from
                    tasks.append(_task(
                        "metrics", params, deps, f"metrics[{m.name},{a.label},{rule},L{layer}]",
                        coords))

    metrics = [t for t in tasks if t.stage == "metrics"]
    pairs = [[m.name, cfg.baseline_for(m.name)] for m in cfg.models
             if cfg.baseline_for(m.name) is not None]
    pairs += [[own, cfg.baseline_for(parent)] for own, parent, _ in cfg.own_models()
              if cfg.baseline_for(parent) is not None]
    tables = [{"label": t.label, **t.coords} for t in metrics]
    tasks.append(_task("compare", {"pairs": pairs, "tables": tables,
                                   "results_schema": RESULTS_SCHEMA},
                       {t.label: t.key for t in metrics}, "compare", {}))
    return Grid(tuple(topological_order(tasks)))
