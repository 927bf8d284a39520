"""Bayesian LRP: forward record, seed, relevance backward, mean / std over posterior samples.

The images are processed in chunks of (samples × images). Each chunk runs the truncated
network forward with every node keeping a record, seeds the relevance at the cut
(:mod:`~bayeslrp.lrp.targets`), walks the nodes backwards (:mod:`~bayeslrp.lrp.layers`) and
sums the input relevance over channels. Work inside a chunk is vectorised over its images and
samples (batched matmuls, grouped convolutions: :mod:`~bayeslrp.lrp.maps`); per-sample heatmaps
are merged into the mean (and std) as they come (:mod:`~bayeslrp.lrp.bayes`).

How chunks are cut is decided by :func:`_plan` (measured in ``benchmarks/lrp.py``): on CPUs the
elementwise half of LRP is bound by memory bandwidth, so chunks are kept cache-sized.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..ensemble import Ensemble
from ..errors import BayesLRPError
from . import targets as tg
from .bayes import MeanStd
from .handlers import compile_network
from .layers import Activation, Context, Dense, Flatten, Node, Normalize, Passthrough
from .residual import Block
from .rules import Rule, is_shared, make_rule
from .stack import ParamStack, as_stack

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes per chunk (activations + records + relevance)
WORKING_SET = 4 << 20  # bytes of a chunk's largest activation (about a CPU's cache)
REDUCTIONS = ("mean", "mean_std", None)
#: On CUDA the largest activation of a chunk may take this share of the device's memory (and a
#: chunk ``devices.GPU_BUDGET_SHARE`` in all) instead of a CPU cache's size and the 1 GiB
#: budget: thousands of one-sample kernels would leave a GPU idle.
GPU_WORKING_SHARE = 1 / 64


def device_limits(device: torch.device, budget: int) -> tuple[int, int]:
    """(working set, budget) in bytes of one chunk on ``device``.

    The CPU keeps :data:`WORKING_SET` and ``budget``; a CUDA device raises both to shares of
    its memory (:data:`GPU_WORKING_SHARE`, :data:`bayeslrp.devices.GPU_BUDGET_SHARE`), never
    below them.
    """
    from ..devices import memory_budget

    if device.type != "cuda":
        return WORKING_SET, int(budget)
    total = torch.cuda.get_device_properties(device).total_memory
    return max(WORKING_SET, int(total * GPU_WORKING_SHARE)), memory_budget(device, budget)


# --------------------------------------------------------------------------- model and job
def _model_params(model, n_samples):
    """(network, params ``name -> [n, ...]``, n) of an Ensemble, a ParamStack or a single
    network (any nn.Module LRP can walk, :mod:`~bayeslrp.lrp.handlers`)."""
    if isinstance(model, ParamStack):
        stack = as_stack(model, n_samples)
        return stack.module, dict(stack.params), stack.n
    if isinstance(model, Ensemble):
        n = model.resolve_n(n_samples)
        params = {k: v[:n] for k, v in model.params.items()}
        return model.module, params, n
    if isinstance(model, nn.Module):
        if n_samples not in (None, 1):
            raise BayesLRPError(f"a single network has one sample; n_samples={n_samples} is not "
                                "available (wrap several networks in bl.Ensemble.from_modules)")
        params = {k: v.detach().unsqueeze(0) for k, v in model.state_dict().items()}
        return model, params, 1
    raise BayesLRPError(f"explain needs a bayeslrp Ensemble or an nn.Module, not "
                        f"{type(model).__name__}")


@dataclass
class _Job:
    """One explain call with its options resolved and validated."""

    net: nn.Module
    nodes: list[Node]
    cut: tg.LayerCut
    params: dict[str, torch.Tensor]
    n: int
    x: torch.Tensor
    rule: Rule
    target: torch.Tensor | None
    seed: str
    target_mode: str
    inner: str
    surrogate_beta: float | None

    @property
    def keeps_samples_together(self) -> bool:
        """Whether to prefer chunks holding every sample of an image: at the output layer,
        where the predictive class couples them (and for dense networks such chunks are the
        fastest even when the class is given: the weights of all samples are read once for
        many images). The same plan with or without ``target`` gives identical numbers."""
        return self.cut.is_output

    def needs_class_pass(self, s_chunk: int) -> bool:
        """Whether the explained classes need a forward pass of their own."""
        if not self.cut.is_output or self.target is not None:
            return False
        return self.surrogate_beta is not None or (self.target_mode == "predictive"
                                                   and s_chunk < self.n)


def _job(model, x, rule, layer, n_samples, target, create_graph, seed, target_mode, inner,
         surrogate_beta, rule_params) -> _Job:
    tg.validate_options(seed, target_mode, inner)
    rule_obj = make_rule(rule, **rule_params)
    if surrogate_beta is not None:
        if not float(surrogate_beta) > 0:
            raise BayesLRPError(f"surrogate_beta must be > 0 (got {surrogate_beta})")
        surrogate_beta = float(surrogate_beta)
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise BayesLRPError("x must be an image tensor [B, C, H, W]")
    if x.shape[0] == 0:
        raise BayesLRPError("x holds no images")
    net, params, n = _model_params(model, n_samples)
    params = {k: v for k, v in params.items() if v.is_floating_point()}
    if not params:
        raise BayesLRPError("the network has no floating-point parameters")
    first = next(iter(params.values()))
    cut = tg.resolve_layer(net, layer)
    nodes = compile_network(net, cut.stop)
    rule_obj = rule_obj.bind(nodes)  # a composite resolves its per-layer rules here
    x = x.to(device=first.device, dtype=first.dtype)
    if not create_graph:
        x = x.detach()
    fixed = tg.explicit_target(target, x.shape[0], first.device, n_samples=n)
    if fixed is not None and not cut.is_output and inner in ("all", "original"):
        raise BayesLRPError(f"target has no meaning with inner={inner!r} (the seed is fixed by "
                            "the rule)")
    return _Job(net, nodes, cut, params, n, x, rule_obj, fixed, seed, target_mode, inner,
                surrogate_beta)


# --------------------------------------------------------------------------- chunk plan
def _footprint(nodes: list[Node], x: torch.Tensor, params, rule: Rule,
               create_graph: bool) -> tuple[int, int]:
    """(bytes one (image, sample) pair needs for activations, records and temporaries,
    bytes of its largest single activation), from a forward pass of one image and sample."""
    sizes = [x[0].numel()]
    ctx = Context({k: v[:1] for k, v in params.items()}, rule)
    a = x[:1].unsqueeze(0)
    with torch.no_grad():
        for node in nodes:
            a, _ = node.forward(a, ctx)
            sizes.append(a[0, 0].numel())
    factor = 3 if create_graph else 1
    elem = x.element_size()
    return int(elem * (sum(sizes) * 2 + 4 * max(sizes)) * factor), elem * max(sizes)


def _plan(n: int, n_images: int, footprint: tuple[int, int], budget: int,
          keep_samples: bool, working: int = WORKING_SET) -> tuple[int, int]:
    """(samples, images) per chunk.

    On CPUs the elementwise half of LRP is bound by memory bandwidth: chunks whose largest
    activation stays near :data:`WORKING_SET` bytes (cache-sized) run several times faster than
    large ones, so by default one sample is explained at a time for a cache-sized batch of
    images. At the output layer (``keep_samples``), when all samples of an image fit that
    working set together (dense networks), every sample of an image goes into one chunk
    instead: the predictive class then comes from the same forward pass, and each chunk reads
    the weights of all samples once for many images. ``budget`` bounds a chunk's bytes.
    ``working`` replaces :data:`WORKING_SET` (:func:`device_limits`: a GPU's is larger).
    """
    pair_bytes, largest = max(footprint[0], 1), max(footprint[1], 1)
    if keep_samples and n * largest <= working:
        s_chunk = min(n, max(1, budget // pair_bytes))
    else:
        s_chunk = 1
    b_chunk = min(n_images, max(1, working // largest),
                  max(1, budget // (pair_bytes * s_chunk)))
    return s_chunk, b_chunk


def _job_plan(job: _Job, create_graph: bool, budget: int, chunks) -> tuple[int, int, tuple]:
    fp = _footprint(job.nodes, job.x, job.params, job.rule, create_graph)
    working, budget = device_limits(job.x.device, int(budget))
    s_chunk, b_chunk = _plan(job.n, job.x.shape[0], fp, budget, job.keeps_samples_together,
                             working)
    if chunks is not None:
        try:
            s_req, b_req = (int(c) for c in chunks)
        except (TypeError, ValueError):
            raise BayesLRPError(f"chunks must be (samples, images) per chunk; got {chunks!r}") \
                from None
        if s_req < 1 or b_req < 1:
            raise BayesLRPError(f"chunks must be positive (samples, images); got {chunks!r}")
        s_chunk, b_chunk = min(job.n, s_req), min(job.x.shape[0], b_req)
    return s_chunk, b_chunk, fp


# --------------------------------------------------------------------------- passes
def _forward(nodes: list[Node], x: torch.Tensor, ctx: Context, s: int, keep: bool):
    a = x.unsqueeze(0).expand(s, *x.shape)  # the input is shared by the samples (stride 0)
    records = []
    for node in nodes:
        a, rec = node.forward(a, ctx)
        if keep:
            records.append(rec)
    return a, records


def _predicted_classes(job: _Job, budget: int) -> torch.Tensor:
    """Classes ``[n, B]`` from the true network's logits (no surrogate, no gradient)."""
    nodes = compile_network(job.net, tg.resolve_layer(job.net, None).stop)
    x = job.x.detach()
    fp = _footprint(nodes, x, job.params, job.rule, False)
    working, budget = device_limits(x.device, budget)
    s_chunk, b_chunk = _plan(job.n, x.shape[0], fp, budget, keep_samples=False, working=working)
    contexts = [Context({k: v[s0:s0 + s_chunk] for k, v in job.params.items()}, job.rule,
                        true_activations=True) for s0 in range(0, job.n, s_chunk)]
    rows = []
    with torch.no_grad():
        for b0 in range(0, x.shape[0], b_chunk):
            xb = x[b0:b0 + b_chunk]
            logits = [_forward(nodes, xb, ctx, _ctx_samples(ctx), keep=False)[0]
                      for ctx in contexts]
            rows.append(tg.classes_from_logits(torch.cat(logits), job.target_mode))
    return torch.cat(rows, dim=1)


def _ctx_samples(ctx: Context) -> int:
    """Number of samples a context holds."""
    return next(iter(ctx.params.values())).shape[0]


def _mark_seeded_map(nodes: list[Node], records: list) -> None:
    """Tell the affine map right below a single-unit / single-channel seed about it."""
    for node, record in zip(reversed(nodes), reversed(records)):
        if isinstance(node, Dense):
            node.affine_of(record).single_seed = True
            return
        if isinstance(node, Block):
            record[1][4].single_seed = True  # the block's second convolution
            return
        if not isinstance(node, (Activation, Passthrough)):
            return


def _mark_summed_input(nodes: list[Node], records: list) -> bool:
    """Let the layer reading the sample-shared input sum its relevance over the samples.

    Only the nodes before it pass relevance unchanged, so the summed input relevance is the
    sum of the per-sample heatmaps. Returns whether the mark was set.
    """
    for node, record in zip(nodes, records):
        if isinstance(node, Dense):
            a = node.input_of(record)
            if a.shape[0] > 1 and is_shared(a):
                node.affine_of(record).sum_samples = True
                return True
            return False
        if not isinstance(node, (Passthrough, Normalize, Flatten)):
            return False
    return False


def _chunk_heatmaps(job: _Job, xb: torch.Tensor, ctx: Context, classes: torch.Tensor | None,
                    target: torch.Tensor | None, sum_samples: bool):
    """Heatmaps ``[s, b, H, W]`` of one chunk, or their sum over samples ``[1, b, H, W]``
    (returned with True) when ``sum_samples`` and the network allows it."""
    s = _ctx_samples(ctx)
    h, records = _forward(job.nodes, xb, ctx, s, keep=True)
    if job.cut.is_output:
        if target is not None:
            classes = target if target.dim() == 2 else target.unsqueeze(0).expand(s, -1)
        elif classes is None:  # every sample of these images is in this chunk
            classes = tg.classes_from_logits(h.detach(), job.target_mode)
        r = tg.output_seed(h, classes, job.seed)
    else:
        r = tg.inner_seed(h, job.seed, job.inner, target)
    del h
    if job.cut.is_output or job.inner == "max":
        _mark_seeded_map(job.nodes, records)
    summed = sum_samples and _mark_summed_input(job.nodes, records)
    for node in reversed(job.nodes):
        r = node.relevance(r, records.pop(), ctx)  # records are freed as the walk goes
    heat = r[:, :, 0] if r.shape[2] == 1 else r.sum(dim=2)  # sum over input channels
    return heat, summed


def _target_rows(target: torch.Tensor | None, s0: int, s_chunk: int, b0: int, b1: int):
    """The explicit targets of one chunk: ``[b]`` (every sample) or ``[s, b]`` (per sample)."""
    if target is None:
        return None
    if target.dim() == 1:
        return target[b0:b1]
    return target[s0:s0 + s_chunk, b0:b1]


# --------------------------------------------------------------------------- public
def explain(model, x: torch.Tensor, rule: str | Rule = "epsilon", layer: int | None = None,
            n_samples: int | None = None, reduce: str | None = "mean", target=None,
            create_graph: bool = False, *, seed: str = "logit",
            target_mode: str = "predictive", inner: str = "max",
            surrogate_beta: float | None = None, memory_budget: int = DEFAULT_MEMORY_BUDGET,
            chunks: tuple[int, int] | None = None, explainer=None, **rule_params: float):
    """Bayesian LRP heatmaps of images ``x`` (SPEC §4).

    ``explainer=`` (a :class:`bayeslrp.explainers.Explainer`) gives every setting at once:
    method, parameters, layer, seeds, target mode, samples and reduction; ``target``,
    ``create_graph`` and ``surrogate_beta`` still apply.

    Parameters
    ----------
    model : Ensemble or nn.Sequential
        The model; a plain network counts as one sample.
    x : Tensor
        Images ``[B, C, H, W]`` (moved to the model's device and dtype).
    rule : {"epsilon", "gamma", "alphabeta"} or Rule
        Propagation rule for every Linear / Conv2d layer. Parameters as keywords: ``epsilon``
        (0.1), ``gamma`` (0.1), ``alpha`` (1) / ``beta`` (0), ``stabilizer`` (1e-6).
    layer : int, optional
        Learnable layer to explain (Sequential position, e.g. 1 / 3 / 5 for fc2). ``None`` or
        the last learnable layer: the logits. Otherwise the network is cut after the activation
        that follows ``layer``.
    n_samples : int, optional
        Use the first ``n_samples`` posterior samples (default: all).
    reduce : {"mean", "mean_std", None}
        ``"mean"``: the Bayesian explanation ``[B, H, W]``; ``"mean_std"``: ``(mean, std)``
        with the per-pixel population standard deviation over samples; ``None``: every
        sample's heatmap ``[S, B, H, W]``.
    target : int or Tensor, optional
        Output layer: the class to explain per image (overrides ``target_mode``). Inner layer:
        the unit (Linear) or channel (Conv) to seed per image (overrides the argmax). Shape
        ``[B]`` (every sample) or ``[n, B]`` (one per sample and image).
    create_graph : bool
        Keep the autograd graph so the heatmap is differentiable w.r.t. ``x`` (saliency
        attacks). Otherwise everything runs under ``torch.no_grad``.
    seed : {"logit", "one"}
        Seed the explained unit(s) with their value (logit / activation) or with 1.
    target_mode : {"predictive", "per_sample_argmax"}
        Output layer: explain the class of the predictive mean softmax over the samples used,
        or each sample's own argmax.
    inner : {"max", "all", "original"}
        Inner layer: seed the most activated unit / channel (chosen per sample on its own
        activations), or every unit with its own activation, or the original code's seed
        (:func:`bayeslrp.lrp.targets.original_seed`).
    explainer : Explainer, optional
        All of the above in one value object (any registered explainer, not only LRP).
    surrogate_beta : float, optional
        Replace ReLU by ``softplus_β`` and LeakyReLU(s) by ``s·x + (1 − s)·softplus_β(x)`` in
        the forward pass of the explanation (smooth gradients; Dombrowski et al. 2019). The
        explained class is still the true network's prediction.
    memory_budget : int
        Bytes one chunk of (images × samples) may use (activations, records, relevance; an
        estimate). With ``create_graph`` the graphs of all chunks are kept until the caller's
        backward pass, so the total grows with the number of images.
    chunks : (int, int), optional
        Force (samples, images) per chunk instead of the automatic plan (see
        :func:`chunk_plan`); results do not depend on it.

    Returns
    -------
    Tensor or (Tensor, Tensor)
        Heatmaps (relevance summed over input channels) in the model's dtype and device.
    """
    if explainer is not None:
        return explainer.explain(model, x, target=target, create_graph=create_graph,
                                 surrogate_beta=surrogate_beta)
    if reduce == "none":
        reduce = None
    if reduce not in REDUCTIONS:
        raise BayesLRPError(f"reduce={reduce!r} is not known; choose 'mean', 'mean_std' or None")
    job = _job(model, x, rule, layer, n_samples, target, create_graph, seed, target_mode, inner,
               surrogate_beta, rule_params)
    s_chunk, b_chunk, _ = _job_plan(job, create_graph, memory_budget, chunks)
    classes = (_predicted_classes(job, int(memory_budget)) if job.needs_class_pass(s_chunk)
               else None)
    # one context per sample chunk: its prepared (folded, re-laid-out) weights are reused
    contexts = [Context({k: v[s0:s0 + s_chunk] for k, v in job.params.items()}, job.rule,
                        surrogate_beta=job.surrogate_beta) for s0 in range(0, job.n, s_chunk)]
    n_images = job.x.shape[0]
    means, stds, full = [], [], []
    with torch.enable_grad() if create_graph else torch.no_grad():
        for b0 in range(0, n_images, b_chunk):
            b1 = min(n_images, b0 + b_chunk)
            acc, per_sample = MeanStd(with_std=reduce == "mean_std"), []
            for i, ctx in enumerate(contexts):
                s0 = i * s_chunk
                heat, summed = _chunk_heatmaps(
                    job, job.x[b0:b1], ctx,
                    None if classes is None else classes[s0:s0 + s_chunk, b0:b1],
                    _target_rows(job.target, s0, s_chunk, b0, b1),
                    sum_samples=reduce == "mean")
                if reduce is None:
                    per_sample.append(heat)
                elif summed:
                    acc.add_sum(heat[0], _ctx_samples(ctx))
                else:
                    acc.add(heat)
            if reduce is None:
                full.append(torch.cat(per_sample))
            else:
                means.append(acc.mean)
                if reduce == "mean_std":
                    stds.append(acc.std())
    if reduce is None:
        return torch.cat(full, dim=1)
    if reduce == "mean_std":
        return torch.cat(means), torch.cat(stds)
    return torch.cat(means)


def explain_with_std(model, x: torch.Tensor, rule: str | Rule = "epsilon",
                     layer: int | None = None, n_samples: int | None = None, **kwargs):
    """``(mean, std)`` heatmaps ``[B, H, W]``: :func:`explain` with ``reduce="mean_std"``."""
    kwargs.pop("reduce", None)
    return explain(model, x, rule, layer, n_samples, reduce="mean_std", **kwargs)


def chunk_plan(model, x: torch.Tensor, rule: str | Rule = "epsilon", layer: int | None = None,
               n_samples: int | None = None, target=None, create_graph: bool = False, *,
               seed: str = "logit", target_mode: str = "predictive", inner: str = "max",
               surrogate_beta: float | None = None, memory_budget: int = DEFAULT_MEMORY_BUDGET,
               chunks: tuple[int, int] | None = None, **rule_params: float) -> dict[str, int]:
    """How :func:`explain` with the same arguments would cut the work into chunks.

    Returns
    -------
    dict
        ``sample_chunk``, ``image_chunk``, ``chunks`` (their number), ``class_pass`` (1 when
        the predicted classes need a forward pass of their own), and the estimates behind
        them: ``bytes_per_pair`` and ``largest_activation_bytes`` of one (image, sample).
    """
    job = _job(model, x, rule, layer, n_samples, target, create_graph, seed, target_mode, inner,
               surrogate_beta, rule_params)
    s_chunk, b_chunk, fp = _job_plan(job, create_graph, memory_budget, chunks)
    return {"sample_chunk": s_chunk, "image_chunk": b_chunk,
            "chunks": math.ceil(job.n / s_chunk) * math.ceil(job.x.shape[0] / b_chunk),
            "class_pass": int(job.needs_class_pass(s_chunk)),
            "bytes_per_pair": fp[0], "largest_activation_bytes": fp[1]}
