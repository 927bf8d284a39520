"""``method: noise`` — the random-sign noise floor (:func:`bayeslrp.attacks.sign_noise`)."""
from __future__ import annotations

from typing import Literal

from bayeslrp.plugins.attacks.base import AttackMethod, AttackSpecBase
from bayeslrp.plugins.attacks.gradient import attack_seed

__all__ = ["NoiseAttack", "NoiseMethod"]


class NoiseAttack(AttackSpecBase):
    """Uniform ±ε sign noise per pixel, clamped to the data range, seeded by the config."""

    method: Literal["noise"]


class NoiseMethod(AttackMethod):
    """Model-free: ``n_samples`` has no effect on the images (kept in the key for the grid)."""

    name = "noise"
    Spec = NoiseAttack

    def cost(self, spec, n_images, n_samples, flops):
        return float(n_images), "attack"

    def run(self, ens, x, y, spec, *, seed, explainer=None, bounds=(0.0, 1.0)):
        from bayeslrp.attacks.noise import sign_noise

        return sign_noise(x, eps=spec["eps"], seed=attack_seed(seed, "noise"), bounds=bounds)
