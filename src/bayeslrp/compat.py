"""Whether a model and a batch of data fit each other, checked before any forward pass.

The CLI's ``evaluate``, ``attack`` and ``score`` and the library's attacks call these at their
entry points so that a mismatch (an MNIST network on 8×8 digits, a plain ``nn.Module`` where
an :class:`~bayeslrp.ensemble.Ensemble` is expected, float labels) is one line naming both
sides instead of a raw torch error from deep inside a matrix product.

A model trained on one dataset and used on another of the same shape (MNIST and
Fashion-MNIST) is not refused — evaluating transfer is legitimate — but :func:`check_data`
says so in a ``warning:`` line.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from .errors import BayesLRPError, warn

__all__ = ["check_data", "check_model", "model_facts"]


def check_model(ens: Any, name: str = "ens") -> None:
    """Refuse anything that is not an :class:`~bayeslrp.ensemble.Ensemble`.

    Raises
    ------
    BayesLRPError
        For a plain ``nn.Module`` (with how to wrap it) or any other object.
    """
    from .ensemble import Ensemble

    if isinstance(ens, Ensemble):
        return
    if isinstance(ens, torch.nn.Module):
        raise BayesLRPError(f"{name} must be a bayeslrp.Ensemble, got the module "
                            f"{type(ens).__name__}; wrap it with bl.Ensemble.from_module(net)")
    raise BayesLRPError(f"{name} must be a bayeslrp.Ensemble; got {type(ens).__name__}")


def model_facts(ens: Any) -> dict[str, Any]:
    """What the ensemble's architecture spec and metadata say it takes.

    Returns
    -------
    dict
        ``in_shape`` ``(C, H, W)`` and ``n_classes`` (``None`` when the network was not made
        by :func:`bayeslrp.nets.build`), ``dataset`` and ``bounds`` when recorded.
    """
    from . import nets

    facts: dict[str, Any] = {"in_shape": None, "n_classes": None,
                             "dataset": ens.meta.get("dataset"),
                             "bounds": ens.meta.get("bounds")}
    spec = ens.spec
    if spec is not None and spec.get("arch") in nets.ARCHITECTURES:
        defaults = {k: p.default for k, p in
                    inspect.signature(nets._BUILDERS[spec["arch"]]).parameters.items()}
        kwargs = {**defaults, **spec.get("kwargs", {})}
        if kwargs.get("in_shape") is not None:
            facts["in_shape"] = tuple(int(v) for v in kwargs["in_shape"])
        if kwargs.get("n_classes") is not None:
            facts["n_classes"] = int(kwargs["n_classes"])
    return facts


def _bounds_differ(recorded: Any, bounds: tuple[float, float]) -> bool:
    try:
        lo, hi = (float(b) for b in recorded)
    except (TypeError, ValueError):
        return False
    return (lo, hi) != (float(bounds[0]), float(bounds[1]))


def check_data(ens: Any, x: torch.Tensor, y: torch.Tensor | None = None, *,
               dataset: str | None = None, n_classes: int | None = None,
               bounds: tuple[float, float] | None = None) -> None:
    """Refuse data the model cannot take; warn when it was trained on another dataset.

    Parameters
    ----------
    ens : Ensemble
        The model.
    x : Tensor
        Images ``[B, C, H, W]``.
    y : Tensor, optional
        Labels ``[B]``: integer classes below the model's class count.
    dataset : str, optional
        Name of the data's dataset, compared with the one the model records.
    n_classes : int, optional
        Classes of the dataset (more than the model predicts is refused).
    bounds : (float, float), optional
        Pixel range of the data, compared with the one the model records.

    Raises
    ------
    BayesLRPError
        Wrong image shape or channel count, more classes than outputs, float or
        out-of-range labels, another pixel range than the model's.
    """
    check_model(ens)
    facts = model_facts(ens)
    where = f" ({dataset})" if dataset else ""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise BayesLRPError(f"images{where} must be a tensor [B, C, H, W]; got {shape}")
    shape = tuple(int(v) for v in x.shape[1:])
    want = facts["in_shape"]
    if want is not None and shape != want:
        what = "channel count" if shape[1:] == want[1:] else "image size"
        trained = f" ({facts['dataset']})" if facts["dataset"] else ""
        raise BayesLRPError(f"the model takes images of shape {list(want)} (C, H, W) but the "
                            f"data{where} has {list(shape)}: wrong {what}; use the dataset "
                            f"the model was trained on{trained}")
    outputs = facts["n_classes"]
    if outputs is not None and n_classes is not None and n_classes > outputs:
        raise BayesLRPError(f"the data{where} has {n_classes} classes but the model predicts "
                            f"{outputs}")
    if y is not None:
        if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point():
            raise BayesLRPError("labels must be an integer tensor [B] of class indices")
        if outputs is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) >= outputs):
            raise BayesLRPError(f"labels must be classes 0..{outputs - 1} of the model")
    if bounds is not None and facts["bounds"] is not None and _bounds_differ(facts["bounds"],
                                                                              bounds):
        raise BayesLRPError(f"the model was trained on pixels in {list(facts['bounds'])} but "
                            f"the data{where} is in {list(bounds)}")
    if dataset and facts["dataset"] and dataset != facts["dataset"]:
        warn(f"the model was trained on {facts['dataset']} and is used on {dataset}")
