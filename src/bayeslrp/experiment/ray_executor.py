"""Run experiment tasks as Ray tasks (``--executor ray``), for users who outgrow one machine.

Each task runs :func:`~bayeslrp.experiment.runner.execute_task` in a Ray worker that opens its
own :class:`~bayeslrp.experiment.store.Store` on the run directory, so the run directory must be
on a file system every node sees. The driver hands a task over only when its inputs exist (the
runner's scheduling), and records the manifest itself; artifacts are written atomically by the
workers, exactly as the local executor writes them, so both give the same results.

Ray is an optional dependency: ``pip install 'bayeslrp[ray]'``.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..errors import BayesLRPError
from . import stages as st
from .grid import Task
from .store import Store


def _import_ray():
    try:
        import ray
    except ImportError:
        raise BayesLRPError("the Ray executor needs Ray: pip install 'bayeslrp[ray]'") from None
    return ray


def _run_in_worker(run_dir: str, task: Task, ctx: st.StageContext) -> tuple[str, float]:
    # Imported here so the worker process resolves the runner from its own installation.
    from .runner import execute_task

    return task.key, execute_task(task, Store(Path(run_dir)), ctx)


class RayExecutor:
    """Submit tasks to a Ray cluster; at most ``slots`` run at once.

    Parameters
    ----------
    store : Store
        The driver's store (its root is the shared run directory).
    ctx : StageContext
        Run-time settings passed to every task.
    address : str, optional
        Address of a running cluster (``ray start --head`` prints it); ``None`` starts a
        local cluster on 127.0.0.1, also when the ``RAY_ADDRESS`` environment variable is unset.
    slots : int, optional
        Tasks in flight at once (default: the cluster's CPU count).
    cpus_per_task : float
        CPUs Ray reserves for each task (torch threads are set to match in the worker).
    """

    def __init__(self, store: Store, ctx: st.StageContext, address: str | None = None,
                 slots: int | None = None, cpus_per_task: float = 1.0):
        ray = self._ray = _import_ray()
        address = address or os.environ.get("RAY_ADDRESS")
        self._owns_cluster = not ray.is_initialized()
        if self._owns_cluster:
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(num_cpus=os.cpu_count(), include_dashboard=False,
                             log_to_driver=False, _node_ip_address="127.0.0.1")
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise BayesLRPError(f"cannot reach the Ray cluster at {address}: {exc}") from None
        total = int(ray.cluster_resources().get("CPU", 1))
        self.slots = slots or max(1, int(total // cpus_per_task))
        threads = max(1, int(cpus_per_task))
        self._remote = ray.remote(num_cpus=cpus_per_task)(_with_threads(threads))
        self._run_dir = str(store.root)
        self._ctx = ctx
        self._pending: dict = {}

    def submit(self, task: Task) -> None:
        scratch_ctx = replace(self._ctx, progress=False)
        ref = self._remote.remote(self._run_dir, task, scratch_ctx)
        self._pending[ref] = task

    def wait(self) -> tuple[Task, float]:
        ray = self._ray
        (ref,), _ = ray.wait(list(self._pending), num_returns=1)
        task = self._pending.pop(ref)
        try:
            _, seconds = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            if isinstance(cause, BayesLRPError):
                raise BayesLRPError(str(cause).splitlines()[0]) from None
            raise
        return task, seconds

    def close(self) -> None:
        for ref in list(self._pending):
            self._ray.cancel(ref, force=True)
        self._pending.clear()
        if self._owns_cluster and self._ray.is_initialized():
            self._ray.shutdown()


def _with_threads(threads: int):
    def run(run_dir: str, task: Task, ctx: st.StageContext) -> tuple[str, float]:
        import torch

        torch.set_num_threads(threads)
        return _run_in_worker(run_dir, task, ctx)

    return run
