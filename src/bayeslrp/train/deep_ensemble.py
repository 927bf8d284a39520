"""Deep ensembles (Lakshminarayanan et al. 2017): M networks from independent seeds.

Member j has seed ``seed + j``: its initial weights come from ``init(seed + j)`` and its batch
order from a generator seeded ``seed + j``, exactly as :func:`bayeslrp.train.deterministic`
(or :func:`~bayeslrp.train.adversarial`) with that seed would train it. The members are
trained one after another (a loop of the single-network trainer) or, for det members of a
buffer-free network, in one run over stacked weights (:func:`_fit_stacked`).
"""
from __future__ import annotations

import copy
import time
from typing import Callable

import torch
from torch import nn

from ..ensemble import Ensemble, forward_stacked, loops_over_samples
from ..errors import BayesLRPError
from ..progress import progress_bar
from .loop import check_training_data, training_arrays
from .options import TrainOptions
from .preflight import preflight

__all__ = ["ensemble", "member_init"]

MEMBER_KINDS = ("det", "adv")
VECTORIZE = ("auto", True, False)


def member_init(net: nn.Module, seed: int) -> nn.Module:
    """``net``'s architecture freshly initialised from ``seed``.

    A built-in or registered network (one with a recorded ``bayeslrp_spec`` name) is rebuilt
    by :func:`bayeslrp.nets.build` with that seed; any other module is copied and every
    submodule's ``reset_parameters()`` is called, in module order, under torch's CPU generator
    seeded with ``seed``.
    """
    from .. import nets

    spec = nets.spec_of(net)
    if spec is not None and spec.get("arch") is not None and (
            spec["arch"] in nets.ARCHITECTURES or spec["arch"] in nets.registered()):
        return nets.build(spec["arch"], seed=seed, **spec.get("kwargs", {}))
    fresh = copy.deepcopy(net)
    owners = {id(p) for m in fresh.modules() if hasattr(m, "reset_parameters")
              for p in m.parameters(recurse=False)}
    stuck = [n for n, p in fresh.named_parameters() if id(p) not in owners]
    if stuck:
        raise BayesLRPError(f"cannot re-initialise {type(net).__name__} for ensemble members: "
                            f"parameters {stuck[:3]} belong to no module with "
                            f"reset_parameters(); pass init=(seed -> network)")
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return fresh.eval()


def ensemble(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
             members: int = 5, epochs: int = 15, lr: float = 1e-3, batch_size: int = 128,
             seed: int = 0, init: Callable[[int], nn.Module] | None = None,
             member: str = "det", adv_eps: float = 0.2, adv_mode: str = "fgsm",
             adv_steps: int = 40, adv_alpha: float = 0.01, vectorize: str | bool = "auto",
             progress: bool = True, device: str | torch.device | None = None,
             options: TrainOptions | None = None,
             bounds: tuple[float, float] | None = None) -> Ensemble:
    """Train ``members`` networks from independent seeds; return them as an S = M Ensemble.

    Parameters
    ----------
    net : nn.Module
        The architecture (its own weights are not used unless ``init`` returns them).
    x, y : Tensor
        Training images ``[N, C, H, W]`` and labels ``[N]`` (or a Dataset as ``x``).
    members : int
        M, the number of networks.
    epochs, lr, batch_size, options
        As :func:`bayeslrp.train.deterministic`, the same for every member.
    seed : int
        Member j has seed ``seed + j`` (initial weights and batch order).
    init : callable, optional
        ``init(seed_j) -> nn.Module``, member j's starting network (default
        :func:`member_init` of ``net``).
    member : {"det", "adv"}
        Plain or adversarial training (``adv_eps``, ``adv_mode``, ``adv_steps``,
        ``adv_alpha`` and ``bounds`` as :func:`bayeslrp.train.adversarial`).
    vectorize : {"auto", True, False}
        True: det members trained in one run over stacked weights (needs a network without
        buffers and no augmentation); False: one member after another; "auto": stacked off
        the CPU where possible (on the CPU a loop of networks is faster, see
        :func:`bayeslrp.ensemble.forward_stacked`).

    Returns
    -------
    Ensemble
        Sample j is member j; ``meta["members"]`` holds each member's seed and history.
    """
    from .adversarial import adversarial
    from .deterministic import deterministic

    if member not in MEMBER_KINDS:
        raise BayesLRPError(f"unknown ensemble member {member!r}; choose det or adv")
    if vectorize not in VECTORIZE:
        raise BayesLRPError(f"vectorize must be 'auto', True or False; got {vectorize!r}")
    if int(members) < 1:
        raise BayesLRPError(f"an ensemble needs members >= 1; got {members}")
    x, y = training_arrays(x, y)
    preflight(net, x, y, device)
    options = options or TrainOptions()
    init = init or (lambda s: member_init(net, s))
    seeds = [int(seed) + j for j in range(int(members))]
    starts = [init(s) for s in seeds]
    stackable = (member == "det" and options.augment == "none"
                 and not any(True for _ in starts[0].buffers()))
    target = torch.device(device or x.device)
    if vectorize is True and not stackable:
        raise BayesLRPError("vectorize=True needs det members, no augmentation and a network "
                            "without buffers (BatchNorm); use vectorize=False")
    stacked = stackable and (vectorize is True or (vectorize == "auto"
                                                   and not loops_over_samples(target)))
    if stacked:
        trained, histories = _fit_stacked(starts, x, y, seeds, epochs=epochs, lr=lr,
                                          batch_size=batch_size, options=options,
                                          device=target, progress=progress)
        params = {k: v.detach().clone() for k, v in trained.items()}
        template = starts[0]
    else:
        nets_, histories = [], []
        for start, s in zip(starts, seeds):
            if member == "det":
                one = deterministic(start, x, y, epochs=epochs, lr=lr, batch_size=batch_size,
                                    seed=s, progress=progress, device=device, options=options)
            else:
                one = adversarial(start, x, y, eps=adv_eps, mode=adv_mode, epochs=epochs,
                                  lr=lr, batch_size=batch_size, pgd_steps_=adv_steps,
                                  pgd_alpha=adv_alpha, seed=s, progress=progress,
                                  device=device, options=options, bounds=bounds)
            nets_.append(one.sample_module(0))
            histories.append(one.meta["history"])
        params = {name: torch.stack([m.state_dict()[name].detach() for m in nets_])
                  for name in nets_[0].state_dict()}
        template = nets_[0]
    meta = {"method": "ensemble", "member": member, "members": len(seeds), "epochs": epochs,
            "lr": lr, "batch_size": batch_size, "seed": int(seed), "vectorized": stacked,
            "member_seeds": seeds,
            "history": {"loss": [h["loss"][-1] for h in histories],
                        "train_accuracy": [h["train_accuracy"][-1] for h in histories]},
            "member_histories": histories}
    if member == "adv":
        meta.update({"adv_eps": adv_eps, "adv_mode": adv_mode})
    if options != TrainOptions():
        meta["options"] = options.as_dict()
    return Ensemble.from_params(template, params, meta=meta)


def _fit_stacked(starts, x, y, seeds, *, epochs, lr, batch_size, options, device, progress):
    """The det training loop of :func:`bayeslrp.train.loop.fit` run for every member at once.

    The weights are stacked ``[M, ...]`` tensors and one optimiser steps them all: Adam and SGD
    act elementwise, and the loss is the sum of the members' batch losses, so each member's
    update is the one its own run would make (its own batches from its own generator).
    """
    check_training_data(x, y)
    if epochs < 1 or lr <= 0 or batch_size < 1:
        raise BayesLRPError("epochs and batch_size must be >= 1 and lr > 0")
    module = copy.deepcopy(starts[0]).to(device).train()
    params = {name: torch.stack([s.state_dict()[name] for s in starts]).to(device)
              .detach().requires_grad_(True) for name in starts[0].state_dict()}
    optimiser = options.optimizer_for(list(params.values()), lr)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    n, m = x.shape[0], len(seeds)
    n_batches = (n + batch_size - 1) // batch_size
    histories = [{"loss": [], "train_accuracy": [], "epoch_seconds": []} for _ in seeds]
    with progress_bar("train ensemble", epochs * n_batches, enabled=progress) as bar:
        for epoch in range(epochs):
            started = time.perf_counter()
            if options.lr_milestones:
                for group in optimiser.param_groups:
                    group["lr"] = options.lr_at(epoch, lr)
            orders = torch.stack([torch.randperm(n, generator=g) for g in generators])
            total = torch.zeros(m, dtype=torch.float64, device=device)
            correct = torch.zeros(m, dtype=torch.int64, device=device)
            for start in range(0, n, batch_size):
                idx = orders[:, start:start + batch_size]
                xb, yb = x[idx].to(device), y[idx].to(device)  # [M, B, ...]
                logits = forward_stacked(module, params, xb, per_sample_inputs=True)
                losses = nn.functional.cross_entropy(logits.flatten(0, 1), yb.flatten(),
                                                     reduction="none").view(m, -1).mean(1)
                optimiser.zero_grad(set_to_none=True)
                losses.sum().backward()
                optimiser.step()
                total += losses.detach().double() * yb.shape[1]
                correct += (logits.detach().argmax(-1) == yb).sum(1)
                if bar.enabled:
                    bar.advance(1, loss=float(losses.mean()))
            seconds = time.perf_counter() - started
            for j, h in enumerate(histories):
                h["loss"].append(float(total[j]) / n)
                h["train_accuracy"].append(int(correct[j]) / n)
                h["epoch_seconds"].append(seconds)
    return params, histories
