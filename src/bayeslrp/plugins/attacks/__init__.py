"""Attack plug-ins: :data:`ATTACK_METHODS` maps ``method:`` names to their classes.

The same names serve the config (``attacks[].method``), the library dispatcher
(:func:`bayeslrp.attacks.run_attack`) and the CLI (``bayeslrp attack --method``).
"""
from bayeslrp.plugins.attacks.base import AttackMethod, AttackSpecBase
from bayeslrp.plugins.attacks.gradient import (FGSMAttack, FGSMMethod, PGDAdaptiveAttack,
                                               PGDAdaptiveMethod, PGDAttack, PGDMethod)
from bayeslrp.plugins.attacks.noise import NoiseAttack, NoiseMethod
from bayeslrp.plugins.attacks.saliency import (BetaAttack, BetaMethod, RegionAttack,
                                               RegionMethod, TopKAttack, TopKMethod)
from bayeslrp.plugins.registry import Registry

__all__ = ["ATTACK_METHODS", "AttackMethod", "AttackSpecBase", "BetaAttack", "FGSMAttack",
           "NoiseAttack", "PGDAdaptiveAttack", "PGDAttack", "RegionAttack", "TopKAttack", "attack_method"]

ATTACK_METHODS: Registry[AttackMethod] = Registry("attack")
for _cls in (FGSMMethod, PGDMethod, TopKMethod, RegionMethod, BetaMethod, NoiseMethod,
             PGDAdaptiveMethod):
    ATTACK_METHODS.register(_cls)


def attack_method(name: str) -> AttackMethod:
    """An instance of the attack registered as ``name``."""
    return ATTACK_METHODS.get(name)()
