"""``bl.explain``: the one library entry point for every registered explainer."""
from __future__ import annotations

from collections.abc import Mapping

from .explainer import Explainer

__all__ = ["explain"]


def explain(ens, x, method="integrated_gradients", layer=None, n_samples=None, reduce="mean",
            create_graph=False, *, target=None, seed="logit", inner="max",
            target_mode="predictive", surrogate_beta=None, **params):
    """Heatmaps ``[B, H, W]`` (relevance / attribution summed over input channels).

    Parameters
    ----------
    ens : Ensemble or nn.Sequential
        The model; a plain network counts as one sample.
    x : Tensor
        Images ``[B, C, H, W]``.
    method : str or mapping
        A registered explainer: ``gradient``, ``grad_x_input``, ``integrated_gradients``,
        ``smoothgrad``, ``noisegrad``, ``fusiongrad``, the LRP rules ``epsilon`` / ``gamma`` /
        ``alphabeta``, the composites ``epsilon_plus`` / ``epsilon_alpha2_beta1`` /
        ``epsilon_gamma_box`` / ``composite``, or a user's plug-in. A mapping is a composite's
        per-layer rule map (``{"input": "zbox", "conv": "zplus", "default": "epsilon"}``).
    layer : int, optional
        Learnable layer explained (``None``: the output layer).
    n_samples : int, optional
        Posterior samples used (default: all).
    reduce : {"mean", "mean_std", None}
        The Bayesian mean ``[B, H, W]``, ``(mean, std)`` with the per-pixel population std, or
        every sample's heatmap ``[S, B, H, W]``.
    create_graph : bool
        Keep the graph so the heatmaps are differentiable in ``x`` (attacks on explanations).
    target : int or Tensor, optional
        The class (output layer) or unit / channel (inner layer) per image.
    seed, inner, target_mode
        The target rules of SPEC §4 (see :class:`~bayeslrp.explainers.Explainer`).
    surrogate_beta : float, optional
        Differentiate through a softplus(β) surrogate of the ReLU-type activations.
    **params
        The method's own parameters (e.g. ``steps=256`` for integrated gradients,
        ``epsilon=0.1`` for ε-LRP, ``base="integrated_gradients"`` for SmoothGrad).
        Integrated gradients' quadrature (its parameter ``method`` in a config or an
        :class:`~bayeslrp.explainers.Explainer`) is given here as ``quadrature=``.

    Returns
    -------
    Tensor or (Tensor, Tensor)
        As ``reduce`` says.
    """
    if "quadrature" in params:  # integrated gradients' own `method` (the name is taken here)
        params["method"] = params.pop("quadrature")
    if isinstance(method, Mapping):
        params = {**params, "rules": dict(method)}
        method = "composite"
    if reduce == "none":
        reduce = None
    explainer = Explainer(method=str(method), params=params, layer=layer, seed=seed, inner=inner,
                          target_mode=target_mode, n_samples=n_samples, reduce=reduce)
    explainer.method_class  # unknown names fail here, in one line
    return explainer.explain(ens, x, target=target, create_graph=create_graph,
                             surrogate_beta=surrogate_beta)
