"""Cost estimates of a grid's tasks: FLOPs from the architecture, seconds from this machine.

Every stage estimates its own tasks (:meth:`Stage.estimate
<bayeslrp.experiment.stages.base.Stage.estimate>`) from :func:`forward_flops` of the model's
architecture, the task's parameters and :func:`machine_rate`, the measured float32 matmul rate
of this machine. Small networks run far below the matmul peak, so each kind of work has an
efficiency factor, calibrated on the demo profile (2-core x86-64, 1 thread, 2026-12-02: the
estimate of the whole demo is within 2× of its measured wall time; ``bayeslrp plan`` prints
both when the run directory has timings).
"""
from __future__ import annotations

import functools
import time
from typing import Any

__all__ = ["EFFICIENCY", "TASK_OVERHEAD_S", "forward_flops", "machine_rate", "seconds"]

#: Fraction of the matmul rate reached, per kind of work (calibrated on the demo profile).
EFFICIENCY = {"train": 0.5, "hmc": 1.0, "attack": 0.3, "saliency": 1.0, "predict": 0.3,
              "explain": 0.25, "test": 0.3}
#: Fixed seconds per task: loading inputs and writing the artifact.
TASK_OVERHEAD_S = {"data": 0.1, "train": 0.3, "select": 0.3, "attack": 0.02, "predict": 0.01,
                   "explain": 0.01, "metrics": 0.015, "compare": 0.5}


@functools.lru_cache(maxsize=None)
def machine_rate(threads: int | None = None) -> float:
    """Measured float32 matmul FLOP/s of this machine (512 × 512, best of a few tries).

    Timed in CPU seconds of this process per thread, not wall seconds: another process's load
    on a shared machine would otherwise lower the rate and inflate every estimate (seen: 12x
    while benchmarks ran beside ``bayeslrp plan``).
    """
    import torch

    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        used = torch.get_num_threads()
        a, b = torch.randn(512, 512), torch.randn(512, 512)
        a @ b  # warm-up
        best = float("inf")
        for _ in range(5):
            start = time.process_time()
            for _ in range(4):
                a @ b
            best = min(best, (time.process_time() - start) / (4 * used))
    finally:
        torch.set_num_threads(old)
    return 2 * 512 ** 3 / best


@functools.lru_cache(maxsize=256)
def _forward_flops(arch: str, kwargs: tuple, shape: tuple, n_classes: int) -> int:
    from bayeslrp import nets

    net = nets.build(arch, seed=0, in_shape=list(shape), n_classes=n_classes, **dict(kwargs))
    return count_flops(net, shape)


def count_flops(net, shape) -> int:
    """FLOPs of one image's forward pass of ``net`` (Linear and Conv2d layers)."""
    import torch
    from torch import nn

    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Linear):
            total += 2 * module.in_features * module.out_features
        elif isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += (2 * module.in_channels // module.groups * kh * kw * module.out_channels
                      * output.shape[-1] * output.shape[-2])

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            dtype = next((p.dtype for p in net.parameters()), torch.float32)
            net(torch.zeros((1, *shape), dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    return total


def forward_flops(arch: str, arch_kwargs: dict[str, Any], shape, n_classes: int = 10) -> int:
    """FLOPs of one image's forward pass (Linear 2·in·out, Conv 2·Cin·k²·Cout·Hout·Wout)."""
    kwargs = tuple(sorted((k, v) for k, v in arch_kwargs.items() if v is not None))
    return _forward_flops(arch, kwargs, tuple(shape), int(n_classes))


def seconds(flops: float, kind: str, stage: str) -> float:
    """Estimated seconds of ``flops`` of work of ``kind`` in a task of ``stage``."""
    return TASK_OVERHEAD_S.get(stage, 0.01) + flops / (machine_rate() * EFFICIENCY[kind])
