"""Where tensors are computed: validate a ``--device`` value, set torch's determinism flags.

>>> from bayeslrp.devices import resolve_device, configure_torch
>>> resolve_device("cpu")
device(type='cpu')

:func:`resolve_device` is the one validator of every ``--device`` and config ``device``
(``cpu``, ``cuda``, ``cuda:N``, ``auto``; ``mps`` is refused, see below). :func:`configure_torch`
is called by the runner, the CLI and every Ray worker before any tensor is made on the device:

* TF32 off for matmuls and cuDNN convolutions (its 10-bit mantissa would enter training,
  attacks and LRP's transposed convolutions, then be divided by ``z`` in the ε rule);
* cuDNN deterministic, no benchmark (no run-time choice among algorithms);
* on CUDA, ``torch.use_deterministic_algorithms(True)`` with ``CUBLAS_WORKSPACE_CONFIG`` set
  (cuBLAS reads it when CUDA starts, so it is set here, before, and in every Ray worker's
  environment). CPU kernels are already deterministic; there the flag is left as torch has it.

``mps`` is refused with one line: the predict stage, HMC's Welford moments and its potential
work in float64, which MPS does not have (docs/gpu.md).
"""
from __future__ import annotations

import os
import re
from typing import Any

import torch

from bayeslrp.errors import BayesLRPError

__all__ = ["CUBLAS_WORKSPACE", "DEVICE_CHOICES", "GPU_BUDGET_SHARE", "configure_torch",
           "device_type", "memory_budget", "resolve_device", "torch_facts"]

#: cuBLAS workspace setting that makes its reductions deterministic (CUDA docs, "Results
#: reproducibility"); 8 buffers of 4 MiB.
CUBLAS_WORKSPACE = ":4096:8"
DEVICE_CHOICES = "cpu, cuda, cuda:N or auto"
#: On CUDA a chunk of work (activations of a forward pass, an attack's graph, an LRP chunk) may
#: use this share of the device's memory instead of a budget sized for a CPU.
GPU_BUDGET_SHARE = 1 / 8
_SPEC = re.compile(r"^(cpu|auto|mps|cuda(:[0-9]+)?)$")


def _check_spec(spec: str) -> str:
    text = str(spec).strip().lower()
    if not _SPEC.match(text):
        raise BayesLRPError(f"unknown device {spec!r}; use {DEVICE_CHOICES}")
    if text == "mps":
        raise BayesLRPError("device mps is not supported: the predict stage and HMC need "
                            "float64, which MPS lacks; use --device cpu")
    return text


def device_type(spec: str) -> str:
    """The device type a spec runs on here: ``cpu`` or ``cuda`` (``auto`` resolved).

    Raises
    ------
    BayesLRPError
        For an unknown spec or ``mps``; absence of CUDA is not checked (see
        :func:`resolve_device`).
    """
    text = _check_spec(spec)
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if text.startswith("cuda") else "cpu"


def resolve_device(spec: str | torch.device) -> torch.device:
    """The ``torch.device`` of a ``--device`` value, checked against this machine.

    Parameters
    ----------
    spec : str or torch.device
        ``cpu``, ``cuda``, ``cuda:N``, or ``auto`` (``cuda`` when CUDA is available, else
        ``cpu``).

    Returns
    -------
    torch.device

    Raises
    ------
    BayesLRPError
        One line: an unknown value, ``mps``, CUDA requested without CUDA, or ``cuda:N`` with
        ``N`` at least the number of CUDA devices.
    """
    text = _check_spec(str(spec))
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BayesLRPError(f"device {text} requested but CUDA is not available; use "
                                f"--device cpu")
        index = int(text.split(":")[1]) if ":" in text else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise BayesLRPError(f"device {text} requested but only {count} CUDA device(s) "
                                f"exist (cuda:0 .. cuda:{count - 1})")
    return torch.device(text)


def memory_budget(device: str | torch.device, default: int) -> int:
    """Bytes one chunk may use on ``device``: ``default`` on the CPU, on CUDA at least
    :data:`GPU_BUDGET_SHARE` of the device's memory (fewer, larger kernels keep a GPU busy)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return int(default)
    total = torch.cuda.get_device_properties(dev).total_memory
    return max(int(default), int(total * GPU_BUDGET_SHARE))


def configure_torch(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Set torch's determinism flags for work on ``device``; return them (for the manifest).

    Idempotent. Does not start CUDA: called with a CUDA device before the first CUDA tensor,
    ``CUBLAS_WORKSPACE_CONFIG`` is in place when cuBLAS reads it.
    """
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    _tf32_off()
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        if os.environ["CUBLAS_WORKSPACE_CONFIG"] not in (CUBLAS_WORKSPACE, ":16:8"):
            raise BayesLRPError(f"CUBLAS_WORKSPACE_CONFIG={os.environ['CUBLAS_WORKSPACE_CONFIG']}"
                                f" does not make cuBLAS deterministic; unset it or set "
                                f"{CUBLAS_WORKSPACE}")
        torch.use_deterministic_algorithms(True)
    return torch_facts(dev)


def _tf32_off() -> None:
    # torch >= 2.9 has per-backend fp32 precision; mixing it with the legacy allow_tf32 flags
    # is an error there, so only the new one is used when it exists.
    if hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cudnn.conv,
                                                          "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        torch.backends.cudnn.rnn.fp32_precision = "ieee"
    else:  # pragma: no cover - older torch
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def _tf32_state() -> dict[str, bool]:
    """Whether TF32 may be used by matmuls and by cuDNN convolutions, from torch's state."""
    if hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cudnn.conv,
                                                          "fp32_precision"):
        matmul = torch.backends.cuda.matmul.fp32_precision
        conv = torch.backends.cudnn.conv.fp32_precision
        if conv == "none":
            conv = torch.backends.cudnn.fp32_precision
        if conv == "none":
            conv = torch.backends.fp32_precision
        return {"tf32_matmul": matmul == "tf32", "tf32_cudnn": conv in ("tf32", "none")}
    return {"tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),  # pragma: no cover
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32)}


def torch_facts(device: str | torch.device) -> dict[str, Any]:
    """Device name, CUDA/cuDNN versions and the determinism flags now in force."""
    dev = torch.device(device)
    facts: dict[str, Any] = {
        "device": str(dev), "device_type": dev.type,
        "device_name": "cpu" if dev.type == "cpu" else None,
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        **_tf32_state(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
    if dev.type == "cuda" and torch.cuda.is_available():
        facts["device_name"] = torch.cuda.get_device_name(dev)
    return facts
