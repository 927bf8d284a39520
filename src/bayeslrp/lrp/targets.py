"""Which output is explained: the layer cut and the relevance seed (SPEC §4 "Target").

- Output layer (``layer=None`` or the last learnable index): the logits. The explained class is
  the argmax of the Bayesian predictive mean softmax over the samples used (``target_mode=
  "predictive"``), or each sample's own argmax (``"per_sample_argmax"``), or the ``target``
  given. Seed: that class's logit (``seed="logit"``) or 1 (``seed="one"``).
- Inner layer ``l``: the network truncated after the activation that follows learnable layer
  ``l`` (and its folded BatchNorm; Dropout / Identity in between are skipped); for a residual
  block: after the block, whose last module is its activation. A layer no activation follows
  is cut right after itself (its BatchNorm included). Linear:
  seed at the unit with the largest activation; Conv: at the channel with the largest sum of
  activations over positions, every position of that channel seeded with its own activation.
  The unit / channel is chosen per posterior sample on that sample's own activations.
  ``inner="all"``: every unit seeded with its own activation. ``target`` (a unit or channel
  index per image) overrides the argmax. ``seed="one"`` seeds with 1 instead of the activation.
  ``inner="original"`` (``compat: original``): the original code's seed, the gradient of
  ``y[arange(1), y.max(1)[1]].sum()``: at a conv layer every position of channel ``c`` gets
  ``count_c``, the number of positions whose most activated channel is ``c``; at a linear
  layer the most activated unit gets 1. It is the same for both ``seed`` values (the
  original seeds with the gradient, never with the activation) and takes no ``target``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import nets
from ..errors import BayesLRPError

SEEDS = ("logit", "one")
TARGET_MODES = ("predictive", "per_sample_argmax")
INNER_MODES = ("max", "all", "original")
@dataclass(frozen=True)
class LayerCut:
    """``layer``: the learnable index asked for; ``stop``: last Sequential position run."""

    layer: int
    stop: int
    is_output: bool


def resolve_layer(net: nn.Module, layer: int | str | None) -> LayerCut:
    """Where to cut the network for an explanation of learnable layer ``layer`` (a position
    of the network's chain, or the name of the module there, e.g. ``"features.0"``)."""
    from .handlers import check_entries, kind_at, learnable_positions, network_entries

    entries = network_entries(net)
    learnable = learnable_positions(entries)
    if not learnable:
        check_entries(entries)  # an unsupported module is the likelier cause: name it
        raise BayesLRPError("the network has no learnable (Linear / Conv2d / BatchNorm / "
                            "BasicBlock) layer")
    names = {e.name: i for i, e in enumerate(entries)}
    if isinstance(layer, str) and layer in names:
        layer = names[layer]
    last = learnable[-1]
    try:
        layer = None if layer is None else int(layer)
    except (TypeError, ValueError):
        raise BayesLRPError(f"layer={layer!r} is not a learnable layer of this network; choose "
                            f"one of {learnable} (or a module name)") from None
    end = _layer_end(entries, last if layer is None else layer)
    if layer is None or layer == last:
        return LayerCut(last, end, True)
    if layer not in learnable:
        raise BayesLRPError(f"layer={layer} is not a learnable layer of this network; "
                            f"choose one of {learnable}")
    if isinstance(entries[layer].module, nets.BasicBlock):
        return LayerCut(layer, layer, False)
    j = end + 1
    while j < len(entries) and isinstance(entries[j].module, _SKIPPED):
        j += 1
    if j < len(entries) and kind_at(entries, j) == "activation":
        return LayerCut(layer, j, False)
    return LayerCut(layer, end, False)  # no activation follows: its own output is seeded


#: Modules between a layer and its activation that do not change the values (eval mode).
_SKIPPED = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)


def _layer_end(entries, i: int) -> int:
    """Last position of learnable layer ``i``: the BatchNorm folded into it, if any."""
    from .handlers import _folds_into

    return i + 1 if i + 1 < len(entries) and _folds_into(entries, i + 1) else i


def validate_options(seed: str, target_mode: str, inner: str) -> None:
    if seed not in SEEDS:
        raise BayesLRPError(f"seed={seed!r} is not known; choose one of {SEEDS}")
    if target_mode not in TARGET_MODES:
        raise BayesLRPError(f"target_mode={target_mode!r} is not known; "
                            f"choose one of {TARGET_MODES}")
    if inner not in INNER_MODES:
        raise BayesLRPError(f"inner={inner!r} is not known; choose one of {INNER_MODES}")


def explicit_target(target, n_images: int, device,
                    n_samples: int | None = None) -> torch.Tensor | None:
    """``target`` as a long tensor ``[B]`` (an int applies to every image) or, when
    ``n_samples`` is given, also ``[n_samples, B]`` (one per sample and image); or None."""
    if target is None:
        return None
    t = torch.as_tensor(target, device=device)
    if t.is_floating_point() or t.is_complex():
        raise BayesLRPError("target must hold integer class / unit indices")
    t = t.long()
    if t.dim() == 0:
        t = t.expand(n_images)
    if n_samples is not None and t.shape == (n_samples, n_images):
        return t
    if t.shape != (n_images,):
        raise BayesLRPError(f"target must be an int or have shape [{n_images}] (one per image); "
                            f"got shape {list(t.shape)}")
    return t


def classes_from_logits(logits: torch.Tensor, target_mode: str) -> torch.Tensor:
    """Explained class per sample and image, ``[s, B]``, from logits ``[s, B, C]``.

    ``predictive``: the argmax of the mean softmax over the samples given (the same class for
    every sample); ``per_sample_argmax``: each sample's own argmax.
    """
    if target_mode == "per_sample_argmax":
        return logits.argmax(-1)
    mean = logits.softmax(-1).mean(0)
    return mean.argmax(-1).unsqueeze(0).expand(logits.shape[0], -1)


def _onehot_seed(h: torch.Tensor, index: torch.Tensor, seed: str) -> torch.Tensor:
    """Seed at ``index`` along dim 2 of ``h`` (``[s, B, K, ...]``), zero elsewhere."""
    n = h.shape[2]
    if int(index.min()) < 0 or int(index.max()) >= n:
        raise BayesLRPError(f"target index out of range: this layer has {n} units / channels / "
                            "classes")
    mask = F.one_hot(index, n).to(h.dtype)
    mask = mask.reshape(*mask.shape, *([1] * (h.dim() - 3)))
    if seed == "one":
        return mask.expand(h.shape)
    return mask * h


def output_seed(logits: torch.Tensor, classes: torch.Tensor, seed: str) -> torch.Tensor:
    """Relevance of the logits ``[s, B, C]``: the explained class's logit (or 1), 0 elsewhere."""
    return _onehot_seed(logits, classes, seed)


def inner_seed(h: torch.Tensor, seed: str, inner: str,
               target: torch.Tensor | None) -> torch.Tensor:
    """Relevance of an inner activation ``h`` (``[s,B,U]`` or ``[s,B,C,H,W]``)."""
    if inner == "all":
        return torch.ones_like(h) if seed == "one" else h
    if inner == "original":
        return original_seed(h.detach())
    if target is not None:
        index = target if target.dim() == 2 else target.unsqueeze(0).expand(h.shape[0], -1)
    elif h.dim() == 3:
        index = h.argmax(-1)
    else:
        index = h.sum(dim=tuple(range(3, h.dim()))).argmax(-1)
    return _onehot_seed(h, index.detach(), seed)


def original_weights(h: torch.Tensor) -> torch.Tensor:
    """The original code's seed weight per unit / channel, ``[s, B, K]``.

    Linear ``h`` ``[s, B, U]``: 1 at the most activated unit. Conv ``h`` ``[s, B, C, H, W]``:
    ``count_c``, how many positions have channel ``c`` as their most activated channel (the
    gradient of ``y[arange(1), y.max(1)[1]].sum()`` on a ``[1, C, H, W]`` output, where the
    broadcast index selects channel ``argmax_c y[:, p]`` once for every position ``p``).
    """
    n = h.shape[2]
    index = h.argmax(2)
    if h.dim() == 3:
        return F.one_hot(index, n).to(h.dtype)
    return F.one_hot(index.flatten(2), n).sum(2).to(h.dtype)


def original_seed(h: torch.Tensor) -> torch.Tensor:
    """Relevance of an inner activation under ``inner="original"``: the weights of
    :func:`original_weights` at every position of their channel."""
    w = original_weights(h)
    return w.reshape(*w.shape, *([1] * (h.dim() - 3))).expand(h.shape)
