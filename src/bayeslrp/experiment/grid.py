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
model and attack labels except in ``compare``), so renaming never recomputes. The device
*type* enters the keys of train, select, attack, predict and explain when it is not ``cpu``
(:meth:`Planner.device_params`): CPU keys are unchanged, a CUDA run gets its own artifacts.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bayeslrp.experiment.config import Config, load_config
from bayeslrp.experiment.store import artifact_key

__all__ = ["Grid", "Planner", "Task", "expand_grid", "topological_order"]


@dataclass(frozen=True)
class Task:
    """One unit of work.

    Attributes
    ----------
    stage : str
        Stage name (registered in :data:`bayeslrp.experiment.stages.STAGES`).
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
    from bayeslrp.experiment.stages import STAGES

    rank = {s: r for r, s in enumerate(STAGES.names())}
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


@dataclass
class Planner:
    """The config and the tasks planned so far, handed to each stage's ``plan`` in order.

    Stages record what later stages need in :attr:`shared` (e.g. the model artifact keys);
    :meth:`add` keys and appends a task.
    """

    config: Config
    tasks: list[Task] = field(default_factory=list)
    shared: dict[str, Any] = field(default_factory=dict)
    device_type: str = "cpu"

    def device_params(self) -> dict[str, str]:
        """Key params of a stage whose numbers depend on the device: ``{}`` on the CPU (so
        CPU keys are those of runs made before the device entered keys), else
        ``{"device": type}``, so a run dir resumed on another device recomputes."""
        return {} if self.device_type == "cpu" else {"device": self.device_type}

    def add(self, stage: str, params: dict, deps: Mapping[str, str], label: str,
            coords: Mapping[str, Any] | None = None) -> Task:
        """Key a task of ``stage`` (its registered version included) and append it.

        A stage marked ``device_dependent`` gets :meth:`device_params` in its params.
        """
        from bayeslrp.experiment.stages import STAGES

        if STAGES.get(stage).device_dependent:
            params = {**params, **self.device_params()}
        key = artifact_key(stage, params, deps, version=STAGES.get(stage).version)
        task = Task(stage=stage, key=key, params=params, deps=dict(deps), label=label,
                    coords=dict(coords or {}))
        self.tasks.append(task)
        return task


def expand_grid(config: Config | Any, device_type: str | None = None) -> Grid:
    """Expand a config into its task graph: every registered stage plans its tasks.

    Parameters
    ----------
    config : Config, or anything :func:`load_config` accepts
    device_type : str, optional
        ``cpu`` or ``cuda``: enters the keys of train, select, attack, predict and explain
        when it is not ``cpu``. Default: the type of the config's ``device`` here
        (:func:`bayeslrp.devices.device_type`; ``auto`` resolved on this machine).

    Returns
    -------
    Grid
        Every task, topologically ordered.
    """
    from bayeslrp.experiment.stages import STAGES

    from bayeslrp.devices import device_type as type_of

    cfg = load_config(config)
    planner = Planner(cfg, device_type=device_type or type_of(cfg.device))
    for stage in STAGES:
        stage().plan(planner)
    return Grid(tuple(topological_order(planner.tasks)))
