"""Run experiment tasks as Ray tasks (``--executor ray``), for users who outgrow one machine.

Each task runs :func:`~bayeslrp.experiment.runner.execute_task` in a Ray worker that opens its
own :class:`~bayeslrp.experiment.store.Store` on the run directory, so the run directory must be
on a file system every node sees. The driver hands a task over only when its inputs exist (the
runner's scheduling), and records the manifest itself; artifacts are written atomically by the
workers, exactly as the local executor writes them, so both give the same results.

With a CUDA device every task asks Ray for ``gpus_per_task`` GPUs (:func:`task_options`), at
most as many tasks run at once as the cluster's GPUs allow (:func:`slot_count`), and the worker
maps ``cuda`` / ``cuda:N`` to the GPU Ray assigned it (Ray sets ``CUDA_VISIBLE_DEVICES``, so
that GPU is ``cuda:0`` inside the worker; the driver's index means nothing there). Each worker
calls :func:`~bayeslrp.devices.configure_torch` before it touches a tensor, and gets
``CUBLAS_WORKSPACE_CONFIG`` through its runtime environment.

Ray is an optional dependency: ``pip install 'bayeslrp[ray]'``.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..devices import CUBLAS_WORKSPACE
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


def task_options(device: str, cpus_per_task: float = 1.0,
                 gpus_per_task: float = 1.0) -> dict:
    """Ray resource options of every task of a run on ``device`` (``cpu``, ``cuda[:N]``).

    A CUDA task asks for ``gpus_per_task`` GPUs, so Ray makes them visible to it (and only
    them), and gets ``CUBLAS_WORKSPACE_CONFIG`` before CUDA starts in its worker.
    """
    options: dict = {"num_cpus": cpus_per_task}
    if device.split(":")[0] == "cuda":
        if not 0 < gpus_per_task:
            raise BayesLRPError(f"gpus_per_task must be > 0; got {gpus_per_task}")
        options["num_gpus"] = gpus_per_task
        options["runtime_env"] = {"env_vars": {"CUBLAS_WORKSPACE_CONFIG": CUBLAS_WORKSPACE}}
    return options


def slot_count(resources: dict, device: str, cpus_per_task: float = 1.0,
               gpus_per_task: float = 1.0, slots: int | None = None) -> int:
    """Tasks in flight at once: ``slots`` if given, else what the CPUs allow, capped by GPUs.

    Raises
    ------
    BayesLRPError
        A CUDA run on a cluster without GPUs.
    """
    by_cpu = max(1, int(resources.get("CPU", 1) // cpus_per_task))
    if device.split(":")[0] != "cuda":
        return slots or by_cpu
    by_gpu = int(resources.get("GPU", 0) // gpus_per_task)
    if by_gpu < 1:
        raise BayesLRPError(f"device {device} requested but the Ray cluster has "
                            f"{resources.get('GPU', 0):g} GPU(s); use --device cpu")
    return min(slots or by_cpu, by_gpu)


def worker_device(device: str, gpu_ids: list) -> str:
    """The device a task runs on inside its Ray worker: its assigned GPU for ``cuda[:N]``."""
    if device.split(":")[0] != "cuda":
        return device
    if not gpu_ids:
        raise BayesLRPError(f"a task for device {device} was given no GPU by Ray; check the "
                            f"cluster's GPU resources")
    return "cuda:0"  # Ray sets CUDA_VISIBLE_DEVICES to the assigned GPU(s)


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
        Tasks in flight at once (default: the cluster's CPU count; on CUDA at most its GPUs
        over ``gpus_per_task``).
    cpus_per_task : float
        CPUs Ray reserves for each task (torch threads are set to match in the worker).
    gpus_per_task : float
        GPUs Ray reserves for each task of a CUDA run (a fraction shares a GPU).
    """

    def __init__(self, store: Store, ctx: st.StageContext, address: str | None = None,
                 slots: int | None = None, cpus_per_task: float = 1.0,
                 gpus_per_task: float = 1.0):
        ray = self._ray = _import_ray()
        self._pending: dict = {}
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
        try:
            self.slots = slot_count(ray.cluster_resources(), ctx.device, cpus_per_task,
                                    gpus_per_task, slots)
        except BayesLRPError:
            self.close()
            raise
        threads = max(1, int(cpus_per_task))
        self.options = task_options(ctx.device, cpus_per_task, gpus_per_task)
        self._remote = ray.remote(**self.options)(_with_threads(threads))
        self._run_dir = str(store.root)
        self._ctx = ctx

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
        import ray
        import torch

        from ..devices import configure_torch

        torch.set_num_threads(threads)
        device = worker_device(ctx.device, ray.get_gpu_ids())
        configure_torch(device)
        return _run_in_worker(run_dir, task, replace(ctx, device=device))

    return run
