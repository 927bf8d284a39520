"""Bayesian LRP: forward record, seed, relevance backward, mean / std over posterior samples.

Work is vectorised over images and over the posterior samples of a chunk (batched matmuls and
grouped convolutions, see :mod:`bayeslrp.lrp.maps`). Chunks are chosen so that one chunk's
activations, records and relevance temporaries fit ``memory_budget`` bytes: image chunks
holding every sample when possible (the predicted class then comes from the same forward pass),
otherwise sample chunks too, with a separate no-grad forward pass for the predicted classes.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ensemble import Ensemble
from ..errors import BayesLRPError
from . import targets as tg
from .bayes import MeanStd
from .layers import (Activation, Block, Context, Dense, Flatten, Node, Normalize, Passthrough,
                     compile_network)
from .rules import Rule, is_shared, make_rule

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes per chunk (activations + records + relevance)
WORKING_SET = 4 << 20  # bytes of a chunk's largest activation when samples are looped
REDUCTIONS = ("mean", "mean_std", None)


def _model_params(model, n_samples):
    """(network, params ``name -> [n, ...]``, n) of an Ensemble or a single nn.Sequential."""
    if isinstance(model, Ensemble):
        n = model.resolve_n(n_samples)
        params = {k: v[:n] for k, v in model.params.items()}
        return model.module, params, n
    if isinstance(model, nn.Module):
        if not isinstance(model, nn.Sequential):
            raise BayesLRPError(f"LRP needs an nn.Sequential network (got "
                                f"{type(model).__name__}); build it with bayeslrp.nets.build")
        if n_samples not in (None, 1):
            raise BayesLRPError(f"a single network has one sample; n_samples={n_samples} is not "
                                "available (wrap several networks in bl.Ensemble.from_modules)")
        params = {k: v.detach().unsqueeze(0) for k, v in model.state_dict().items()}
        return model, params, 1
    raise BayesLRPError(f"explain needs a bayeslrp Ensemble or an nn.Sequential, not "
                        f"{type(model).__name__}")


def _float_params(params):
    floats = {k: v for k, v in params.items() if v.is_floating_point()}
    if not floats:
        raise BayesLRPError("the network has no floating-point parameters")
    first = next(iter(floats.values()))
    return floats, first.dtype, first.device


def _forward(nodes: list[Node], x: torch.Tensor, ctx: Context, s: int, keep: bool):
    a = x.unsqueeze(0).expand(s, *x.shape)
    records = []
    for node in nodes:
        a, rec = node.forward(a, ctx)
        if keep:
            records.append(rec)
    return a, records


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
          keep_samples: bool) -> tuple[int, int]:
    """(sample chunk, image chunk).

    ``keep_samples``: every sample of an image in one chunk, so the predicted class comes from
    the same forward pass; images as many as ``budget`` allows. Otherwise one sample per chunk
    and as many images as keep its largest activation about :data:`WORKING_SET` bytes: on CPUs
    the elementwise work of LRP is bound by memory bandwidth, and cache-sized chunks run several
    times faster than large ones (``benchmarks/lrp.py``).
    """
    pair_bytes, largest = max(footprint[0], 1), max(footprint[1], 1)
    if keep_samples:
        s_chunk = min(n, max(1, budget // pair_bytes))
        return s_chunk, min(n_images, max(1, budget // (pair_bytes * s_chunk)))
    b_chunk = min(n_images, max(1, WORKING_SET // largest), max(1, budget // pair_bytes))
    return 1, b_chunk


def _predicted_classes(net, x, params, n, rule, target_mode, budget):
    """Classes ``[n, B]`` from the true network's logits (no surrogate, no gradient)."""
    nodes = compile_network(net, tg.resolve_layer(net, None).stop)
    fp = _footprint(nodes, x, params, rule, False)
    s_chunk, b_chunk = _plan(n, x.shape[0], fp, budget, keep_samples=False)
    with torch.no_grad():
        rows = []
        for b0 in range(0, x.shape[0], b_chunk):
            xb = x[b0:b0 + b_chunk]
            logits = []
            for s0 in range(0, n, s_chunk):
                s1 = min(n, s0 + s_chunk)
                ctx = Context({k: v[s0:s1] for k, v in params.items()}, rule,
                              true_activations=True)
                out, _ = _forward(nodes, xb, ctx, s1 - s0, keep=False)
                logits.append(out)
            rows.append(tg.classes_from_logits(torch.cat(logits), target_mode))
        return torch.cat(rows, dim=1)


def explain(model, x: torch.Tensor, rule: str | Rule = "epsilon", layer: int | None = None,
            n_samples: int | None = None, reduce: str | None = "mean", target=None,
            create_graph: bool = False, *, seed: str = "logit",
            target_mode: str = "predictive", inner: str = "max",
            surrogate_beta: float | None = None, memory_budget: int = DEFAULT_MEMORY_BUDGET,
            chunks: tuple[int, int] | None = None, **rule_params: float):
    """Bayesian LRP heatmaps of images ``x`` (SPEC §4).

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
        the unit (Linear) or channel (Conv) to seed per image (overrides the argmax).
    create_graph : bool
        Keep the autograd graph so the heatmap is differentiable w.r.t. ``x`` (saliency
        attacks). Otherwise everything runs under ``torch.no_grad``.
    seed : {"logit", "one"}
        Seed the explained unit(s) with their value (logit / activation) or with 1.
    target_mode : {"predictive", "per_sample_argmax"}
        Output layer: explain the class of the predictive mean softmax over the samples used,
        or each sample's own argmax.
    inner : {"max", "all"}
        Inner layer: seed the most activated unit / channel (chosen per sample on its own
        activations), or every unit with its own activation.
    surrogate_beta : float, optional
        Replace ReLU by ``softplus_β`` and LeakyReLU(s) by ``s·x + (1 − s)·softplus_β(x)`` in
        the forward pass of the explanation (smooth gradients; Dombrowski et al. 2019). The
        explained class is still the true network's prediction.
    memory_budget : int
        Bytes one chunk of (images × samples) may use.

    Returns
    -------
    Tensor or (Tensor, Tensor)
        Heatmaps (relevance summed over input channels) in the model's dtype and device.
    """
    if reduce == "none":
        reduce = None
    if reduce not in REDUCTIONS:
        raise BayesLRPError(f"reduce={reduce!r} is not known; choose 'mean', 'mean_std' or None")
    tg.validate_options(seed, target_mode, inner)
    rule_obj = make_rule(rule, **rule_params)
    if surrogate_beta is not None and not float(surrogate_beta) > 0:
        raise BayesLRPError(f"surrogate_beta must be > 0 (got {surrogate_beta})")
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise BayesLRPError("x must be an image tensor [B, C, H, W]")
    if x.shape[0] == 0:
        raise BayesLRPError("x holds no images")
    net, params, n = _model_params(model, n_samples)
    params, dtype, device = _float_params(params)
    cut = tg.resolve_layer(net, layer)
    nodes = compile_network(net, cut.stop)
    x = x.to(device=device, dtype=dtype)
    if not create_graph:
        x = x.detach()
    n_images = x.shape[0]
    fixed = tg.explicit_target(target, n_images, device)
    if fixed is not None and not cut.is_output and inner == "all":
        raise BayesLRPError("target has no meaning with inner='all' (every unit is seeded)")

    # the predictive class couples the samples of an image: keep them in one chunk when it is
    # needed (and no surrogate forces a separate pass for the true network's class anyway)
    keep_samples = (cut.is_output and fixed is None and target_mode == "predictive"
                    and surrogate_beta is None)
    fp = _footprint(nodes, x, params, rule_obj, create_graph)
    s_chunk, b_chunk = _plan(n, n_images, fp, int(memory_budget), keep_samples)
    if chunks is not None:
        s_chunk, b_chunk = min(n, int(chunks[0])), min(n_images, int(chunks[1]))
    classes = None
    if cut.is_output and fixed is None and (
            surrogate_beta is not None or (target_mode == "predictive" and s_chunk < n)):
        classes = _predicted_classes(net, x.detach(), params, n, rule_obj, target_mode,
                                     int(memory_budget))

    grad_mode = torch.enable_grad() if create_graph else torch.no_grad()
    mean_parts, std_parts, full_parts = [], [], []
    contexts: dict[int, Context] = {}
    with grad_mode:
        for b0 in range(0, n_images, b_chunk):
            b1 = min(n_images, b0 + b_chunk)
            xb = x[b0:b1]
            acc, per_sample = MeanStd(with_std=reduce == "mean_std"), []
            for s0 in range(0, n, s_chunk):
                s1 = min(n, s0 + s_chunk)
                ctx = contexts.get(s0)
                if ctx is None:  # one per sample chunk: its prepared weights are reused
                    ctx = contexts[s0] = Context(
                        {k: v[s0:s1] for k, v in params.items()}, rule_obj,
                        surrogate_beta=None if surrogate_beta is None else float(surrogate_beta))
                h, records = _forward(nodes, xb, ctx, s1 - s0, keep=True)
                if cut.is_output:
                    if fixed is not None:
                        cls = fixed[b0:b1].unsqueeze(0).expand(s1 - s0, -1)
                    elif classes is not None:
                        cls = classes[s0:s1, b0:b1]
                    else:
                        cls = tg.classes_from_logits(h.detach(), target_mode)
                    r = tg.output_seed(h, cls, seed)
                else:
                    r = tg.inner_seed(h, seed, inner, None if fixed is None else fixed[b0:b1])
                del h
                if cut.is_output or inner == "max":
                    _mark_seeded_map(nodes, records)
                summed = reduce == "mean" and _mark_summed_input(nodes, records)
                for node in reversed(nodes):
                    r = node.relevance(r, records.pop(), ctx)
                # relevance summed over input channels: [s, b, H, W] (or [1, b, H, W] summed)
                heat = r[:, :, 0] if r.shape[2] == 1 else r.sum(dim=2)
                del r
                if reduce is None:
                    per_sample.append(heat)
                elif summed:
                    acc.add_sum(heat[0], s1 - s0)
                else:
                    acc.add(heat)
            if reduce is None:
                full_parts.append(torch.cat(per_sample))
            else:
                mean_parts.append(acc.mean)
                if reduce == "mean_std":
                    std_parts.append(acc.std())
    if reduce is None:
        return torch.cat(full_parts, dim=1)
    mean = torch.cat(mean_parts)
    if reduce == "mean_std":
        return mean, torch.cat(std_parts)
    return mean


def explain_with_std(model, x: torch.Tensor, rule: str | Rule = "epsilon",
                     layer: int | None = None, n_samples: int | None = None, **kwargs):
    """``(mean, std)`` heatmaps ``[B, H, W]``: :func:`explain` with ``reduce="mean_std"``."""
    kwargs.pop("reduce", None)
    return explain(model, x, rule, layer, n_samples, reduce="mean_std", **kwargs)


def chunk_plan(model, x: torch.Tensor, layer: int | None = None, n_samples: int | None = None,
               create_graph: bool = False, memory_budget: int = DEFAULT_MEMORY_BUDGET,
               target=None, target_mode: str = "predictive",
               surrogate_beta: float | None = None) -> dict[str, int]:
    """The (sample chunk, image chunk) sizes :func:`explain` would use, and the estimates
    behind them."""
    net, params, n = _model_params(model, n_samples)
    params, dtype, device = _float_params(params)
    cut = tg.resolve_layer(net, layer)
    nodes = compile_network(net, cut.stop)
    x = x.to(device=device, dtype=dtype)
    keep = (cut.is_output and target is None and target_mode == "predictive"
            and surrogate_beta is None)
    fp = _footprint(nodes, x, params, make_rule("epsilon"), create_graph)
    s_chunk, b_chunk = _plan(n, x.shape[0], fp, int(memory_budget), keep)
    return {"bytes_per_pair": fp[0], "largest_activation_bytes": fp[1],
            "sample_chunk": s_chunk, "image_chunk": b_chunk,
            "chunks": math.ceil(n / s_chunk) * math.ceil(x.shape[0] / b_chunk)}
