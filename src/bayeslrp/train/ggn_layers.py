"""The GGN diagonal layer by layer for networks of ``nn.Linear`` and ``nn.Conv2d`` layers.

A layer's per-image weight gradient factorises into its input and its output cotangent, so
one batch backward pass per class gives every image's products at once (the trick of
BackPACK's DiagGGN, written here from the equations): for a Linear layer with input aₙ and
output cotangent gₙ_c (the backward of vₙ_c, :mod:`bayeslrp.train.ggn`), the diagonal is
Σₙ Σ_c gₙ_c² aₙ²ᵀ, and Σₙ Σ_c gₙ_c² for its bias; for a convolution the per-image gradient
gₙ_c · unfold(aₙ)ᵀ is formed in image chunks and squared.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["layerwise_diag_ggn", "supports_layerwise"]


def _eligible(m: nn.Module) -> bool:
    if type(m) is nn.Linear:
        return True
    return (type(m) is nn.Conv2d and m.groups == 1 and m.padding_mode == "zeros"
            and not isinstance(m.padding, str))


def supports_layerwise(module: nn.Module) -> bool:
    """Whether every parameter belongs to a plain ``nn.Linear`` or ``nn.Conv2d`` (groups 1,
    zero or no padding given as numbers)."""
    owned = {id(p) for m in module.modules() if _eligible(m) for p in m.parameters(False)}
    return all(id(p) in owned for p in module.parameters())


def layerwise_diag_ggn(module: nn.Module, x: torch.Tensor, factors_of,
                       budget: int) -> dict[str, torch.Tensor] | None:
    """The GGN diagonal over ``x`` per parameter, or None when a layer is not used exactly
    once per forward pass with the inputs it supports (then the caller falls back).

    ``factors_of(logits) -> [B, C, C]`` gives the rows vₙ_c of Λₙ = Σ_c vₙ_c vₙ_cᵀ.
    """
    layers = [(name, m) for name, m in module.named_modules() if _eligible(m)]
    out = {f"{n}.{k}" if n else k: torch.zeros_like(p)
           for n, m in layers for k, p in m.named_parameters(recurse=False)}
    seen: dict[str, list] = {}

    def hook_for(name):
        def hook(_m, inputs, output):
            seen.setdefault(name, []).append((inputs[0].detach(), output))
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in layers]
    try:
        for start in range(0, x.shape[0], _chunk(layers, x, budget)):
            seen.clear()
            with torch.enable_grad():
                logits = module(x[start:start + _chunk(layers, x, budget)])
            if any(len(seen.get(n, [])) != 1 for n, _ in layers):
                return None
            if any(type(m) is nn.Linear and seen[n][0][0].ndim != 2 for n, m in layers):
                return None
            factors = factors_of(logits.detach())
            outputs = [seen[n][0][1] for n, _ in layers]
            inputs = [_layer_input(m, seen[n][0][0]) for n, m in layers]
            for c in range(factors.shape[1]):
                grads = torch.autograd.grad(logits, outputs, grad_outputs=factors[:, c],
                                            retain_graph=c + 1 < factors.shape[1])
                for (name, m), a, g in zip(layers, inputs, grads):
                    _accumulate(out, name, m, a, g)
    finally:
        for h in handles:
            h.remove()
    return out


def _chunk(layers, x, budget: int) -> int:
    """Images per pass: a convolution's per-image gradients [B, Cout, Cin·k²] fit ``budget``."""
    sizes = [m.weight.numel() for _, m in layers if type(m) is nn.Conv2d]
    per_image = max(sizes, default=0) * x.element_size()
    return max(1, min(x.shape[0], 1024, budget // per_image if per_image else 1024))


def _key(name: str, param: str) -> str:
    return f"{name}.{param}" if name else param


def _layer_input(m, a):
    """What the layer's products need of its input: a² (Linear) or unfold(a) (Conv2d)."""
    if type(m) is nn.Linear:
        return a.square()
    return nn.functional.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding,
                                stride=m.stride)  # [B, Cin·k², L]


def _accumulate(out, name, m, a, g) -> None:
    if type(m) is nn.Linear:
        g2 = g.square()
        out[_key(name, "weight")] += g2.T @ a
        if m.bias is not None:
            out[_key(name, "bias")] += g2.sum(0)
        return
    per_image = torch.bmm(g.flatten(2), a.transpose(1, 2))  # [B, Cout, Cin·k²]
    out[_key(name, "weight")] += per_image.square().sum(0).view_as(m.weight)
    if m.bias is not None:
        out[_key(name, "bias")] += g.flatten(2).sum(2).square().sum(0)
