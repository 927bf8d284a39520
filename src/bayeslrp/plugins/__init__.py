"""Plug-in registries: model methods, attacks (and explainers in :mod:`bayeslrp.explainers`).

Adding a method is one class registered in the registry of its kind; nothing else changes
(``docs/experiments.md``, "Adding a method").
"""
from bayeslrp.plugins.registry import Registry
from bayeslrp.plugins.spec import ConfigIssue

__all__ = ["ConfigIssue", "Registry"]
