"""Attacks on explanations (paper 000 appendix C, SPEC §5), with real gradients through LRP.

``topk`` and ``region`` (Ghorbani et al. 2019) take signed steps along the gradient of a
dissimilarity of heatmaps, keeping the predicted class; ``manipulate`` (Dombrowski et al. 2019)
moves the heatmap towards that of another image with Adam, differentiating through the LRP of a
softplus(β) surrogate network. The explanation of an ensemble is its Bayesian mean heatmap over
``n_samples`` samples, so the same calls attack deterministic and Bayesian models, for every LRP
rule and layer (extra keyword arguments go to the explanation function).

The explanation is computed by ``explain_fn`` (default :func:`bayeslrp.lrp.explain`), called as
``explain_fn(ens, x, rule=…, layer=…, n_samples=…, create_graph=…, surrogate_beta=…, **kwargs)``
and returning ``[B, H, W]`` heatmaps differentiable in ``x`` when ``create_graph`` is true.
"""
from __future__ import annotations

from typing import Callable

import torch

from .. import metrics
from ..compat import check_data
from ..ensemble import Ensemble
from ..errors import BayesLRPError
from ._common import (check_images, check_labels, check_positive, data_args, image_chunks,
                      project)

ExplainFn = Callable[..., torch.Tensor]
_SALIENCY_GRAPH_FACTOR = 12.0  # a second-order graph holds several copies of the activations
_TINY = 1e-12


def topk(ens: Ensemble, x: torch.Tensor, y: torch.Tensor | None = None, eps: float = 0.2,
         k: float = 20, alpha: float = 0.5, steps: int = 10, rule: str = "epsilon",
         layer: int | None = None, n_samples: int | None = None, *, magnitude: bool = True,
         normalize: bool = True, backtrack: int = 3, surrogate_beta: float | None = None,
         explain_fn: ExplainFn | None = None, batch_size: int | None = None,
         explainer=None, topk_mode: str = "abs", ties: str = "nonzero",
         bounds: tuple[float, float] | None = None, **explain_kwargs) -> torch.Tensor:
    """Top-k attack (Ghorbani et al. 2019): push relevance out of the clean top-k pixels.

    Ascends ``D(x̃) = −Σ_{p ∈ Top_k(R(x))} h(R(x̃))_p`` with signed steps
    ``x̃ ← Proj_ε(x̃ + alpha·eps·sign(∇D))``, clamped to ``bounds`` ([0, 1]). ``Top_k`` is
    :func:`bayeslrp.metrics.topk_mask` (``|R|``, ties ``"nonzero"``) of the clean heatmap.
    A step that changes the predicted class (predictive mean over ``n_samples``) is not taken:
    the same direction is tried with half the step, up to ``backtrack`` times (forward passes
    only); if every try changes the class the image stays where it is for this iteration. Each
    image returns the iterate (the clean image included) with the lowest k-LRP robustness
    (:func:`bayeslrp.metrics.lrp_robustness` with ``topk_mode`` and ``ties``: the selection the
    results are scored with) against its clean heatmap.

    Parameters
    ----------
    ens : Ensemble
        Deterministic (S = 1) or Bayesian model.
    x : Tensor
        Images ``[B, C, H, W]`` in [0, 1].
    y : Tensor, optional
        The classes the attacked images must keep, ``[B]`` (default: the clean predicted class).
    eps : float
        L∞ radius in pixel units (paper: 0.2).
    k : float
        Percentage of pixels attacked (paper: 20).
    alpha : float
        Step size as a fraction of ``eps`` (paper: 0.5, so steps of 0.1 at ε = 0.2).
    steps : int
        Number of iterations T (paper: 10).
    rule, layer, n_samples
        The explanation attacked: LRP rule, layer (``None``: the output layer), samples.
    magnitude : bool
        Use ``h(R) = |R|`` (consistent with the ``|R|`` top-k metric) instead of the signed ``R``
        of the paper's formula. Its subgradient at ``R = 0`` is taken as +1, so relevance can
        appear on pixels that had none (zero-valued pixels get exactly zero first-layer LRP).
    normalize : bool
        Divide ``h`` by ``Σ_p |R(x̃)_p|`` per image, as Ghorbani et al.'s normalised saliency, so
        the attack moves relevance instead of shrinking the whole heatmap.
    backtrack : int
        How many halvings of a class-changing step are tried within one iteration.
    surrogate_beta : float, optional
        Differentiate through LRP of a softplus(β) surrogate (selection still uses the true LRP).
    explain_fn : callable, optional
        The explanation function (default :func:`bayeslrp.lrp.explain`).
    batch_size : int, optional
        Images per chunk (default: as many as fit about 1 GiB of graph).
    explainer : Explainer, optional
        The attacked explanation, whole (:class:`bayeslrp.explainers.Explainer`); replaces
        ``rule``, ``layer``, ``explain_fn`` and ``explain_kwargs``. ``n_samples`` still selects
        the samples.
    topk_mode, ties : str
        Top-k selection of the best-iterate score (:func:`bayeslrp.metrics.lrp_robustness`).
    bounds : (float, float), optional
        Pixel value range (default [0, 1]; a :class:`bayeslrp.data.Dataset` as ``x`` gives its
        own); ``eps`` is in its units.
    **explain_kwargs
        Passed to ``explain_fn`` (for :func:`bayeslrp.lrp.explain`: ``target``, ``inner``,
        rule parameters such as ``epsilon``; its relevance ``seed`` option as ``lrp_seed``).

    Returns
    -------
    Tensor
        Attacked images, same shape and device as ``x``.
    """
    return _ghorbani(ens, x, y, "topk", eps=eps, k=k, alpha=alpha, steps=steps, rule=rule,
                     layer=layer, n_samples=n_samples, magnitude=magnitude, normalize=normalize,
                     surrogate_beta=surrogate_beta, explain_fn=explain_fn, batch_size=batch_size,
                     seed=0, region=None, backtrack=backtrack, explain_kwargs=explain_kwargs,
                     explainer=explainer, selection=(topk_mode, ties), bounds=bounds)


def region(ens: Ensemble, x: torch.Tensor, y: torch.Tensor | None = None, eps: float = 0.2,
           k: float = 20, alpha: float = 0.5, steps: int = 10, rule: str = "epsilon",
           layer: int | None = None, n_samples: int | None = None, *, seed: int = 0,
           region_mask: torch.Tensor | None = None, magnitude: bool = True,
           normalize: bool = True, backtrack: int = 3, surrogate_beta: float | None = None,
           explain_fn: ExplainFn | None = None, batch_size: int | None = None,
           explainer=None, bounds: tuple[float, float] | None = None,
           **explain_kwargs) -> torch.Tensor:
    """Target-region attack (Ghorbani et al. 2019): pull relevance into a region ``A_k``.

    Ascends ``D(x̃) = Σ_{p ∈ A_k} h(R(x̃))_p`` with the steps, projection, clamp and label rule of
    :func:`topk`. ``A_k`` is, per image, ``floor(k·P/100)`` pixels drawn uniformly without
    replacement by a generator seeded with ``seed`` (or ``region_mask``). Each image returns the
    accepted iterate (the clean image included) with the largest ``D`` of its true heatmap.

    Parameters
    ----------
    seed : int
        Seed of the random regions (drawn for the whole batch: independent of ``batch_size``).
    region_mask : Tensor, optional
        Boolean ``[B, H, W]`` regions to use instead of random ones.

    Other parameters are those of :func:`topk`.

    Returns
    -------
    Tensor
        Attacked images, same shape and device as ``x``.
    """
    x, y, bounds = data_args(x, y, bounds)
    check_images(x, bounds=bounds)
    if region_mask is None:
        region_mask = random_region(x.shape[0], tuple(x.shape[-2:]), k, seed)
    elif region_mask.shape != (x.shape[0], *x.shape[-2:]) or region_mask.dtype != torch.bool:
        raise BayesLRPError(f"region_mask must be a bool tensor of shape "
                            f"{(x.shape[0], *x.shape[-2:])}")
    return _ghorbani(ens, x, y, "region", eps=eps, k=k, alpha=alpha, steps=steps, rule=rule,
                     layer=layer, n_samples=n_samples, magnitude=magnitude, normalize=normalize,
                     surrogate_beta=surrogate_beta, explain_fn=explain_fn, batch_size=batch_size,
                     seed=seed, region=region_mask, backtrack=backtrack,
                     explain_kwargs=explain_kwargs, explainer=explainer,
                     selection=("abs", "nonzero"), bounds=bounds)


def manipulate(ens: Ensemble, x: torch.Tensor, x_target: torch.Tensor, eps: float | None = 0.2,
               gamma: float = 1.0, lr: float = 0.01, steps: int = 10, beta: float | None = 100.0,
               rule: str = "epsilon", layer: int | None = None, n_samples: int | None = None, *,
               normalize: bool = False, explain_fn: ExplainFn | None = None,
               batch_size: int | None = None, explainer=None,
               bounds: tuple[float, float] | None = None, **explain_kwargs) -> torch.Tensor:
    """Explanation manipulation (Dombrowski et al. 2019): make ``R(x̃)`` look like ``R(x̂)``.

    Minimises, per image, ``‖R_β(x̃) − R(x̂)‖² + γ‖p̄(x̃) − p̄(x)‖²`` over ``x̃`` with Adam
    (``lr``, ``steps`` iterations), where ``R_β`` is the LRP heatmap computed on the softplus(β)
    surrogate network (the gradient path; ``beta=None`` differentiates the true LRP), ``R(x̂)``
    the true heatmap of the target image and ``p̄`` the predictive mean softmax over
    ``n_samples``. After every step ``x̃`` is projected onto the ε-ball around ``x`` (``eps=None``:
    no ball) and clamped to ``bounds`` ([0, 1]). Each image returns the iterate (the clean image included) with
    the lowest objective computed with the true heatmap (not the surrogate's), as
    :func:`topk` and :func:`region` choose theirs.

    Parameters
    ----------
    ens : Ensemble
        Deterministic or Bayesian model.
    x : Tensor
        Images ``[B, C, H, W]`` in [0, 1].
    x_target : Tensor
        ``x̂``, one target image per image (see :func:`random_other_indices`).
    eps : float or None
        L∞ radius (SPEC: 0.2; with lr 0.01 and 10 Adam steps a pixel moves at most about 0.1, so
        the ball rarely binds).
    gamma : float
        Weight of the output term (paper: 1).
    lr, steps : float, int
        Adam learning rate and iterations (paper: 0.01, 10).
    beta : float or None
        Softplus surrogate sharpness for the gradient path (paper: 100).
    rule, layer, n_samples
        The explanation attacked.
    normalize : bool
        Compare heatmaps divided by their per-image ``Σ_p |R_p|`` instead of raw heatmaps.
    explain_fn, batch_size, explainer, bounds, **explain_kwargs
        As in :func:`topk`.

    Returns
    -------
    Tensor
        Attacked images, same shape and device as ``x``.
    """
    x, _, bounds = data_args(x, None, bounds)
    check_images(x, bounds=bounds)
    check_data(ens, x)
    check_images(x_target, "x_target", bounds)
    if x_target.shape != x.shape:
        raise BayesLRPError(f"x_target must have the shape of x {tuple(x.shape)}; "
                            f"got {tuple(x_target.shape)}")
    check_positive(lr=lr, steps=steps)
    if eps is not None:
        check_positive(eps=eps)
    if gamma < 0:
        raise BayesLRPError(f"gamma must be >= 0; got {gamma}")
    n = ens.resolve_n(n_samples)
    heatmap = _heatmap_function(ens, n, explainer, explain_fn, rule, layer, explain_kwargs)
    device = ens.device
    x_all, t_all = x.detach().to(device), x_target.detach().to(device)

    def objective(images, target_map, p0, graph, beta_=beta):
        R = heatmap(images, graph, beta_)
        if normalize:
            R, target_map = _unit_mass(R), _unit_mass(target_map)
        p = ens.logits(images, n).softmax(-1).mean(0)
        return (((R - target_map) ** 2).flatten(1).sum(1)
                + gamma * ((p - p0) ** 2).sum(1))

    def true_objective(images, target_map, p0):
        with torch.enable_grad():  # the explanation may need autograd even without a graph
            return objective(images.detach().requires_grad_(True), target_map, p0, graph=False,
                             beta_=None).detach()

    out = []
    for sl in image_chunks(ens, x_all, n, batch_size, factor=_SALIENCY_GRAPH_FACTOR):
        x0 = x_all[sl]
        with torch.no_grad():
            target_map = heatmap(t_all[sl], False, None).detach()
            p0 = ens.predict_proba(x0, n)
        x_var = x0.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([x_var], lr=lr)
        best, best_loss = x0.clone(), None
        for _ in range(int(steps)):
            loss = objective(x_var, target_map, p0, graph=True)
            true_loss = loss.detach() if beta is None else true_objective(x_var, target_map, p0)
            best, best_loss = _keep_lower(best, best_loss, x_var.detach(), true_loss)
            (grad,) = torch.autograd.grad(loss.sum(), x_var)
            x_var.grad = grad
            optimiser.step()
            with torch.no_grad():
                x_var.copy_(project(x_var, x0, eps, bounds))
        best, _ = _keep_lower(best, best_loss, x_var.detach(),
                              true_objective(x_var, target_map, p0))
        out.append(best)
    return torch.cat(out).to(x.device)


def random_other_indices(n: int, seed: int = 0) -> torch.Tensor:
    """For each of ``n`` images the index of a uniformly random *other* image, ``[n]`` int64.

    Seeded (``torch.Generator``): same ``(n, seed)``, same indices. Needs ``n >= 2``.
    """
    if int(n) < 2:
        raise BayesLRPError("choosing a different target image needs at least 2 images")
    generator = torch.Generator().manual_seed(int(seed))
    draw = torch.randint(0, n - 1, (n,), generator=generator)
    own = torch.arange(n)
    return draw + (draw >= own).long()  # skip the image itself


def random_region(n_images: int, shape: tuple[int, int], k: float = 20,
                  seed: int = 0) -> torch.Tensor:
    """Per image a random set of ``floor(k·P/100)`` of the ``P = H·W`` pixels, bool ``[B, H, W]``.

    Seeded (``torch.Generator``): same arguments, same regions.
    """
    generator = torch.Generator().manual_seed(int(seed))
    scores = torch.rand((n_images, *shape), generator=generator)
    return metrics.topk_mask(scores, k=k, mode="abs", ties="index")


# --------------------------------------------------------------------------- internals


def _resolve_explain(explain_fn: ExplainFn | None) -> ExplainFn:
    if explain_fn is not None:
        return explain_fn
    try:
        from ..lrp import explain
    except ImportError as exc:
        raise BayesLRPError(f"bayeslrp.lrp.explain cannot be imported ({exc}); "
                            "pass explain_fn= to the saliency attack") from None
    return explain


def _heatmap_function(ens, n, explainer, explain_fn, rule, layer, explain_kwargs):
    """``heatmap(images, create_graph, surrogate_beta) -> [B, H, W]`` of the attacked
    explanation: the Explainer's when given, else ``explain_fn`` with the loose keywords."""
    if explainer is not None:
        if explain_fn is not None or explain_kwargs:
            raise BayesLRPError("pass either explainer= or explain_fn / explanation keywords, "
                                "not both")
        fixed = explainer.replace(n_samples=n, reduce="mean")

        def from_explainer(images, graph, beta_):
            return _checked(fixed.explain(ens, images, create_graph=graph,
                                          surrogate_beta=beta_), images)

        return from_explainer
    explain = _resolve_explain(explain_fn)

    def from_function(images, graph, beta_):
        return _explain(explain, ens, images, rule=rule, layer=layer, n_samples=n,
                        create_graph=graph, surrogate_beta=beta_, kwargs=explain_kwargs)

    return from_function


def _checked(R: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    expected = (images.shape[0], *images.shape[-2:])
    if tuple(R.shape) != expected:
        raise BayesLRPError(f"the explanation function returned shape {tuple(R.shape)}; "
                            f"expected heatmaps {expected}")
    return R


def _explain(explain, ens, images, *, rule, layer, n_samples, create_graph, surrogate_beta,
             kwargs) -> torch.Tensor:
    kwargs = dict(kwargs)
    if "lrp_seed" in kwargs:  # the explanation's own `seed` option; `seed` is the region's
        kwargs["seed"] = kwargs.pop("lrp_seed")
    R = explain(ens, images, rule=rule, layer=layer, n_samples=n_samples,
                create_graph=create_graph, surrogate_beta=surrogate_beta, **kwargs)
    return _checked(R, images)


def _unit_mass(R: torch.Tensor) -> torch.Tensor:
    return R / (R.abs().flatten(1).sum(1).view(-1, *[1] * (R.ndim - 1)) + _TINY)


def _magnitude(R: torch.Tensor) -> torch.Tensor:
    """``|R|`` with the subgradient +1 at ``R = 0`` (torch's ``abs`` uses 0 there).

    First-layer LRP gives exactly zero relevance to zero pixels; with a zero subgradient no
    relevance could ever appear on them, and an image whose whole relevance lies in the top-k set
    would have an exactly zero gradient of the normalised top-k dissimilarity.
    """
    return torch.where(R >= 0, R, -R)


def _dissimilarity(R: torch.Tensor, mask: torch.Tensor, sign: float, magnitude: bool,
                   normalize: bool) -> torch.Tensor:
    size = _magnitude(R)
    h = size if magnitude else R
    if normalize:
        h = h / (size.flatten(1).sum(1).view(-1, 1, 1) + _TINY)
    return sign * (h * mask).flatten(1).sum(1)


def _label_keeping_step(ens, n, x_t, x0, direction, step, eps, keep, backtrack, bounds):
    """Per image, the longest of the steps ``step·2^-j`` (j = 0..backtrack) along
    ``direction`` whose projected point keeps the predicted class ``keep``; no step if none does.
    Only forward passes: the gradient is not recomputed."""
    moved = torch.zeros(x_t.shape[0], dtype=torch.bool, device=x_t.device)
    out = x_t
    for j in range(backtrack + 1):
        candidate = project(x_t + (step / 2**j) * direction, x0, eps, bounds)
        ok = (ens.predict_proba(candidate, n).argmax(-1) == keep) & ~moved
        out = torch.where(ok.view(-1, 1, 1, 1), candidate, out)
        moved |= ok
        if bool(moved.all()):
            break
    return out


def _keep_lower(best, best_score, candidate, score):
    """Per image keep the candidate whose score is strictly lower."""
    if best_score is None:
        return candidate.clone(), score.clone()
    better = score < best_score
    view = better.view(-1, *[1] * (best.ndim - 1))
    return torch.where(view, candidate, best), torch.where(better, score, best_score)


def _ghorbani(ens, x, y, kind, *, eps, k, alpha, steps, rule, layer, n_samples, magnitude,
              normalize, surrogate_beta, explain_fn, batch_size, seed, region, backtrack,
              explain_kwargs, explainer, selection, bounds) -> torch.Tensor:
    x, y, bounds = data_args(x, y, bounds)
    check_images(x, bounds=bounds)
    check_data(ens, x)
    check_positive(eps=eps, alpha=alpha, k=k, steps=steps)
    if int(backtrack) < 0:
        raise BayesLRPError(f"backtrack must be >= 0; got {backtrack}")
    n = ens.resolve_n(n_samples)
    heatmap = _heatmap_function(ens, n, explainer, explain_fn, rule, layer, explain_kwargs)
    topk_mode, ties = selection
    device = ens.device
    x_all = x.detach().to(device)
    if y is not None:
        check_labels(y, x.shape[0], "y")
        keep_all = y.to(device)
    else:
        keep_all = ens.predict_proba(x_all, n).argmax(-1)
    sign = -1.0 if kind == "topk" else 1.0

    def true_heatmap(images):
        with torch.enable_grad():
            return heatmap(images.detach().requires_grad_(True), False, None).detach()

    out = []
    for sl in image_chunks(ens, x_all, n, batch_size, factor=_SALIENCY_GRAPH_FACTOR):
        x0, keep = x_all[sl], keep_all[sl]
        R0 = true_heatmap(x0)
        mask = (metrics.topk_mask(R0, k=k, mode="abs", ties="nonzero") if kind == "topk"
                else region[sl].to(device))

        def score(R):  # lower is better
            if kind == "topk":
                return metrics.lrp_robustness(R0, R, k=k, mode=topk_mode, ties=ties)
            return -_dissimilarity(R, mask, 1.0, magnitude, normalize)

        x_t = x0.clone()
        best, best_score = x0.clone(), score(R0)
        for t in range(int(steps)):
            x_var = x_t.clone().requires_grad_(True)
            R = heatmap(x_var, True, surrogate_beta)
            if t > 0:  # iterate t's true heatmap (t = 0 is the clean image, scored above)
                R_true = R.detach() if surrogate_beta is None else true_heatmap(x_t)
                best, best_score = _keep_lower(best, best_score, x_t, score(R_true))
            D = _dissimilarity(R, mask, sign, magnitude, normalize)
            (grad,) = torch.autograd.grad(D.sum(), x_var)
            x_t = _label_keeping_step(ens, n, x_t, x0, grad.sign(), alpha * eps, eps, keep,
                                      int(backtrack), bounds)
        best, _ = _keep_lower(best, best_score, x_t, score(true_heatmap(x_t)))
        out.append(best)
    return torch.cat(out).to(x.device)
