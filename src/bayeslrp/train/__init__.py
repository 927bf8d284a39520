"""Training: each method returns an :class:`~bayeslrp.ensemble.Ensemble`."""
from __future__ import annotations

from .adversarial import adversarial
from .deep_ensemble import ensemble
from .deterministic import deterministic
from .hmc import hmc
from .laplace import laplace
from .matched import accuracy_matched
from .mc_dropout import mc_dropout
from .options import TrainOptions
from .vi import vi
from .vi_elbo import negative_elbo
from .weight_noise import weight_noise

__all__ = ["TrainOptions", "accuracy_matched", "deterministic", "adversarial", "vi", "hmc",
           "negative_elbo", "ensemble", "mc_dropout", "laplace", "weight_noise"]
