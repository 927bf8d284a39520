"""Architecture factories: ``"package.module:function"`` import paths + JSON keyword arguments.

A user's network is rebuilt from a factory path and its kwargs, never from a pickle: a saved
:class:`~bayeslrp.ensemble.Ensemble` and a YAML ``arch: {factory: ..., kwargs: ...}`` both hold
one. Every failure (bad path, import error, the factory raising or returning something that is
not an ``nn.Module``, kwargs that are not JSON) is one :class:`~bayeslrp.errors.BayesLRPError`.
"""
from __future__ import annotations

import importlib
import json
import re
from typing import Any, Callable

from .errors import BayesLRPError, one_line

__all__ = ["FACTORY_PATTERN", "build_factory", "call_builder", "factory_path", "import_factory",
           "json_kwargs"]

#: ``package.module:function`` (the function may be a dotted attribute, ``mod:Class.make``).
FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def import_factory(path: str) -> Callable[..., Any]:
    """The callable named by ``path`` (``"package.module:function"``).

    Raises
    ------
    BayesLRPError
        When the path is malformed, its module does not import or it names no callable.
    """
    if not isinstance(path, str) or not FACTORY_PATTERN.match(path):
        raise BayesLRPError(f"factory {path!r} is not an import path 'package.module:function'")
    module_name, attr = path.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # any error of the user's module is reported, not raised
        raise BayesLRPError(f"factory {path}: module {module_name!r} does not import "
                            f"({type(exc).__name__}: {one_line(exc)}); install it or put it "
                            f"on PYTHONPATH") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BayesLRPError(f"factory {path}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BayesLRPError(f"factory {path}: {attr!r} is not callable")
    return obj


def json_kwargs(kwargs: dict | None, what: str = "factory kwargs") -> dict[str, Any]:
    """``kwargs`` as plain JSON values (tuples become lists); refused if not JSON-serialisable."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise BayesLRPError(f"{what} must be a mapping of names to values; got {kwargs!r}")
    try:
        return json.loads(json.dumps(kwargs, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise BayesLRPError(f"{what} must be JSON values (numbers, strings, lists, mappings): "
                            f"{one_line(exc)}") from None


def build_factory(path: str, kwargs: dict | None = None, seed: int | None = None):
    """Call the factory ``path`` with ``kwargs``; return the ``nn.Module`` it builds (eval mode).

    ``seed`` seeds the CPU generator for the call (and restores it after); ``None`` uses
    torch's global generator.
    """
    return call_builder(import_factory(path), json_kwargs(kwargs), seed, f"factory {path}")


def call_builder(fn, kwargs: dict, seed: int | None, what: str):
    """``fn(**kwargs)`` under ``seed`` (``None``: torch's global generator), checked to be an
    ``nn.Module`` (returned in eval mode); any exception becomes one line naming ``what``."""
    import torch
    from torch import nn

    try:
        if seed is None:
            net = fn(**kwargs)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                net = fn(**kwargs)
    except Exception as exc:
        raise BayesLRPError(f"{what} raised {type(exc).__name__}: {one_line(exc)}") from None
    if not isinstance(net, nn.Module):
        raise BayesLRPError(f"{what} returned a {type(net).__name__}, not a torch.nn.Module")
    return net.eval()


def factory_path(fn: Callable[..., Any] | str) -> str:
    """The import path of a factory: ``fn`` itself when a string, else ``module:qualname``.

    Raises
    ------
    BayesLRPError
        When a callable cannot be imported back by that path (a lambda, a local function, a
        function of ``__main__``, which a fresh process does not have).
    """
    if isinstance(fn, str):
        import_factory(fn)
        return fn
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    path = f"{module}:{qualname}"
    if module in (None, "__main__") or "<" in qualname or not FACTORY_PATTERN.match(path):
        raise BayesLRPError(f"factory {getattr(fn, '__name__', fn)!r} cannot be imported by "
                            f"another process ({path}); define it in an importable module "
                            f"or pass its path 'package.module:function'")
    if import_factory(path) is not fn:
        raise BayesLRPError(f"factory {path} imports as a different object; pass its path")
    return path
