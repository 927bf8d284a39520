"""The check shared by model methods built on another model of the config (``init_model``)."""
from __future__ import annotations

from typing import Any

from bayeslrp.plugins.spec import ConfigIssue

__all__ = ["check_init_model"]


def check_init_model(spec: Any, config: Any, methods: tuple[str, ...], what: str) -> None:
    """``spec.init_model`` names a model of ``config`` trained by one of ``methods`` with the
    same architecture (arch, hidden, channels, kwargs); else a :class:`ConfigIssue`."""
    ref = next((m for m in config.models if m.name == spec.init_model), None)
    if ref is None:
        raise ConfigIssue(("init_model",), f"no model named {spec.init_model!r}")
    if ref.method not in methods:
        raise ConfigIssue(("init_model",), f"must name a {' or '.join(methods)} model ({what}); "
                                           f"{spec.init_model!r} is {ref.method}")
    if (ref.arch, ref.hidden, ref.channels, ref.arch_kwargs) != (
            spec.arch, spec.hidden, spec.channels, spec.arch_kwargs):
        raise ConfigIssue(("init_model",), f"{spec.init_model!r} has a different "
                                           f"architecture (arch, hidden, channels, kwargs)")
