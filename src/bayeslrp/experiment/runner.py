"""Run an experiment grid end to end: validate, execute the stages, write the run directory.

>>> from bayeslrp.experiment.runner import run_experiment
>>> result = run_experiment("my.yaml", "runs/my")          # doctest: +SKIP

:func:`run_experiment` validates the configs and the plan *before* anything is written
(:func:`plan_run`: ``load_config`` is the only gate, then each stage's ``preflight``), expands
the grid, runs every task whose artifact is not already in the store (:func:`run_tasks`) and
lets every stage publish what it owns into the run directory (:func:`finalize`)::

    RUN_DIR/
      artifacts/<stage>/<key>/      every stage's output (content-addressed, verified)
      config.yaml                   the resolved config
      manifest.json                 versions, machine, seeds, per-task timings (every run)
      ...                           what the stages publish (docs/experiments.md)

The runner knows no stage by name: stages are looked up in
:data:`~bayeslrp.experiment.stages.STAGES`.

Executors: tasks are handed to an executor once all their inputs exist. The executor runs
them and reports each finished task; only the driving process writes the manifest.
``"local"`` runs them in this process, in order; ``"ray"``
(:class:`~bayeslrp.experiment.ray_executor.RayExecutor`) on a Ray cluster. An executor is a
class with ``slots``, ``submit(task)``, ``wait() -> (task, seconds)`` and ``close()``,
registered in :data:`EXECUTORS`; its workers call :func:`execute_task` with a :class:`Store`
on the same run directory.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment.config import Config, config_key, dump_config, load_config, read_source
from bayeslrp.experiment.grid import Grid, Task, expand_grid
from bayeslrp.experiment.stage_bars import StageBars
from bayeslrp.experiment.stages import STAGES, ArtifactRef, StageContext
from bayeslrp.experiment.store import Store
from bayeslrp.experiment.lock import LOCK_NAME, RunDirLock
from bayeslrp.fileio import atomic_write_text, check_writable, fs_error, make_dirs

__all__ = [
    "EXECUTORS", "Executor", "LocalExecutor", "Part", "Plan", "RunResult", "data_problem",
    "execute_task", "finalize", "load_configs", "plan_run", "resolve_device", "run_experiment",
    "run_tasks",
]

# --------------------------------------------------------------------------- planning


def resolve_device(device: str) -> str:
    """:func:`bayeslrp.devices.resolve_device` as a string (``auto`` → ``cuda`` or ``cpu``)."""
    from bayeslrp.devices import resolve_device as resolve

    return str(resolve(device))


_DOC_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)


def load_configs(source: Any) -> list[Config]:
    """One or more configs: YAML documents separated by ``---`` lines, or a list of configs.

    A profile (``reproduce --profile paper``) needs one document per dataset; all of them
    run into the same run directory and share its results table, so model names must be
    unique across documents.

    Raises
    ------
    BayesLRPError
        The first problem, prefixed with ``document N:`` when there are several documents.
    """
    if isinstance(source, (list, tuple)):
        configs = [load_config(c) for c in source]
    elif isinstance(source, (Config, dict)):
        configs = [load_config(source)]
    else:
        text = read_source(source)
        docs = [d for d in _DOC_SEPARATOR.split(text)
                if any(line.strip() and not line.lstrip().startswith("#")
                       for line in d.splitlines())]
        if len(docs) <= 1:
            configs = [load_config(text)]
        else:
            configs = []
            for i, doc in enumerate(docs, start=1):
                try:
                    configs.append(load_config(doc))
                except BayesLRPError as exc:
                    raise BayesLRPError(f"document {i}: {exc}") from None
    if not configs:
        raise BayesLRPError("config error at (top level): the config is empty")
    seen: dict[str, int] = {}
    for i, cfg in enumerate(configs, start=1):
        for m in cfg.models:
            if m.name in seen and len(configs) > 1:
                raise BayesLRPError(f"document {i}: config error at models: model name "
                                    f"{m.name!r} is also used in document {seen[m.name]}; names "
                                    f"must be unique across documents")
            seen.setdefault(m.name, i)
    return configs


def data_problem(cfg: Config) -> str | None:
    """Why the config cannot run on this machine (a stage's preflight), or None."""
    for stage in STAGES:
        problem = stage().preflight(cfg)
        if problem is not None:
            return problem
    return None


@dataclass(frozen=True)
class Part:
    """One validated config of a plan, its task grid and its device."""

    config: Config
    grid: Grid
    device: str


@dataclass(frozen=True)
class Plan:
    """A validated experiment: one part per config document, the run directory."""

    parts: tuple[Part, ...]
    run_dir: Path
    skipped: tuple[str, ...] = ()

    @property
    def configs(self) -> list[Config]:
        return [p.config for p in self.parts]


def _check_run_dir(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise BayesLRPError(f"run directory {run_dir} exists and is not a directory; choose "
                            f"another --run-dir")
    check_writable(run_dir, kind="dir", what="--run-dir")
    if run_dir.is_dir():
        entries = {p.name for p in run_dir.iterdir()}
        if entries and not entries & {"artifacts", "manifest.json", LOCK_NAME}:
            raise BayesLRPError(f"{run_dir} is not empty and is not a bayeslrp run directory; "
                                f"choose another --run-dir")


def plan_run(config: Any, run_dir: str | os.PathLike, device: str | None = None, *,
             skip_unavailable: bool = False, local_device: bool = True) -> Plan:
    """Validate everything without writing anything.

    Parameters
    ----------
    config : path, YAML text (one or more documents), mapping, Config, or a list of these
    run_dir : path
    device : str, optional
        Overrides each config's ``device``.
    skip_unavailable : bool
        Leave out documents whose dataset is not available (``Plan.skipped`` says which);
        otherwise missing data is an error.
    local_device : bool
        The tasks run on this machine: a CUDA device must exist here. ``False`` (the Ray
        executor, whose workers may have GPUs the driver lacks): only the value is checked,
        ``auto`` is resolved here for the keys, and the executor checks the cluster.

    Raises
    ------
    BayesLRPError
        On any problem with a config, the plan, the data, the device or the run directory.
    """
    configs = load_configs(config)
    if device is not None:
        configs = [load_config({**c.model_dump(mode="json"), "device": device})
                   for c in configs]
    parts, skipped = [], []
    for cfg in configs:
        problem = data_problem(cfg)
        if problem is not None:
            if not skip_unavailable:
                raise BayesLRPError(problem)
            skipped.append(f"{cfg.name} ({cfg.data.name}): {problem}")
            continue
        if local_device:
            dev = resolve_device(cfg.device)
        else:
            from bayeslrp.devices import device_type

            dev = cfg.device if cfg.device != "auto" else device_type("auto")
            device_type(dev)
        parts.append(Part(cfg, expand_grid(cfg, device_type=dev.split(":")[0]), dev))
    if not parts:
        raise BayesLRPError(f"no config can run: {'; '.join(skipped)}")
    path = Path(run_dir)
    _check_run_dir(path)
    return Plan(tuple(parts), path, tuple(skipped))


# --------------------------------------------------------------------------- executing


def execute_task(task: Task, store: Store, ctx: StageContext) -> float:
    """Run one task's stage function and store its artifact; return the seconds it took.

    The inputs must already be in ``store``. Safe to call from a worker process that opened
    its own :class:`Store` on the run directory: the artifact is written atomically.
    """
    stage = STAGES.get(task.stage)()
    keyed, here = task.params.get("device", "cpu"), ctx.device.split(":")[0]
    if stage.device_dependent and keyed != here:
        raise BayesLRPError(f"{task.label} is keyed for device {keyed} but would run on {here}; "
                            f"plan and run on the same device type")
    inputs = {role: ArtifactRef(store, key) for role, key in task.deps.items()}
    for role, ref in inputs.items():
        if not store.has(ref.key):
            raise BayesLRPError(f"{task.label}: input {role} ({ref.key[:12]}…) is missing; rerun "
                                f"the experiment")
    scratch = store.root / "work" / task.stage / task.key[:16]
    started = time.perf_counter()
    out = stage.run(task.params, inputs, replace(ctx, scratch=scratch))
    store.put(task.key, out.files, out.meta, stage=task.stage)
    seconds = time.perf_counter() - started
    shutil.rmtree(scratch, ignore_errors=True)
    return seconds


class Executor(Protocol):
    """Runs tasks whose inputs exist; see the module docstring."""

    slots: int

    def submit(self, task: Task) -> None: ...

    def wait(self) -> tuple[Task, float]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Runs each submitted task in this process, one at a time, in submission order."""

    slots = 1

    def __init__(self, store: Store, ctx: StageContext):
        self.store, self.ctx = store, ctx
        self._queue: deque[Task] = deque()

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    def wait(self) -> tuple[Task, float]:
        task = self._queue.popleft()
        return task, execute_task(task, self.store, self.ctx)

    def close(self) -> None:
        self._queue.clear()


#: Executor name → class taking ``(store, ctx)``, or ``"module:Class"`` imported on first use.
EXECUTORS: dict[str, type | str] = {
    "local": LocalExecutor,
    "ray": "bayeslrp.experiment.ray_executor:RayExecutor",
}


def _executor_class(name: str) -> type:
    if name not in EXECUTORS:
        raise BayesLRPError(f"unknown executor {name!r}; choose {', '.join(EXECUTORS)}")
    cls = EXECUTORS[name]
    if isinstance(cls, str):
        module, attr = cls.split(":")
        cls = getattr(importlib.import_module(module), attr)
    return cls


@dataclass
class TaskStats:
    """What :func:`run_tasks` did: labels computed (with seconds) and reused."""

    computed: list[tuple[str, float]] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


def run_tasks(tasks: Iterable[Task], store: Store, ctx: StageContext,
              executor: str | Executor = "local", progress: bool = False) -> TaskStats:
    """Make sure every task's artifact is in ``store``.

    Tasks whose artifact exists (and verifies) are reused; the others are handed to the
    executor as soon as all their inputs exist, in the given (topological) order. Tasks that
    share a key are computed once. Every task is recorded in the manifest as computed (with
    its seconds) or reused.

    Parameters
    ----------
    tasks : iterable of Task
        In topological order (as :attr:`Grid.tasks`).
    store : Store
    ctx : StageContext
    executor : str or Executor
        A name in :data:`EXECUTORS` or an executor object.
    progress : bool
        Show one progress bar per stage on stderr.
    """
    tasks = list(tasks)
    runner = _executor_class(executor)(store, ctx) if isinstance(executor, str) else executor
    stats = TaskStats()
    bars = StageBars(tasks, progress)
    done: set[str] = set()
    in_flight: dict[str, Task] = {}
    remaining: deque[Task] = deque()
    try:
        for t in tasks:  # the store is asked once per task: what is absent now is ours to make
            if t.key in done or store.has(t.key):
                done.add(t.key)
                store.record_stage(t.label, t.stage, t.key, computed=False, seconds=0.0)
                stats.reused.append(t.label)
                bars.done(t.stage)
            else:
                remaining.append(t)
        while remaining or in_flight:
            blocked: deque[Task] = deque()
            while remaining:
                t = remaining.popleft()
                if t.key in done:  # made by an earlier task with the same key
                    store.record_stage(t.label, t.stage, t.key, computed=False, seconds=0.0)
                    stats.reused.append(t.label)
                    bars.done(t.stage)
                elif (t.key not in in_flight and len(in_flight) < runner.slots
                      and all(d in done for d in t.deps.values())):
                    bars.start(t.stage)
                    runner.submit(t)
                    in_flight[t.key] = t
                else:
                    blocked.append(t)
            remaining = blocked
            if in_flight:
                task, seconds = runner.wait()
                in_flight.pop(task.key)
                done.add(task.key)
                store.record_stage(task.label, task.stage, task.key, computed=True,
                                   seconds=seconds)
                stats.computed.append((task.label, seconds))
                bars.done(task.stage, seconds)
            elif remaining:
                stuck = ", ".join(t.label for t in list(remaining)[:3])
                raise BayesLRPError(f"tasks wait for inputs that no task makes: {stuck}")
    finally:
        bars.close()
        runner.close()
    return stats


# --------------------------------------------------------------------------- run directory


def finalize(plan: Plan, store: Store) -> dict[str, Path]:
    """Write the run directory's summary files from the stored artifacts.

    ``config.yaml`` (every document), then what each stage publishes
    (:meth:`~bayeslrp.experiment.stages.base.Stage.publish`: the results tables, models.json,
    heatmap files for the figures).
    """
    run_dir = plan.run_dir
    paths: dict[str, Path] = {}
    text = "---\n".join(dump_config(p.config) for p in plan.parts)
    paths["config.yaml"] = atomic_write_text(run_dir / "config.yaml", text)
    for stage in STAGES:
        paths.update(stage().publish(plan.parts, store, run_dir))
    work = run_dir / "work"
    if work.is_dir():  # scratch directories of finished stages are removed; drop empty parents
        for sub in sorted(work.iterdir()):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            work.rmdir()
    return paths


@dataclass
class RunResult:
    """Where a run wrote its results and what it computed."""

    run_dir: Path
    results: Path
    computed: list[tuple[str, float]]
    reused: list[str]
    seconds: float
    plan: Plan = field(repr=False)


def run_experiment(config: Any, run_dir: str | os.PathLike, *, device: str | None = None,
                   executor: str | Executor = "local", progress: bool = False,
                   skip_unavailable: bool = False, lock_wait: float | None = None,
                   on_finish: Callable[[Path], Any] | None = None) -> RunResult:
    """Validate, run (resuming from any stored artifacts) and write the run directory.

    Parameters
    ----------
    config : path, YAML text (one or more documents), mapping, Config, or a list of these
    run_dir : path
        Created if needed; a directory of an earlier run (of any config) is reused: every
        artifact whose key matches is not computed again.
    device : str, optional
        Overrides the configs' device.
    executor : str or Executor
    progress : bool
        Progress bars per stage on stderr.
    skip_unavailable : bool
        Leave out documents whose dataset is not available instead of failing.
    lock_wait : float or None
        Another run holding the run directory (:class:`~bayeslrp.experiment.lock.RunDirLock`)
        is waited for this many seconds (``None``: as long as it takes; ``0``: stop at once).
    on_finish : callable, optional
        ``on_finish(run_dir)`` runs under the lock before the run is recorded ``finished``
        (the CLI draws the figures and writes the report there), so a run killed meanwhile
        is not recorded as finished.

    Returns
    -------
    RunResult

    Raises
    ------
    BayesLRPError
        For user errors; problems with the config and an unwritable run directory are found
        before anything is written. A run directory that stops being writable mid-run is a
        :class:`~bayeslrp.errors.FileSystemError`; the run is recorded ``interrupted``.
    """
    started = time.perf_counter()
    plan = plan_run(config, run_dir, device, skip_unavailable=skip_unavailable,
                    local_device=executor == "local" or not isinstance(executor, str))
    if isinstance(executor, str):  # an unknown name or a missing Ray fails before any write
        _executor_class(executor)
        if executor == "ray" and importlib.util.find_spec("ray") is None:
            raise BayesLRPError("the Ray executor needs Ray: pip install 'bayeslrp[ray]'")
    make_dirs(plan.run_dir)
    with RunDirLock(plan.run_dir, wait=lock_wait):
        store = Store(plan.run_dir)
        store.clean_tmp(older_than_s=0.0)  # nobody else writes here while we hold the lock
        _begin(plan, store)
        status = "failed"
        try:
            computed, reused, published = _execute(plan, store, executor, progress)
            if on_finish is not None:
                on_finish(plan.run_dir)
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except OSError as exc:  # the run directory went away or read-only under us
            status = "interrupted"
            raise fs_error(exc, plan.run_dir) from None
        finally:
            store.end_run(status)
    return RunResult(plan.run_dir, published.get("results"), computed, reused,
                     time.perf_counter() - started, plan)


def _begin(plan: Plan, store: Store) -> None:
    """Open the run's manifest entry: config key, seeds, devices, torch flags."""
    from bayeslrp.devices import configure_torch

    torch_flags = [configure_torch(p.device) for p in plan.parts]
    seeds = {f"{p.config.name}.seed": p.config.seed for p in plan.parts}
    for p in plan.parts:
        seeds.update({f"model.{m.name}": (m.seed if m.seed is not None else p.config.seed)
                      for m in p.config.models})
    keys = [config_key(p.config) for p in plan.parts]
    store.begin_run(config_key=keys[0] if len(keys) == 1 else config_key(keys), seeds=seeds,
                    extra={"names": [p.config.name for p in plan.parts],
                           "devices": [p.device for p in plan.parts],
                           "torch": torch_flags,
                           "tasks": sum(len(p.grid) for p in plan.parts),
                           "skipped": list(plan.skipped)})


def _execute(plan: Plan, store: Store, executor, progress: bool):
    """Every part's tasks, then :func:`finalize`: ``(computed, reused, published)``."""
    computed: list[tuple[str, float]] = []
    reused: list[str] = []
    for part in plan.parts:
        ctx = StageContext(device=part.device, data_dir=part.config.data.data_dir)
        stats = run_tasks(part.grid.tasks, store, ctx, executor=executor, progress=progress)
        computed.extend(stats.computed)
        reused.extend(stats.reused)
    return computed, reused, finalize(plan, store)
