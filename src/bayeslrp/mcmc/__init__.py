"""Generic Hamiltonian Monte Carlo on a flat parameter vector.

The kernel (:mod:`.kernel`: leapfrog + Metropolis) is apart from the driver (:mod:`.driver`:
warmup adaptation, checkpoints, resume) and from the diagnostics (:mod:`.diagnostics`).

>>> import torch, bayeslrp as bl
>>> fn = bl.mcmc.with_autograd(lambda q: 0.5 * (q ** 2).sum())
>>> draws, diag = bl.mcmc.sample(fn, torch.zeros(3), n_samples=10, warmup=10)
"""
from __future__ import annotations

from .diagnostics import ebfmi, ess, ess_bulk, mcse_mean, rank_normalize, rhat, split_rhat
from .driver import MASS_KINDS, sample
from .kernel import MAX_ENERGY_ERROR, Point, evaluate, find_reasonable_step_size, hmc_step, with_autograd
from .seeds import derive_seed

__all__ = ["sample", "with_autograd", "hmc_step", "find_reasonable_step_size", "evaluate", "Point",
           "ess", "ess_bulk", "rhat", "split_rhat", "rank_normalize", "mcse_mean", "ebfmi",
           "derive_seed", "MASS_KINDS", "MAX_ENERGY_ERROR"]
