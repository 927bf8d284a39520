"""The ``--device`` option of every command and its one validation (:mod:`bayeslrp.devices`)."""
from __future__ import annotations

from typing import Optional

import typer

DeviceOpt = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto (cuda when "
                                                 "available).")


def use_device(spec: Optional[str]):
    """The validated ``torch.device`` of ``--device``, with torch's determinism flags set.

    Raises
    ------
    BayesLRPError
        One line for an unknown value, ``mps``, or a CUDA device that is not there.
    """
    from ..devices import configure_torch, resolve_device

    device = resolve_device("cpu" if spec is None else spec)
    configure_torch(device)
    return device
