"""FGSM and PGD against ensembles (SPEC §5)."""
from __future__ import annotations

from typing import Literal

from bayeslrp.plugins.attacks.base import AttackMethod, AttackSpecBase
from bayeslrp.plugins.spec import EnsembleMode, PosFloat, PosInt

__all__ = ["FGSMAttack", "FGSMMethod", "PGDAdaptiveAttack", "PGDAdaptiveMethod", "PGDAttack",
           "PGDMethod", "attack_seed"]


def attack_seed(seed: int, *tags: object) -> int:
    """A 63-bit seed of one random stream of an attack (the experiment's derivation)."""
    from bayeslrp.mcmc.seeds import derive_seed

    return derive_seed(int(seed), "experiment", *tags)


class FGSMAttack(AttackSpecBase):
    """FGSM, ``x̃ = clamp(x + ε·sign ∇x L)``."""

    method: Literal["fgsm"]
    mode: EnsembleMode = "expected_gradient"


class PGDAttack(AttackSpecBase):
    """PGD with a uniform random start in the ε-ball."""

    method: Literal["pgd"]
    mode: EnsembleMode = "expected_gradient"
    steps: PosInt = 40
    alpha: PosFloat = 0.01
    restarts: PosInt = 1
    targeted: bool = False


class PGDAdaptiveAttack(PGDAttack):
    """The "adaptive" strength level: PGD with 5× the steps and 5 restarts; each image keeps
    a successful restart over an unsuccessful one, then the highest loss. Its random starts
    are PGD's (same seed stream), so restart 1 is ``pgd`` with the same ``steps`` and
    ``alpha``."""

    method: Literal["pgd_adaptive"]  # type: ignore[assignment]
    steps: PosInt = 200
    restarts: PosInt = 5


class _GradientMethod(AttackMethod):
    resumable = True

    def mode(self, spec, bayesian):
        return spec.get("mode", "") if bayesian else ""


class FGSMMethod(_GradientMethod):
    """``method: fgsm`` — :func:`bayeslrp.attacks.fgsm`."""

    name = "fgsm"
    Spec = FGSMAttack

    def run(self, ens, x, y, spec, *, seed, explainer=None, bounds=(0.0, 1.0),
            checkpoint=None):
        from bayeslrp import attacks

        return attacks.fgsm(ens, x, y, eps=spec["eps"], n_samples=int(spec["n_samples"]),
                            mode=spec["mode"], bounds=bounds, checkpoint=checkpoint)


class PGDMethod(_GradientMethod):
    """``method: pgd`` — :func:`bayeslrp.attacks.pgd` (``targeted``: a seeded other class)."""

    name = "pgd"
    Spec = PGDAttack

    #: how restarts are compared per image (:func:`bayeslrp.attacks.pgd` ``keep``)
    keep = "loss"

    def run(self, ens, x, y, spec, *, seed, explainer=None, bounds=(0.0, 1.0),
            checkpoint=None):
        import torch

        from bayeslrp import attacks

        targeted = None
        if spec["targeted"]:
            n_classes = int(ens.predict_proba(x[:1], 1).shape[-1])
            generator = torch.Generator().manual_seed(attack_seed(seed, "pgd-target"))
            shift = torch.randint(1, n_classes, (y.shape[0],), generator=generator)
            targeted = (y.cpu() + shift).remainder(n_classes).to(x.device)
        return attacks.pgd(ens, x, y, eps=spec["eps"], steps=spec["steps"], alpha=spec["alpha"],
                           n_samples=int(spec["n_samples"]), mode=spec["mode"],
                           restarts=spec["restarts"], targeted=targeted,
                           seed=attack_seed(seed, "pgd-start"), bounds=bounds,
                           checkpoint=checkpoint, keep=self.keep)


class PGDAdaptiveMethod(PGDMethod):
    """``method: pgd_adaptive`` — :func:`bayeslrp.attacks.pgd` with ``keep="success"``."""

    name = "pgd_adaptive"
    Spec = PGDAdaptiveAttack
    keep = "success"
