"""Model-method plug-ins: :data:`MODEL_METHODS` maps ``method:`` names to their classes.

Add a method by subclassing :class:`ModelMethod` (with its ``Spec``) and registering it::

    @MODEL_METHODS.register
    class MyMethod(ModelMethod):
        name = "mine"
        Spec = MySpec
        def train(self, spec, net, x, y, *, init=None, common): ...
"""
from bayeslrp.plugins.models.adversarial import AdvMethod, AdvModel
from bayeslrp.plugins.models.base import ModelMethod, ModelSpecBase
from bayeslrp.plugins.models.bayes_base import BayesSpecBase
from bayeslrp.plugins.models.deterministic import DetMethod, DetModel
from bayeslrp.plugins.models.ensemble import EnsembleMethod, EnsembleModel
from bayeslrp.plugins.models.hmc import HMCMethod, HMCModel
from bayeslrp.plugins.models.laplace import LaplaceMethod, LaplaceModel
from bayeslrp.plugins.models.mc_dropout import MCDropoutMethod, MCDropoutModel
from bayeslrp.plugins.models.vi import VIMethod, VIModel
from bayeslrp.plugins.models.weight_noise import WeightNoiseMethod, WeightNoiseModel
from bayeslrp.plugins.registry import Registry

__all__ = ["MODEL_METHODS", "AdvModel", "BayesSpecBase", "DetModel", "EnsembleModel", "HMCModel",
           "LaplaceModel", "MCDropoutModel", "ModelMethod", "ModelSpecBase", "VIModel",
           "WeightNoiseModel", "model_method"]

MODEL_METHODS: Registry[ModelMethod] = Registry("model method")
for _cls in (DetMethod, AdvMethod, VIMethod, HMCMethod, EnsembleMethod, MCDropoutMethod,
             LaplaceMethod, WeightNoiseMethod):
    MODEL_METHODS.register(_cls)


def model_method(name: str) -> ModelMethod:
    """An instance of the model method registered as ``name``."""
    return MODEL_METHODS.get(name)()
