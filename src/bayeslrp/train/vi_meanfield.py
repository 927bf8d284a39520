"""Mean-field Gaussian variational inference on any ``nn.Module`` (the machinery behind
:func:`bayeslrp.train.vi`).

Every parameter w of a ``Linear`` or ``Conv2d`` module gets q(w) = N(μ, σ²) with
σ = softplus(ρ); any other parameter (a BatchNorm's scale and shift) is a point estimate,
trained by the same optimiser without a prior, as in bayesian-torch's Bayesian ResNets. The
network runs in training mode while it is fitted, so BatchNorm running statistics follow the
data. Forward passes sample the network:

* ``nn.Linear`` / ``nn.Conv2d`` with ``local_reparam=True`` (Kingma et al. 2015): the
  pre-activation is sampled directly, ``mean = f(a; μ_W, μ_b)``, ``var = f(a²; σ_W², σ_b²)``,
  ``out = mean + sqrt(var)·ε``, with independent ε per data point and unit;
* every other parameter: one weight sample ``μ + σ·ε`` per forward pass (reparameterisation).

The loss is the negative ELBO per data point, ``mean_batch NLL + KL(q‖p) / N``, with the closed
form Gaussian KL against the prior N(0, prior_std²).
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from ..errors import BayesLRPError
from ..mcmc.seeds import derive_seed
from ..progress import progress_bar
from .options import TrainOptions

LIKELIHOODS = ("categorical", "gaussian")
SCHEDULES = ("constant", "cosine")


def inverse_softplus(y: float) -> float:
    """ρ with softplus(ρ) = y (y > 0)."""
    return y + math.log(-math.expm1(-y))


class MeanField(nn.Module):
    """Variational parameters (μ, ρ) for every parameter of ``net``, and its sampled forward pass.

    Parameters
    ----------
    net : nn.Module
        The network; its current weights are the initial means (and the point estimates'
        start). A copy is kept, in eval mode outside :func:`fit`.
    prior_std : float
        Standard deviation of the N(0, prior_std²) prior on every variational parameter.
    init_std : float
        Initial posterior standard deviation, σ = softplus(ρ) = init_std everywhere.
    local_reparam : bool
        Sample the pre-activations of Linear and Conv2d layers (see module docstring).
    mu_init_std : float, optional
        Draw the initial means from N(0, mu_init_std²) instead of taking ``net``'s weights
        (bayesian-torch: 0.1), from a CPU generator seeded by ``mu_init_seed``.
    """

    def __init__(self, net: nn.Module, prior_std: float = 1.0, init_std: float = 1e-3,
                 local_reparam: bool = True, mu_init_std: float | None = None,
                 mu_init_seed: int = 0):
        super().__init__()
        if prior_std <= 0 or init_std <= 0 or (mu_init_std is not None and mu_init_std <= 0):
            raise BayesLRPError("prior_std, init_std and mu_init_std must be > 0")
        self.net = copy.deepcopy(net).eval()
        variational = _variational_names(self.net)
        named = [(n, p) for n, p in self.net.named_parameters() if n in variational]
        self.names = [name for name, _ in named]
        self.point_names = [n for n, _ in self.net.named_parameters() if n not in variational]
        self.mu = nn.ParameterList([nn.Parameter(p.detach().clone()) for _, p in named])
        if mu_init_std is not None:
            gen = torch.Generator().manual_seed(derive_seed(mu_init_seed, "vi-mu-init"))
            with torch.no_grad():
                for mu in self.mu:
                    mu.copy_(mu_init_std * torch.randn(mu.shape, generator=gen, dtype=mu.dtype))
        self.point = nn.ParameterList([nn.Parameter(p.detach().clone())
                                       for n, p in self.net.named_parameters()
                                       if n not in variational])
        rho0 = inverse_softplus(init_std)
        self.rho = nn.ParameterList([nn.Parameter(torch.full_like(p, rho0)) for _, p in named])
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.prior_std = float(prior_std)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.local = self._local_modules() if local_reparam else {}

    def _local_modules(self) -> dict[str, tuple[int, int | None]]:
        """Linear/Conv2d modules handled by local reparameterisation: name → (weight, bias) index."""
        out = {}
        for name, module in self.net.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
                    continue
                prefix = f"{name}." if name else ""
                bias = self.index.get(f"{prefix}bias") if module.bias is not None else None
                out[name] = (self.index[f"{prefix}weight"], bias)
        return out

    def sigma(self, i: int) -> torch.Tensor:
        return F.softplus(self.rho[i])

    def kl(self) -> torch.Tensor:
        """KL(q‖p) = Σ log(s/σ) + (σ² + μ²)/(2s²) − 1/2, summed over every parameter."""
        s2 = self.prior_std ** 2
        total = 0.0
        for i, mu in enumerate(self.mu):
            sigma = self.sigma(i)
            total = total + (math.log(self.prior_std) - torch.log(sigma)
                             + (sigma ** 2 + mu ** 2) / (2 * s2) - 0.5).sum()
        return total

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One stochastic forward pass (a fresh sample of the network for every data point)."""
        local_params = {i for pair in self.local.values() for i in pair if i is not None}
        params = {}
        for i, name in enumerate(self.names):
            if i in local_params:
                params[name] = self.mu[i]
            else:
                eps = torch.randn(self.mu[i].shape, generator=generator, device=self.mu[i].device,
                                  dtype=self.mu[i].dtype)
                params[name] = self.mu[i] + self.sigma(i) * eps
        params.update(zip(self.point_names, self.point))
        buffers = dict(self.net.named_buffers())
        with self._noise_hooks(generator):
            return functional_call(self.net, (params, buffers), (x,))

    @contextmanager
    def _noise_hooks(self, generator: torch.Generator):
        modules = dict(self.net.named_modules())
        handles = []
        try:
            for name, (wi, bi) in self.local.items():
                handles.append(modules[name].register_forward_hook(
                    self._make_hook(wi, bi, generator)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _make_hook(self, wi: int, bi: int | None, generator: torch.Generator):
        def hook(module, inputs, output):
            a2 = inputs[0] * inputs[0]
            w_var = self.sigma(wi) ** 2
            b_var = None if bi is None else self.sigma(bi) ** 2
            if isinstance(module, nn.Linear):
                var = F.linear(a2, w_var, b_var)
            else:
                var = F.conv2d(a2, w_var, b_var, module.stride, module.padding, module.dilation,
                               module.groups)
            eps = torch.randn(output.shape, generator=generator, device=output.device,
                              dtype=output.dtype)
            return output + var.clamp_min(1e-16).sqrt() * eps
        return hook

    def means(self) -> dict[str, torch.Tensor]:
        return {name: mu.detach().clone() for name, mu in zip(self.names, self.mu)}

    def points(self) -> dict[str, torch.Tensor]:
        """The point-estimated parameters (not Linear/Conv2d: e.g. BatchNorm scale and shift)."""
        return {name: p.detach().clone() for name, p in zip(self.point_names, self.point)}

    def rhos(self) -> dict[str, torch.Tensor]:
        return {name: rho.detach().clone() for name, rho in zip(self.names, self.rho)}

    def stds(self) -> dict[str, torch.Tensor]:
        return {name: F.softplus(rho.detach()) for name, rho in zip(self.names, self.rho)}


def _variational_names(net: nn.Module) -> set[str]:
    """Names of the parameters of every Linear and Conv2d module of ``net``."""
    out = set()
    for prefix, module in net.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            out.update(f"{prefix}.{n}" if prefix else n
                       for n, _ in module.named_parameters(recurse=False))
    return out


def draw(mu: dict[str, torch.Tensor], rho: dict[str, torch.Tensor], seed: int,
         j: int) -> dict[str, torch.Tensor]:
    """Posterior draw ``j``: ``μ + softplus(ρ)·ε`` with ε from a CPU generator seeded by
    ``derive_seed(seed, "vi-draw", j)``, one standard normal per parameter in ``mu``'s order.

    Depends only on (μ, ρ, seed, j): any draw can be reproduced alone, on any device.
    """
    generator = torch.Generator().manual_seed(derive_seed(seed, "vi-draw", j))
    out = {}
    for name, m in mu.items():
        eps = torch.randn(m.shape, generator=generator, dtype=m.dtype).to(m.device)
        out[name] = m + F.softplus(rho[name]) * eps
    return out


def nll(output: torch.Tensor, y: torch.Tensor, likelihood: str, noise_std: float) -> torch.Tensor:
    """Mean negative log-likelihood of a batch."""
    if likelihood == "categorical":
        return F.cross_entropy(output, y)
    resid = (output.reshape(y.shape) - y) / noise_std
    return (0.5 * resid ** 2).mean() + math.log(noise_std) + 0.5 * math.log(2 * math.pi)


def _check_fit_args(x, y, *, epochs, lr, batch_size, likelihood, noise_std, lr_schedule,
                    num_particles, options: TrainOptions) -> None:
    if likelihood not in LIKELIHOODS:
        raise BayesLRPError(f"unknown likelihood {likelihood!r}; choose {', '.join(LIKELIHOODS)}")
    if lr_schedule not in SCHEDULES:
        raise BayesLRPError(f"unknown lr_schedule {lr_schedule!r}; choose {', '.join(SCHEDULES)}")
    if epochs < 1 or lr <= 0 or batch_size < 1 or noise_std <= 0 or num_particles < 1:
        raise BayesLRPError("epochs, batch_size and num_particles must be >= 1, lr and noise_std > 0")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise BayesLRPError(f"{x.shape[0]} inputs but {y.shape[0]} targets")
    if options.weight_decay:
        raise BayesLRPError("VI takes no weight_decay: the prior (prior_std) is its regulariser")


def _set_lr(optimiser, lr: float, schedule: str, step: int, total_steps: int, epoch: int,
            options: TrainOptions) -> None:
    """Cosine annealing per step and/or the milestones' steps per epoch (none: constant)."""
    if schedule != "cosine" and not options.lr_milestones:
        return
    if schedule == "cosine":
        lr = 0.5 * lr * (1 + math.cos(math.pi * step / total_steps))
    if options.lr_milestones:
        lr = options.lr_at(epoch, lr)
    for group in optimiser.param_groups:
        group["lr"] = lr


def _particles(xb: torch.Tensor, yb: torch.Tensor, num_particles: int):
    if num_particles == 1:
        return xb, yb
    return (xb.repeat(num_particles, *([1] * (xb.ndim - 1))),
            yb.repeat(num_particles, *([1] * (yb.ndim - 1))))


def fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
        prior_std: float = 1.0, batch_size: int = 128, seed: int = 0, init_std: float = 1e-3,
        local_reparam: bool = True, likelihood: str = "categorical", noise_std: float = 1.0,
        lr_schedule: str = "constant", num_particles: int = 1, progress: bool = True,
        device: str | torch.device | None = None, description: str = "train vi",
        mu_init_std: float | None = None,
        options: TrainOptions | None = None) -> tuple[MeanField, dict]:
    """Fit a mean-field Gaussian posterior to ``net``'s parameters by maximising the ELBO.

    Adam on (μ, ρ) and the point estimates; each step minimises ``mean NLL of the batch +
    KL / N`` (the negative ELBO per data point, an unbiased estimate of it).
    ``lr_schedule="cosine"`` anneals the learning rate to 0 over the run (useful to reach the
    optimum precisely; the paper uses a constant rate). ``num_particles`` > 1 averages the data
    term over that many independent network samples per data point (the batch is repeated),
    lowering the gradient noise at proportional cost. ``options`` may choose SGD, milestone
    steps of the rate and augmentation (:class:`~bayeslrp.train.options.TrainOptions`; no
    weight decay: the prior regularises). The network runs in training mode (BatchNorm
    running statistics are updated from every sampled forward pass).

    Returns the fitted :class:`MeanField` (on ``device``) and a per-epoch history of the ELBO
    terms (``nll``, ``kl_per_point``, ``loss`` = negative ELBO / N, ``seconds``).
    """
    options = options or TrainOptions()
    _check_fit_args(x, y, epochs=epochs, lr=lr, batch_size=batch_size, likelihood=likelihood,
                    noise_std=noise_std, lr_schedule=lr_schedule, num_particles=num_particles,
                    options=options)
    device = torch.device(device or x.device)
    model = MeanField(net, prior_std, init_std, local_reparam, mu_init_std=mu_init_std,
                      mu_init_seed=seed).to(device)
    optimiser = options.optimizer_for([*model.mu, *model.rho, *model.point], lr)
    order_gen = torch.Generator().manual_seed(derive_seed(seed, "vi-order"))
    noise_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "vi-noise"))
    augment = options.augmenter(seed)
    n = x.shape[0]
    total_steps = epochs * -(-n // batch_size)
    history = {"nll": [], "kl_per_point": [], "loss": [], "seconds": []}
    step = 0
    model.net.train()
    with progress_bar(description, total_steps, enabled=progress) as bar:
        for epoch in range(epochs):
            started = time.perf_counter()
            order = torch.randperm(n, generator=order_gen)
            sums = {k: torch.zeros((), dtype=torch.float64, device=device)  # no sync per step
                    for k in ("nll", "kl_per_point", "loss")}
            for start in range(0, n, batch_size):
                _set_lr(optimiser, lr, lr_schedule, step, total_steps, epoch, options)
                idx = order[start:start + batch_size]
                xb, yb = x[idx].to(device), y[idx].to(device)
                if augment is not None:
                    xb = augment(xb)
                xp, yp = _particles(xb, yb, num_particles)
                data_term = nll(model(xp, noise_gen), yp, likelihood, noise_std)
                kl_term = model.kl() / n
                loss = data_term + kl_term
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                step += 1
                weight = yb.shape[0] / n
                for key, value in (("nll", data_term), ("kl_per_point", kl_term), ("loss", loss)):
                    sums[key] += value.detach().double() * weight
                if bar.enabled:
                    bar.advance(1, nll=float(data_term.detach()), kl_n=float(kl_term.detach()))
            for key, value in sums.items():
                history[key].append(float(value))
            history["seconds"].append(time.perf_counter() - started)
    model.net.eval()
    return model, history
