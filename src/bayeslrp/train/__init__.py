"""Training: each method returns an :class:`~bayeslrp.ensemble.Ensemble`."""
from __future__ import annotations

import importlib

from .adversarial import adversarial
from .deterministic import deterministic

__all__ = ["deterministic", "adversarial", "vi", "hmc"]


def __getattr__(name: str):
    # vi and hmc live in their own modules and are imported on first use.
    if name in ("vi", "hmc"):
        return getattr(importlib.import_module(f".{name}", __name__), name)
    raise AttributeError(f"module 'bayeslrp.train' has no attribute {name!r}")
