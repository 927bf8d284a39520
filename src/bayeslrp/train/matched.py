"""A deterministic net early-stopped at another model's test accuracy (issue 22 control).

A Bayesian model's robustness gain may come from a smoother, less accurate function rather
than from Bayes; the control is a det net of the same recipe stopped when it is as accurate.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..ensemble import Ensemble
from ..errors import BayesLRPError
from .loop import fit, training_arrays
from .options import TrainOptions
from .preflight import preflight

__all__ = ["MATCH_TOLERANCE", "accuracy_matched"]

#: Default tolerance of the reached test accuracy: 0.5 percentage points.
MATCH_TOLERANCE = 0.005


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            correct += int((model(xb).argmax(-1).cpu() == y[start:start + batch_size].cpu()).sum())
    model.train(was_training)
    return correct / x.shape[0]


def accuracy_matched(net: nn.Module, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
                     y_test: torch.Tensor, *, target: float, tolerance: float = MATCH_TOLERANCE,
                     check_every: int = 1, epochs: int = 15, lr: float = 1e-3,
                     batch_size: int = 128, seed: int = 0, progress: bool = True,
                     device: str | torch.device | None = None,
                     options: TrainOptions | None = None) -> Ensemble:
    """Det training (:func:`bayeslrp.train.deterministic`'s recipe) stopped at ``target``
    test accuracy.

    The test accuracy on ``(x_test, y_test)`` is measured before training and every
    ``check_every`` optimiser steps; training stops at the first check that reaches
    ``target``, and the net kept is the checked one closest to ``target`` (normally that
    check or the one before it, which bracket the target). When
    that check overshoots (early in training one step can move the accuracy by more than the
    tolerance), the weights are bisected on the segment from the previous check to it,
    ``w(t) = (1 − t)·w_prev + t·w_next`` (a partial last step, ``partial_step`` = t), until
    the accuracy is within tolerance (at most 20 halvings). If training ends first
    (``target`` above what the recipe reaches in ``epochs``), the closest check is kept. Whether the kept accuracy is within
    ``tolerance`` is recorded in ``meta["matched"]`` (``within_tolerance``), never assumed.

    Parameters
    ----------
    net, x, y, epochs, lr, batch_size, seed, progress, device, options
        As in :func:`bayeslrp.train.deterministic` (same seed: same start, same batch order).
    x_test, y_test : Tensor
        The images whose accuracy is matched (the run's test split).
    target : float
        The accuracy to match, in [0, 1].
    tolerance : float
        Accepted ``|reached − target|`` (default 0.005 = 0.5 percentage points).
    check_every : int
        Optimiser steps between accuracy checks.

    Returns
    -------
    Ensemble
        S = 1; ``meta["matched"]``: ``target_accuracy``, ``reached_accuracy``,
        ``tolerance``, ``within_tolerance``, ``steps`` (of the kept net), ``check_every``.
    """
    if not 0.0 <= float(target) <= 1.0:
        raise BayesLRPError(f"target accuracy must lie in [0, 1]; got {target}")
    if tolerance <= 0 or check_every < 1:
        raise BayesLRPError("tolerance must be > 0 and check_every >= 1")
    x, y = training_arrays(x, y)
    preflight(net, x, y, device)
    device = torch.device(device or x.device)
    x_test = x_test.to(device)
    checks: list[tuple[int, float]] = []
    best: dict = {}
    last: dict = {}  # the check before the latest: the start of the bisected segment

    def consider(model: nn.Module, steps: int) -> bool:
        acc = _accuracy(model, x_test, y_test)
        checks.append((steps, acc))
        state = copy.deepcopy(model.state_dict())
        if not best or abs(acc - target) < abs(best["accuracy"] - target):
            best.update(accuracy=acc, steps=steps, state=state)
        reached = acc >= target
        if not reached:
            last.update(accuracy=acc, state=state)
        else:
            last["end"] = state
        return reached

    start = copy.deepcopy(net).to(device)
    if consider(start, 0):
        model = start
    else:
        model, _ = fit(net, x, y, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                       progress=progress, description="train det (matched)", device=device,
                       options=options,
                       on_step=lambda m, s: s % check_every == 0 and consider(m, s))
        if abs(best["accuracy"] - target) > tolerance and "end" in last:
            _bisect(model, last["state"], last["end"], x_test, y_test, target, tolerance, best)
        model.load_state_dict(best["state"])
    model.eval()
    matched = {"target_accuracy": float(target), "reached_accuracy": best["accuracy"],
               "tolerance": float(tolerance),
               "within_tolerance": abs(best["accuracy"] - target) <= tolerance,
               "steps": best["steps"], "partial_step": best.get("fraction"),
               "check_every": int(check_every),
               "checks": len(checks)}
    if not matched["within_tolerance"]:
        warnings.warn(f"accuracy-matched det reached {best['accuracy']:.4f}, not within "
                      f"{tolerance} of the target {target:.4f} (recorded in its diagnostics)",
                      stacklevel=2)
    meta = {"method": "det", "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
            "history": {"check_steps": [s for s, _ in checks],
                        "check_accuracy": [a for _, a in checks]},
            "matched": matched}
    if options is not None and options != TrainOptions():
        meta["options"] = options.as_dict()
    return Ensemble.from_module(model, meta=meta)


def _bisect(model: nn.Module, before: dict, after: dict, x_test, y_test, target: float,
            tolerance: float, best: dict) -> None:
    """Bisect ``t`` in ``(1 − t)·before + t·after`` for the accuracy ``target``; update
    ``best`` with every closer point (``fraction`` = t). Non-float buffers keep ``after``."""
    lo, hi = 0.0, 1.0
    for _ in range(20):
        t = (lo + hi) / 2
        model.load_state_dict({k: torch.lerp(before[k], v, t) if v.is_floating_point() else v
                               for k, v in after.items()})
        acc = _accuracy(model, x_test, y_test)
        if abs(acc - target) < abs(best["accuracy"] - target):
            best.update(accuracy=acc, state=copy.deepcopy(model.state_dict()), fraction=t)
        if abs(acc - target) <= tolerance:
            return
        lo, hi = (t, hi) if acc < target else (lo, t)
