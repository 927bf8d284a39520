"""Explainer plug-ins: :data:`EXPLAINERS` maps names to :class:`ExplainerMethod` classes.

A method implements :meth:`ExplainerMethod.per_sample` (every posterior sample's heatmap
``[S, B, H, W]``) or overrides :meth:`~ExplainerMethod.heatmaps` entirely. ``Params`` is the
pydantic model of its options, given in the config as ``explain.options.<name>``; the LRP
rules take theirs from ``explain.rule_params``. Torch-free at import.
"""
from __future__ import annotations

from typing import Any, ClassVar

from bayeslrp.plugins.registry import Registry
from bayeslrp.plugins.spec import StrictSpec

__all__ = ["EXPLAINERS", "ExplainerMethod", "NoParams"]


class NoParams(StrictSpec):
    """An explainer without options."""


class ExplainerMethod:
    """An explanation method; subclass, set ``name``, implement :meth:`per_sample`, register."""

    name: ClassVar[str]
    Params: ClassVar[type[StrictSpec]] = NoParams
    #: Heatmaps are differentiable in the input (usable by attacks on explanations).
    differentiable: ClassVar[bool] = True

    def key_args(self, explain_spec: Any) -> dict[str, Any]:
        """The method's parameters from the config's ``explain`` section (enter the key)."""
        options = (explain_spec.options or {}).get(self.name, {})
        return self.Params.model_validate(options).model_dump(mode="json")

    def check_settings(self, params: dict, seed: str) -> None:
        """Refuse (``ValueError``) settings this method cannot honour, at config load time;
        ``params`` are the method's validated parameters, ``seed`` the output seed."""

    def per_sample(self, ens, x, explainer, *, target, create_graph: bool,
                   surrogate_beta: float | None):
        """Every sample's heatmap ``[S, B, H, W]`` (S = ``explainer.n_samples`` or all)."""
        raise NotImplementedError

    def heatmaps(self, ens, x, explainer, *, target=None, create_graph: bool = False,
                 surrogate_beta: float | None = None):
        """Heatmaps reduced as ``explainer.reduce`` says (population std over samples)."""
        import torch

        with torch.set_grad_enabled(create_graph or torch.is_grad_enabled()):
            Rs = self.per_sample(ens, x, explainer, target=target, create_graph=create_graph,
                                 surrogate_beta=surrogate_beta)
        if explainer.reduce is None:
            return Rs
        if explainer.reduce == "mean_std":
            return Rs.mean(0), Rs.std(0, correction=0)
        return Rs.mean(0)


EXPLAINERS: Registry[ExplainerMethod] = Registry("explainer")
