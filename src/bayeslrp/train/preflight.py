"""Checks every train function runs before any training: the net, data and options can
produce (and save) an Ensemble, so a mistake costs a second, not a whole run.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import BayesLRPError, one_line
from .loop import check_training_data

__all__ = ["preflight"]

#: Images of the probe forward pass.
PROBE_BATCH = 2


def preflight(net: nn.Module, x: torch.Tensor, y: torch.Tensor,
              device: str | torch.device | None = None) -> int:
    """Refuse a network and data that cannot be trained into an Ensemble; return the classes.

    Checks that ``net`` is an ``nn.Module`` with parameters and a state dict of tensors (what
    an Ensemble stacks and saves), the data are ``[N, C, H, W]``
    images with integer labels, and one forward pass of a few images (``torch.no_grad``, eval
    mode, on ``device``; the network's mode is restored) gives ``[B, classes]`` logits with
    every label below ``classes``.

    Raises
    ------
    BayesLRPError
        One line saying what does not fit.
    """
    if not isinstance(net, nn.Module):
        raise BayesLRPError(f"net must be a torch.nn.Module; got {type(net).__name__}")
    if not any(True for _ in net.parameters()):
        raise BayesLRPError(f"{type(net).__name__} has no parameters to train")
    odd = [k for k, v in net.state_dict().items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise BayesLRPError(f"{type(net).__name__}'s state_dict holds non-tensor entries "
                            f"{odd[:3]}; an Ensemble stacks tensors only")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise BayesLRPError("training images and labels must be torch tensors (or pass a "
                            "bl.data.Dataset)")
    check_training_data(x, y)
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.ndim != 1:
        raise BayesLRPError(f"labels must be a 1-d integer tensor of class indices; got "
                            f"{y.dtype} of shape {tuple(y.shape)}")
    device = torch.device(device or x.device)
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            probe = next(net.parameters())
            xb = x[:PROBE_BATCH].to(device)  # as training will see them (dtype included)
            model = net if probe.device == device else copy.deepcopy(net).to(device)
            out = model(xb)
    except BayesLRPError:
        raise
    except Exception as exc:  # the user's forward: any failure is reported in one line
        raise BayesLRPError(f"{type(net).__name__} cannot take the training images of shape "
                            f"{list(x.shape[1:])}: {type(exc).__name__}: "
                            f"{one_line(exc, 240)}") from None
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != xb.shape[0]:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise BayesLRPError(f"{type(net).__name__} returns {shape} for {xb.shape[0]} images; a "
                            f"classifier must return [batch, classes] logits")
    n_classes = int(out.shape[1])
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= n_classes:
        raise BayesLRPError(f"labels run from {low} to {high} but {type(net).__name__} has "
                            f"{n_classes} outputs")
    return n_classes
