"""Layer-wise relevance propagation for Ensembles (SPEC §4).

>>> R = bl.lrp.explain(ens, x, rule="epsilon", layer=5, n_samples=100)        # [B, H, W]
>>> Rs = bl.lrp.explain(ens, x, rule="gamma", reduce=None)                    # [S, B, H, W]
>>> mean, std = bl.lrp.explain_with_std(ens, x, rule="alphabeta", layer=3)    # [B, H, W] each

Rules: :mod:`~bayeslrp.lrp.rules`; per-module propagation: :mod:`~bayeslrp.lrp.layers`
(which module gets which node: :mod:`~bayeslrp.lrp.handlers`; nested and traced networks:
:mod:`~bayeslrp.lrp.graph`);
targets and seeds: :mod:`~bayeslrp.lrp.targets`; the driver: :mod:`~bayeslrp.lrp.engine`.
"""
from .composite import Composite
from .engine import DEFAULT_MEMORY_BUDGET, chunk_plan, explain, explain_with_std
from .handlers import check_network
from .handlers import register as register_handler
from .rules import AlphaBeta, Epsilon, Gamma, Rule, ZBox, make_rule
from .stack import ParamStack, as_stack
from .targets import resolve_layer

__all__ = ["explain", "explain_with_std", "chunk_plan", "make_rule", "Rule", "Epsilon", "Gamma",
           "AlphaBeta", "ZBox", "Composite", "ParamStack", "as_stack", "resolve_layer",
           "DEFAULT_MEMORY_BUDGET", "check_network", "register_handler"]
