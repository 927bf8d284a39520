"""The NoiseGrad weight posterior (Bykov et al. 2022; SPEC §9) as an Ensemble.

Draw j multiplies every learnable weight and bias of a trained network elementwise by
ηⱼ ~ N(1, σ²): Wⱼ = Ŵ ⊙ ηⱼ. Buffers (BatchNorm statistics) are kept as they are.

σ, when not given, is chosen by a stated heuristic (:func:`choose_sigma`): the largest σ on the
grid σₖ = 0.01·2^(k/4) ≤ 2 whose draws keep the mean single-draw accuracy on (a seeded subset
of) the given data within ``max_accuracy_drop`` of the trained network's accuracy.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..ensemble import Ensemble
from ..errors import BayesLRPError
from ..mcmc.seeds import derive_seed
from .laplace import map_network

__all__ = ["SIGMA_GRID", "choose_sigma", "noisy_params", "weight_noise"]

#: Candidate σ of the heuristic: 0.01 · 2^(k/4), k = 0 … 30 (0.01 to ≈ 1.81).
SIGMA_GRID = tuple(0.01 * 2 ** (k / 4) for k in range(31))
#: Draws and images per candidate σ of the heuristic.
HEURISTIC_DRAWS, HEURISTIC_POINTS = 8, 1000


def noisy_params(state: dict[str, torch.Tensor], names: list[str], sigma: float, seed: int,
                 draws: range) -> dict[str, torch.Tensor]:
    """Stacked state dicts ``[len(draws), ...]``: the parameters ``names`` times N(1, σ²)
    noise (draw j's from ``derive_seed(seed, "weight-noise-draw", j)``), other entries copied."""
    sizes = [state[k].numel() for k in names]
    out = {k: v[None].expand(len(draws), *v.shape).clone() for k, v in state.items()}
    for i, j in enumerate(draws):
        g = torch.Generator().manual_seed(derive_seed(seed, "weight-noise-draw", j))
        eta = 1 + sigma * torch.randn(sum(sizes), generator=g, dtype=torch.float64)
        for k, piece in zip(names, torch.split(eta, sizes)):
            out[k][i] = state[k] * piece.view_as(state[k]).to(state[k].device, state[k].dtype)
    return out


def _mean_draw_accuracy(module, state, names, sigma, seed, x, y) -> float:
    stacked = noisy_params(state, names, sigma, seed, range(HEURISTIC_DRAWS))
    ens = Ensemble.from_params(module, stacked)
    with torch.no_grad():
        logits = ens.logits(x)
    return float((logits.argmax(-1) == y[None]).double().mean())


def choose_sigma(module: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                 max_accuracy_drop: float = 0.02, seed: int = 0) -> tuple[float, dict]:
    """σ by the heuristic of the module docstring; returns ``(σ, facts)``.

    The accuracy is the mean over :data:`HEURISTIC_DRAWS` draws (seeded with
    ``derive_seed(seed, "weight-noise-sigma")``, independent of the kept draws) of each draw's
    accuracy on :data:`HEURISTIC_POINTS` images drawn without replacement (seeded). The grid is
    searched by bisection, which assumes the accuracy falls with σ; the smallest candidate is
    returned when even it loses more than ``max_accuracy_drop``.
    """
    if not 0 < max_accuracy_drop < 1:
        raise BayesLRPError(f"max_accuracy_drop must be in (0, 1); got {max_accuracy_drop}")
    g = torch.Generator().manual_seed(derive_seed(seed, "weight-noise-points"))
    idx = torch.randperm(x.shape[0], generator=g)[:HEURISTIC_POINTS].to(x.device)
    xs, ys = x[idx], y[idx]
    state = {k: v.detach() for k, v in module.state_dict().items()}
    names = [k for k, _ in module.named_parameters()]
    with torch.no_grad():
        base = float((module.eval()(xs).argmax(-1) == ys).double().mean())
    probe = derive_seed(seed, "weight-noise-sigma")
    tried: dict[float, float] = {}

    def ok(k: int) -> bool:
        acc = _mean_draw_accuracy(module, state, names, SIGMA_GRID[k], probe, xs, ys)
        tried[SIGMA_GRID[k]] = acc
        return acc >= base - max_accuracy_drop

    lo, hi = 0, len(SIGMA_GRID) - 1
    if not ok(lo):
        best = lo
    elif ok(hi):
        best = hi
    else:  # ok(lo) and not ok(hi): find the last ok index
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        best = lo
    sigma = SIGMA_GRID[best]
    return sigma, {"sigma_from": "heuristic", "heuristic_base_accuracy": base,
                   "heuristic_accuracy": tried[sigma], "max_accuracy_drop": max_accuracy_drop,
                   "heuristic_points": int(xs.shape[0]),
                   "heuristic_tried": {f"{s:.6g}": a for s, a in sorted(tried.items())}}


def weight_noise(ens_or_net: Ensemble | nn.Module, sigma: float | None = None, *,
                 n_samples: int = 100, seed: int = 0, x: torch.Tensor | None = None,
                 y: torch.Tensor | None = None, max_accuracy_drop: float = 0.02,
                 device: str | torch.device | None = None) -> Ensemble:
    """``n_samples`` NoiseGrad weight draws of a trained network as an Ensemble.

    Parameters
    ----------
    ens_or_net : Ensemble or nn.Module
        The trained network (an S = 1 Ensemble or a module).
    sigma : float, optional
        σ of the multiplicative noise N(1, σ²); default: :func:`choose_sigma` on ``x, y``.
    n_samples : int
        S. Draw j's noise comes from a CPU generator seeded
        ``derive_seed(seed, "weight-noise-draw", j)`` over the parameters in
        ``named_parameters()`` order.
    seed : int
        Seeds the draws (and the heuristic's images and probe draws).
    x, y : Tensor, optional
        Data of the σ heuristic (only used, and then required, when ``sigma`` is None).
    max_accuracy_drop : float
        The heuristic's allowed drop of mean single-draw accuracy (absolute, default 0.02).
    device : str, optional
        Where the draws are put (default: where the network is).

    Returns
    -------
    Ensemble
        S samples; ``meta`` holds σ and, for the heuristic, the accuracies it saw.
    """
    if int(n_samples) < 1:
        raise BayesLRPError(f"n_samples must be >= 1; got {n_samples}")
    if sigma is not None and not float(sigma) > 0:
        raise BayesLRPError(f"sigma must be > 0; got {sigma}")
    module = copy.deepcopy(map_network(ens_or_net, "weight noise")).eval()
    if device is not None:
        module = module.to(device)
    facts: dict = {"sigma_from": "given"}
    if sigma is None:
        if x is None or y is None:
            raise BayesLRPError("weight_noise needs sigma=, or data x=, y= for its heuristic")
        target = next(module.parameters()).device
        sigma, facts = choose_sigma(module, x.to(target), y.to(target),
                                    max_accuracy_drop=max_accuracy_drop, seed=seed)
    state = {k: v.detach() for k, v in module.state_dict().items()}
    names = [k for k, _ in module.named_parameters()]
    params = noisy_params(state, names, float(sigma), seed, range(int(n_samples)))
    meta = {"method": "weight_noise", "sigma": float(sigma), "seed": seed, **facts,
            "draw_rule": "eta_j = 1 + sigma * z_j, z_j ~ N(0, I) from a CPU torch.Generator "
                         "seeded derive_seed(seed, 'weight-noise-draw', j), over the "
                         "parameters in named_parameters() order; W_j = W * eta_j"}
    return Ensemble.from_params(module, params, meta=meta)
