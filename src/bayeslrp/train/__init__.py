"""Training: each method returns an :class:`~bayeslrp.ensemble.Ensemble`."""
from __future__ import annotations

from .adversarial import adversarial
from .deterministic import deterministic
from .hmc import hmc
from .matched import accuracy_matched
from .options import TrainOptions
from .vi import vi
from .vi_elbo import negative_elbo

__all__ = ["TrainOptions", "accuracy_matched", "deterministic", "adversarial", "vi", "hmc", "negative_elbo"]
