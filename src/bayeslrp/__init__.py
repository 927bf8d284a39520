"""bayeslrp: stability of layer-wise relevance explanations of deterministic and Bayesian
networks under adversarial attack.

Submodules are imported on first use (``bl.lrp``, ``bl.attacks`` …) so that ``import bayeslrp``
stays fast.
"""
from __future__ import annotations

import importlib

from .ensemble import Ensemble, ModelFileError
from .errors import BayesLRPError

__version__ = "0.1.0"

_SUBMODULES = ("data", "nets", "train", "mcmc", "lrp", "attacks", "metrics", "stats",
               "experiment", "plots", "report", "fileio", "explainers", "plugins", "catalog",
               "analysis")

__all__ = ["Ensemble", "BayesLRPError", "ModelFileError", "__version__", "explain", "robustness", *_SUBMODULES]


def __getattr__(name: str):
    if name == "explain":  # bl.explain: the one library entry point of every explainer
        from .explainers.api import explain

        globals()["explain"] = explain
        return explain
    if name == "robustness":  # bl.robustness: one call for a robustness number
        from .scoring import robustness

        globals()["robustness"] = robustness
        return robustness
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'bayeslrp' has no attribute {name!r}")
