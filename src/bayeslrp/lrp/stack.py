"""A model as one architecture plus stacked per-sample parameters, without an Ensemble.

Explainers that perturb weights (NoiseGrad, FusionGrad) explain many weight sets per posterior
sample; a :class:`ParamStack` carries them to :func:`bayeslrp.lrp.explain` and to the
gradient explainers without building an :class:`~bayeslrp.ensemble.Ensemble` (and a module)
per draw.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import BayesLRPError

__all__ = ["ParamStack", "as_stack"]


@dataclass(frozen=True)
class ParamStack:
    """``module`` (the architecture, an ``nn.Module``) and ``params``: its ``state_dict``
    names mapped to tensors with a leading sample axis ``[n, ...]``."""

    module: nn.Module
    params: dict

    @property
    def n(self) -> int:
        return next(iter(self.params.values())).shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    @property
    def dtype(self) -> torch.dtype:
        return next(v for v in self.params.values() if v.is_floating_point()).dtype

    def head(self, n: int) -> "ParamStack":
        return ParamStack(self.module, {k: v[:n] for k, v in self.params.items()})

    def rows(self, sl: slice) -> "ParamStack":
        return ParamStack(self.module, {k: v[sl] for k, v in self.params.items()})

    def learnable_names(self) -> list[str]:
        """The entries that are learnable parameters (weights, biases), not buffers."""
        return [name for name, _ in self.module.named_parameters()]


def as_stack(model, n_samples: int | None = None) -> ParamStack:
    """The first ``n_samples`` samples of an Ensemble, a ParamStack or a single network."""
    from ..ensemble import Ensemble

    if isinstance(model, ParamStack):
        n = model.n if n_samples is None else int(n_samples)
        if not 1 <= n <= model.n:
            raise BayesLRPError(f"n_samples={n_samples} is not available: the model has "
                                f"{model.n} samples")
        return model.head(n)
    if isinstance(model, Ensemble):
        n = model.resolve_n(n_samples)
        return ParamStack(model.module, {k: v[:n] for k, v in model.params.items()})
    if isinstance(model, nn.Module):
        if n_samples not in (None, 1):
            raise BayesLRPError(f"a single network has one sample; n_samples={n_samples} is not "
                                "available (wrap several networks in bl.Ensemble.from_modules)")
        return ParamStack(model, {k: v.detach().unsqueeze(0)
                                  for k, v in model.state_dict().items()})
    raise BayesLRPError(f"explain needs a bayeslrp Ensemble or an nn.Module, not "
                        f"{type(model).__name__}")
