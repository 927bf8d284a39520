"""MC dropout (Gal & Ghahramani 2016) as an Ensemble of weight samples (SPEC §9).

The network is trained with dropout of rate p on the input h of chosen ``nn.Linear`` layers.
Posterior draw s fixes one mask mₛ ∈ {0, 1}^in per such layer and writes it into the layer's
weight: Wₛ = W·diag(mₛ)/(1−p), the bias unchanged. The draw's forward is then the dropout net's
train-mode forward with that mask on every image, so LRP, attacks and metrics see an ordinary
stacked-weight Ensemble.

Default layers: every ``nn.Linear`` that is not the network's first learnable layer, i.e. dropout
on hidden activations, not on the pixels (fc2: the inputs of its 2nd and 3rd Linear; conv: the
input of its dense head). A convolution's input is not dropped: an elementwise mask on a feature
map is not a mask on the kernel (the kernel is shared over positions), so it could not be written
into the weights.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..ensemble import Ensemble
from ..errors import BayesLRPError
from ..mcmc.seeds import derive_seed
from .loop import fit, training_arrays
from .options import TrainOptions
from .preflight import preflight

__all__ = ["InputDropout", "check_dropout_layers", "default_dropout_layers", "dropout_weights",
           "mc_dropout"]


class InputDropout:
    """Forward pre-hooks that drop the inputs of named ``nn.Linear`` layers in train mode.

    Each training forward draws an independent mask per image and input unit (Bernoulli 1−p,
    from its own generator, seeded: training is reproducible) and feeds ``h·m/(1−p)``.
    ``fixed`` (``{layer: mask [in]}``) replaces the draws by one mask shared by every image:
    the train-mode forward of a posterior draw (used by the oracle test). Eval mode: no dropout.
    """

    def __init__(self, net: nn.Module, layers: list[str], p: float, seed: int):
        self.p, self.fixed = float(p), None
        self.generator = torch.Generator().manual_seed(derive_seed(seed, "mc-dropout-train"))
        modules = dict(net.named_modules())
        self.hooks = [self._hook(name) for name in layers]
        self.handles = [modules[name].register_forward_pre_hook(hook)
                        for name, hook in zip(layers, self.hooks)]

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs):
            if not module.training:
                return None
            (h,) = inputs
            if self.fixed is not None:
                mask = self.fixed[name].to(h.device, h.dtype).expand_as(h)
            else:
                keep = torch.rand(h.shape, generator=self.generator) >= self.p
                mask = keep.to(h.device, h.dtype)
            return (h * mask / (1 - self.p),)
        return hook

    def remove(self, copy_of: nn.Module | None = None) -> None:
        """Remove the hooks (also from ``copy_of``, a deep copy of the hooked network)."""
        for handle in self.handles:
            handle.remove()
        if copy_of is not None:
            for module in copy_of.modules():
                for key, fn in list(module._forward_pre_hooks.items()):
                    if any(fn is hook for hook in self.hooks):
                        del module._forward_pre_hooks[key]


def default_dropout_layers(net: nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` modules of ``net`` other than its first learnable layer."""
    learnable = [name for name, m in net.named_modules()
                 if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    return [name for name, m in net.named_modules()
            if isinstance(m, nn.Linear) and learnable and name != learnable[0]]


def check_dropout_layers(net: nn.Module, layers: list[str]) -> list[str]:
    """``layers`` if each names an ``nn.Linear`` module of ``net`` (and there is one), else a
    :class:`~bayeslrp.errors.BayesLRPError` that lists the Linear layers."""
    modules = dict(net.named_modules())
    for name in layers:
        if name not in modules:
            raise BayesLRPError(f"dropout layer {name!r} is not a module of "
                                f"{type(net).__name__}; its Linear layers are "
                                f"{[n for n, m in modules.items() if isinstance(m, nn.Linear)]}")
        if not isinstance(modules[name], nn.Linear):
            raise BayesLRPError(f"dropout layer {name!r} is a {type(modules[name]).__name__}; MC "
                                f"dropout masks a layer's input as weight columns, which only "
                                f"an nn.Linear has")
    if not layers:
        raise BayesLRPError(f"{type(net).__name__} has no nn.Linear layer after its first "
                            f"learnable layer to drop the input of; name layers= explicitly")
    return list(layers)


def dropout_weights(state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                    p: float) -> dict[str, torch.Tensor]:
    """A state dict with each masked layer's weight ``W·diag(m)/(1−p)`` (``masks``: layer →
    mask ``[in]``)."""
    out = dict(state)
    for layer, mask in masks.items():
        key = f"{layer}.weight" if layer else "weight"
        out[key] = state[key] * (mask.to(state[key].dtype) / (1 - p))[None, :]
    return out


def mc_dropout(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
               p: float = 0.5, n_samples: int = 100, layers: list[str] | None = None,
               epochs: int = 15, lr: float = 1e-3, batch_size: int = 128, seed: int = 0,
               progress: bool = True, device: str | torch.device | None = None,
               options: TrainOptions | None = None) -> Ensemble:
    """Train a copy of ``net`` with dropout and return ``n_samples`` dropout masks as an Ensemble.

    Parameters
    ----------
    net : nn.Module
        The network (its weights are the start), as :func:`bayeslrp.train.deterministic`.
    x, y : Tensor
        Training images and labels (or a Dataset as ``x``).
    p : float
        Dropout rate in (0, 1).
    n_samples : int
        S, the number of masks drawn after training. Mask s of each layer is Bernoulli(1−p)
        per input unit from a CPU generator seeded
        ``derive_seed(seed, "mc-dropout-draw", layer, s)``.
    layers : list of str, optional
        Module names (``net.named_modules()``) of the ``nn.Linear`` layers whose input is
        dropped; default :func:`default_dropout_layers`.
    epochs, lr, batch_size, seed, options, progress, device
        As :func:`bayeslrp.train.deterministic` (``seed`` also seeds the training masks).

    Returns
    -------
    Ensemble
        S samples; ``extras["mask.<layer>"]`` holds the masks ``[S, in]`` and
        ``extras["trained.<layer>.weight"]`` the trained (unmasked) weight of each masked layer.
    """
    if not 0 < float(p) < 1:
        raise BayesLRPError(f"dropout rate p must be in (0, 1); got {p}")
    if int(n_samples) < 1:
        raise BayesLRPError(f"n_samples must be >= 1; got {n_samples}")
    x, y = training_arrays(x, y)
    preflight(net, x, y, device)
    layers = check_dropout_layers(net, default_dropout_layers(net) if layers is None
                                  else list(layers))
    hooked = copy.deepcopy(net)
    dropout = InputDropout(hooked, layers, p, seed)
    try:
        model, history = fit(hooked, x, y, epochs=epochs, lr=lr, batch_size=batch_size,
                             seed=seed, progress=progress, description="train mc_dropout",
                             device=device, options=options)
        dropout.remove(copy_of=model)  # fit trains a deep copy, which holds our hooks too
    finally:
        dropout.remove()
    modules = dict(model.named_modules())
    state = {k: v.detach() for k, v in model.state_dict().items()}
    masks = {name: torch.stack([
        (torch.rand(modules[name].in_features,
                    generator=torch.Generator().manual_seed(
                        derive_seed(seed, "mc-dropout-draw", name, s))) >= p).to(torch.uint8)
        for s in range(int(n_samples))]) for name in layers}
    draws = [dropout_weights(state, {n: masks[n][s] for n in layers}, p)
             for s in range(int(n_samples))]
    params = {k: torch.stack([d[k] for d in draws]) for k in state}
    meta = {"method": "mc_dropout", "p": float(p), "layers": layers, "epochs": epochs,
            "lr": lr, "batch_size": batch_size, "seed": seed, "history": history,
            "draw_rule": "mask s of a layer: Bernoulli(1-p) per input unit from a CPU "
                         "torch.Generator seeded derive_seed(seed, 'mc-dropout-draw', layer, s); "
                         "weight W * mask / (1 - p)"}
    if options is not None and options != TrainOptions():
        meta["options"] = options.as_dict()
    where = next(iter(params.values())).device
    extras = {f"mask.{name}": masks[name].to(where) for name in layers}
    extras.update({f"trained.{name}.weight": state[f"{name}.weight"] for name in layers})
    return Ensemble.from_params(model, params, meta=meta, extras=extras)
