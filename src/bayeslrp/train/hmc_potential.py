"""The network potential U(w) = Σ_i NLL_i(w) + ‖w‖² / (2σ_p²) over a flat weight vector."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call

from ..errors import BayesLRPError

LIKELIHOODS = ("categorical", "gaussian")


class NetworkPotential:
    """Potential energy of a network's weights and its gradient, summed over the data in chunks.

    ``U(w) = Σ_i NLL(y_i | f(x_i; w)) + ‖w‖² / (2 prior_std²)`` (up to constants). The network's
    parameters (not its buffers) form the flat vector ``w`` in ``named_parameters`` order; the
    forward pass is ``torch.func.functional_call`` on the vector unflattened into views, and the
    sum over the data runs in chunks of ``chunk_size`` points to bound memory.

    Parameters
    ----------
    net : nn.Module
        Architecture (a copy is taken and put in eval mode; its buffers stay fixed).
    x, y : Tensor
        Data; ``y`` class indices (categorical) or targets shaped like the output (gaussian).
    prior_std : float
        σ_p of the isotropic Gaussian prior N(0, σ_p²) on every weight and bias.
    chunk_size : int
        Points per forward/backward chunk.
    likelihood : {"categorical", "gaussian"}
        Softmax cross-entropy, or Gaussian with standard deviation ``noise_std``.
    """

    def __init__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, prior_std: float = 1.0,
                 chunk_size: int = 10000, likelihood: str = "categorical", noise_std: float = 1.0):
        if likelihood not in LIKELIHOODS:
            raise BayesLRPError(f"unknown likelihood {likelihood!r}; choose {', '.join(LIKELIHOODS)}")
        if prior_std <= 0 or chunk_size < 1 or noise_std <= 0:
            raise BayesLRPError("prior_std and noise_std must be > 0 and chunk_size >= 1")
        device = x.device
        self.net = copy.deepcopy(net).to(device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.names = [name for name, _ in self.net.named_parameters()]
        self.shapes = [p.shape for _, p in self.net.named_parameters()]
        self.numels = [p.numel() for _, p in self.net.named_parameters()]
        self.buffers = {name: b for name, b in self.net.named_buffers()}
        self.x, self.y = x, y.to(device)
        self.prior_var = float(prior_std) ** 2
        self.chunk_size = int(chunk_size)
        self.likelihood = likelihood
        self.noise_var = float(noise_std) ** 2

    @property
    def dim(self) -> int:
        return sum(self.numels)

    def flatten(self, params: dict[str, torch.Tensor] | nn.Module) -> torch.Tensor:
        """The flat vector of a state dict (or module)'s parameters, in this potential's order."""
        if isinstance(params, nn.Module):
            params = dict(params.named_parameters())
        return torch.cat([params[name].detach().reshape(-1) for name in self.names]).to(self.x.device)

    def unflatten(self, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``q`` as a parameter dict."""
        parts = torch.split(q, self.numels)
        return {name: part.view(shape) for name, part, shape in zip(self.names, parts, self.shapes)}

    def state_dict(self, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """A full state dict (parameters from ``q``, buffers from the template)."""
        out = {name: t.detach().clone() for name, t in self.unflatten(q).items()}
        out.update({name: b.detach().clone() for name, b in self.buffers.items()})
        return {name: out[name] for name in self.net.state_dict()}

    def _nll_sum(self, params: dict[str, torch.Tensor], xc: torch.Tensor, yc: torch.Tensor):
        out = functional_call(self.net, (params, self.buffers), (xc,))
        if self.likelihood == "categorical":
            return nn.functional.cross_entropy(out, yc, reduction="sum")
        return 0.5 * ((out.reshape(yc.shape) - yc) ** 2).sum() / self.noise_var

    def __call__(self, q: torch.Tensor) -> tuple[float, torch.Tensor]:
        """``(U(q), ∇U(q))``; U accumulated in float64 over the chunks."""
        leaves = [part.detach().view(shape).requires_grad_(True)
                  for part, shape in zip(torch.split(q, self.numels), self.shapes)]
        params = dict(zip(self.names, leaves))
        grads = [torch.zeros_like(leaf) for leaf in leaves]
        total = torch.zeros((), dtype=torch.float64, device=q.device)  # one host sync per call
        with torch.enable_grad():
            for start in range(0, self.x.shape[0], self.chunk_size):
                nll = self._nll_sum(params, self.x[start:start + self.chunk_size],
                                    self.y[start:start + self.chunk_size])
                for acc, g in zip(grads, torch.autograd.grad(nll, leaves)):
                    acc += g
                total += nll.detach().double()
        qd = q.detach()
        # the same float64 operations, in the same order, as Python floats would do them
        total = float(total + 0.5 * (qd.double() ** 2).sum() / self.prior_var)
        grad = torch.cat([g.reshape(-1) for g in grads]) + qd / self.prior_var
        return total, grad
