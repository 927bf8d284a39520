"""Post-hoc Laplace approximations around a trained network (MacKay 1992; Daxberger et al. 2021).

The posterior over the chosen weights θ is N(θ*, (G + δI)⁻¹): θ* the trained (MAP) weights,
G the GGN of the summed training cross-entropy (:mod:`bayeslrp.train.ggn`; for softmax
cross-entropy equal to the Fisher information) and δ the precision of the isotropic prior
N(0, δ⁻¹I). ``kind="diag"``: every parameter, G's diagonal. ``kind="last_layer"``: the last
``nn.Linear``'s weight and bias with the full GGN, every other weight fixed at θ*.

δ, when not given, maximises the Laplace evidence (the post-hoc marginal likelihood, the fit
term log p(D | θ*) fixed):

    log Z(δ) = const − δ/2 ‖θ*‖² + P/2 log δ − 1/2 Σᵢ log(λᵢ + δ),

λᵢ the GGN's eigenvalues (diag: its entries). ∂ log Z/∂δ = ½ Σᵢ λᵢ / (δ(λᵢ + δ)) − ½ ‖θ*‖²
falls strictly in δ, so its root (found by bisection in log δ) is the unique maximum.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..ensemble import Ensemble
from ..errors import BayesLRPError
from ..mcmc.seeds import derive_seed
from .ggn import diag_ggn, last_layer_ggn, last_linear
from .loop import training_arrays

__all__ = ["LAPLACE_KINDS", "laplace", "log_evidence", "map_network", "optimal_prior_precision"]

LAPLACE_KINDS = ("diag", "last_layer")
#: Bisection range of the prior precision δ.
PRIOR_PRECISION_RANGE = (1e-8, 1e8)


def map_network(ens_or_net: Ensemble | nn.Module, what: str) -> nn.Module:
    """A module holding the single network of ``ens_or_net`` (an S = 1 Ensemble or a module)."""
    if isinstance(ens_or_net, Ensemble):
        if ens_or_net.n_samples != 1:
            raise BayesLRPError(f"{what} starts from one trained network; this ensemble has "
                                f"{ens_or_net.n_samples} samples (use ens.select([j]))")
        return ens_or_net.sample_module(0)
    if not isinstance(ens_or_net, nn.Module):
        raise BayesLRPError(f"{what} needs a trained nn.Module or an S = 1 Ensemble; got "
                            f"{type(ens_or_net).__name__}")
    return ens_or_net


def log_evidence(delta: float, eigenvalues: torch.Tensor, theta_sq: float) -> float:
    """``log Z(δ)`` up to a constant (module docstring)."""
    lam = eigenvalues.double().clamp_min(0)
    return float(-0.5 * delta * theta_sq + 0.5 * lam.numel() * math.log(delta)
                 - 0.5 * torch.log(lam + delta).sum())


def optimal_prior_precision(eigenvalues: torch.Tensor, theta_sq: float) -> float:
    """The δ maximising :func:`log_evidence` (bisection on log δ to 1e-10 relative)."""
    lam = eigenvalues.double().clamp_min(0)

    def slope(delta: float) -> float:
        return float(0.5 * (lam / (delta * (lam + delta))).sum()) - 0.5 * theta_sq

    lo, hi = (math.log(v) for v in PRIOR_PRECISION_RANGE)
    if slope(math.exp(hi)) > 0:
        return math.exp(hi)
    if slope(math.exp(lo)) < 0:
        return math.exp(lo)
    while hi - lo > 1e-10:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slope(math.exp(mid)) > 0 else (lo, mid)
    return math.exp(0.5 * (lo + hi))


def laplace(ens_or_net: Ensemble | nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
            *, kind: str = "last_layer", n_samples: int = 100, prior_precision: float | None = None,
            seed: int = 0, progress: bool = True,
            device: str | torch.device | None = None) -> Ensemble:
    """Laplace approximation around a trained network; ``n_samples`` draws as an Ensemble.

    Parameters
    ----------
    ens_or_net : Ensemble or nn.Module
        The MAP network (an S = 1 Ensemble, e.g. a det model).
    x, y : Tensor
        The training data of the curvature (the labels are only checked: the GGN does not
        use them).
    kind : {"last_layer", "diag"}
        The full GGN of the last ``nn.Linear`` (default), or the diagonal GGN over every
        parameter (its weight draws underfit with an evidence-chosen δ: docs/posteriors.md).
    n_samples : int
        S. Draw j is θ* + (G + δI)^(-1/2) zⱼ (diag) or θ* + L⁻ᵀzⱼ with LLᵀ = G + δI
        (last layer), zⱼ ~ N(0, I) from a CPU generator seeded
        ``derive_seed(seed, "laplace-draw", j)``.
    prior_precision : float, optional
        δ; default: maximise the evidence (:func:`optimal_prior_precision`).
    seed : int
        Seeds the draws.
    progress : bool
        Accepted for the train functions' common signature; Laplace shows no bar.
    device : str, optional
        Where to compute (default: where ``x`` is).

    Returns
    -------
    Ensemble
        S samples; ``meta`` holds δ, the evidence and how δ was chosen.
    """
    if kind not in LAPLACE_KINDS:
        raise BayesLRPError(f"unknown Laplace kind {kind!r}; choose diag or last_layer")
    if int(n_samples) < 1:
        raise BayesLRPError(f"n_samples must be >= 1; got {n_samples}")
    if prior_precision is not None and not float(prior_precision) > 0:
        raise BayesLRPError(f"prior_precision must be > 0; got {prior_precision}")
    x, y = training_arrays(x, y)
    net = map_network(ens_or_net, "Laplace")
    target = torch.device(device or x.device)
    from .preflight import preflight

    preflight(net, x, y, target)
    model = copy.deepcopy(net).to(target).eval()
    x = x.to(target)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    if kind == "diag":
        names = [k for k, _ in model.named_parameters()]
        curvature = diag_ggn(model, x, names=names)
        theta = torch.cat([state[k].flatten() for k in names])
        eig = torch.cat([curvature[k].flatten() for k in names])
    else:
        layer, linear = last_linear(model)
        names = [f"{layer}.weight"] + ([f"{layer}.bias"] if linear.bias is not None else [])
        if linear.bias is None:
            raise BayesLRPError(f"last-layer Laplace needs Linear {layer!r} to have a bias")
        ggn = last_layer_ggn(model, x).double()
        w, b = state[names[0]], state[names[1]]
        theta = torch.cat([w, b[:, None]], 1).flatten()
        eig = torch.linalg.eigvalsh(ggn)
    theta_sq = float(theta.double().square().sum())
    chosen = "given" if prior_precision is not None else "evidence"
    delta = float(prior_precision) if prior_precision is not None else \
        optimal_prior_precision(eig, theta_sq)
    draws = []
    for j in range(int(n_samples)):
        z = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(
            derive_seed(seed, "laplace-draw", j)), dtype=torch.float64)
        draws.append(z)
    z = torch.stack(draws).to(target)  # [S, P]
    if kind == "diag":
        offsets = z / (eig.double() + delta).sqrt()
    else:
        chol = torch.linalg.cholesky(ggn + delta * torch.eye(ggn.shape[0], dtype=ggn.dtype,
                                                               device=ggn.device))
        # θ = θ* + L^{-T} z has covariance (L Lᵀ)⁻¹
        offsets = torch.linalg.solve_triangular(chol.T, z.T, upper=True).T
    sample_theta = theta.double()[None] + offsets
    params = {k: v[None].expand(int(n_samples), *v.shape).clone() for k, v in state.items()}
    if kind == "diag":
        start = 0
        for k in names:
            size = state[k].numel()
            params[k] = sample_theta[:, start:start + size].reshape(
                -1, *state[k].shape).to(state[k].dtype)
            start += size
    else:
        c, h1 = state[names[0]].shape[0], state[names[0]].shape[1] + 1
        wb = sample_theta.reshape(-1, c, h1).to(state[names[0]].dtype)
        params[names[0]], params[names[1]] = wb[:, :, :-1].contiguous(), wb[:, :, -1].contiguous()
    meta = {"method": "laplace", "kind": kind, "prior_precision": delta,
            "prior_precision_from": chosen, "n_laplace_params": int(theta.numel()),
            "log_evidence_delta_terms": log_evidence(delta, eig, theta_sq),
            "ggn_trace": float(eig.double().sum()), "seed": seed, "n_train": int(x.shape[0]),
            "draw_rule": "z_j ~ N(0, I) from a CPU torch.Generator seeded derive_seed(seed, "
                         "'laplace-draw', j); diag: theta* + z_j / sqrt(ggn + delta); "
                         "last_layer: theta* + L^-T z_j with L L^T = GGN + delta I"}
    return Ensemble.from_params(net, params, meta=meta)
