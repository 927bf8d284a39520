"""Generalised Gauss-Newton curvature of the softmax cross-entropy (= its Fisher information).

For a network f(x; θ) with logits f and class probabilities p = softmax(f), the GGN of the
summed negative log-likelihood is G = Σₙ Jₙᵀ Λₙ Jₙ with Jₙ = ∂f(xₙ)/∂θ and Λₙ = diag(pₙ) − pₙpₙᵀ.
Written as Λₙ = Σ_c vₙ_c vₙ_cᵀ with vₙ_c = √pₙ_c (e_c − pₙ), its diagonal is
Σₙ Σ_c (Jₙᵀ vₙ_c)², each Jₙᵀ vₙ_c one vector-Jacobian product (``torch.func``). For a final
``nn.Linear`` with input φ (and bias), f = Wφ + b, so the last-layer GGN over ``[W | b]``
(row-major, C × (H + 1)) is Σₙ Λₙ ⊗ φ̃ₙφ̃ₙᵀ with φ̃ = (φ, 1).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vjp, vmap

from ..errors import BayesLRPError

__all__ = ["diag_ggn", "last_layer_features", "last_linear", "last_layer_ggn"]

#: Bytes of per-example vector-Jacobian products held at once by :func:`diag_ggn`.
VJP_BUDGET = 256 * 2**20


def _sqrt_factors(logits: torch.Tensor) -> torch.Tensor:
    """``[B, C, C]``: row c of image n is vₙ_c = √pₙ_c (e_c − pₙ), Σ_c vvᵀ = diag(p) − ppᵀ."""
    p = logits.softmax(-1)
    eye = torch.eye(p.shape[-1], dtype=p.dtype, device=p.device)
    return p.sqrt()[:, :, None] * (eye[None] - p[:, None, :])


def diag_ggn(module: nn.Module, x: torch.Tensor, *, names: list[str] | None = None,
             budget: int = VJP_BUDGET, method: str = "auto") -> dict[str, torch.Tensor]:
    """The GGN diagonal of the summed cross-entropy over ``x``, per parameter of ``module``.

    Parameters
    ----------
    module : nn.Module
        The network at the weights of interest (eval mode is used; buffers are fixed).
    x : Tensor
        Inputs ``[N, ...]``; the labels do not enter the GGN.
    names : list of str, optional
        Parameters to compute it for (default: all of ``named_parameters()``).
    budget : int
        Bytes of per-example products held at once (sets the image chunk).
    method : {"auto", "layers", "vmap"}
        ``layers``: :func:`bayeslrp.train.ggn_layers.layerwise_diag_ggn` (one batch backward
        per class; every parameter in a plain Linear or Conv2d used once per forward);
        ``vmap``: one vector-Jacobian product per image and class (any network; on the CPU
        about 30x slower for fc2); ``auto``: ``layers`` where it applies. Both are exact.

    Returns
    -------
    dict of str to Tensor
        ``name -> diag`` in the parameter's shape and dtype.
    """
    from .ggn_layers import layerwise_diag_ggn, supports_layerwise

    if method not in ("auto", "layers", "vmap"):
        raise BayesLRPError(f"unknown GGN method {method!r}; choose auto, layers or vmap")
    module = module.eval()
    all_names = [k for k, _ in module.named_parameters()]
    if method != "vmap" and (names is None or list(names) == all_names) \
            and supports_layerwise(module):
        out = layerwise_diag_ggn(module, x, _sqrt_factors, budget)
        if out is not None:
            return {k: out[k] for k in all_names}
    if method == "layers":
        raise BayesLRPError(f"{type(module).__name__} does not fit the layer-wise GGN (every "
                            f"parameter in a plain Linear or Conv2d used once); use vmap")
    params = {k: v.detach() for k, v in module.named_parameters()}
    names = list(params) if names is None else list(names)
    fixed = {k: v for k, v in params.items() if k not in names}
    fixed.update({k: v.detach() for k, v in module.named_buffers()})
    live = {k: params[k] for k in names}
    n_params = sum(v.numel() for v in live.values())
    with torch.no_grad():
        n_classes = module(x[:1]).shape[-1]
    chunk = max(1, budget // max(1, n_classes * n_params * x.element_size()))
    out = {k: torch.zeros_like(v) for k, v in live.items()}

    def logits_one(p, xn):
        return functional_call(module, {**fixed, **p}, (xn[None],))[0]

    def products(p, xn, vn):
        _, pull = vjp(lambda q: logits_one(q, xn), p)
        return vmap(lambda v: pull(v)[0])(vn)

    for start in range(0, x.shape[0], chunk):
        xb = x[start:start + chunk]
        with torch.no_grad():
            factors = _sqrt_factors(functional_call(module, {**fixed, **live}, (xb,)))
        grads = vmap(products, in_dims=(None, 0, 0))(live, xb, factors)
        for k in out:
            out[k] += grads[k].square().sum((0, 1))
    return out


def last_linear(module: nn.Module) -> tuple[str, nn.Linear]:
    """The name and module of ``module``'s last ``nn.Linear`` (module order), checked to give
    the logits."""
    linears = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise BayesLRPError(f"{type(module).__name__} has no nn.Linear layer; last-layer Laplace "
                            f"needs a linear output layer")
    return linears[-1]


def last_layer_features(module: nn.Module, x: torch.Tensor,
                        batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """``(φ̃, logits)``: the last Linear's inputs with a 1 appended ``[N, H + 1]`` and the
    network's logits ``[N, C]``, which must equal that layer's output."""
    name, layer = last_linear(module)
    seen: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []

    def keep(_module, inputs, out):
        seen.append(inputs[0].detach())
        outputs.append(out.detach())

    handle = layer.register_forward_hook(keep)
    feats, logits = [], []
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                seen.clear()
                outputs.clear()
                out = module.eval()(x[start:start + batch_size])
                if len(seen) != 1 or seen[0].ndim != 2 or not torch.equal(outputs[0], out):
                    raise BayesLRPError(f"last-layer Laplace needs the output of Linear "
                                        f"{name!r} to be the network's logits")
                feats.append(seen[0])
                logits.append(out)
    finally:
        handle.remove()
    phi = torch.cat(feats)
    return torch.cat([phi, torch.ones_like(phi[:, :1])], 1), torch.cat(logits)


def last_layer_ggn(module: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The GGN ``[P, P]`` of the last Linear's ``[W | b]`` (P = C·(H + 1), row-major)."""
    phi, logits = last_layer_features(module, x)
    c, h1 = logits.shape[1], phi.shape[1]
    ggn = torch.zeros(c, h1, c, h1, dtype=phi.dtype, device=phi.device)
    for start in range(0, x.shape[0], batch_size):
        f = _sqrt_factors(logits[start:start + batch_size])
        lam = f.transpose(1, 2) @ f  # diag(p) - pp^T, [B, C, C]
        ph = phi[start:start + batch_size]
        ggn += torch.einsum("nkl,nj,ni->kjli", lam, ph, ph)
    return ggn.reshape(c * h1, c * h1)
