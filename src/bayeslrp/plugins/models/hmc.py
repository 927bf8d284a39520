"""Hamiltonian Monte Carlo over the network weights (SPEC §3, paper Table IV)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from bayeslrp.plugins.models.base import ModelMethod
from bayeslrp.plugins.models.bayes_base import BayesSpecBase
from bayeslrp.plugins.spec import ConfigIssue, Name, NonNegInt, PosFloat, PosInt

__all__ = ["HMCMethod", "HMCModel", "HMC_BLOCK_DEFAULT"]

HMC_BLOCK_DEFAULT = 4000


class HMCModel(BayesSpecBase):
    """Hamiltonian Monte Carlo; ``n_samples`` kept samples in total (pooled over chains)."""

    method: Literal["hmc"]
    warmup: NonNegInt = 100
    steps: PosInt = 10
    step_size: PosFloat = 0.5
    target_accept: Annotated[float, Field(gt=0, lt=1)] = 0.8
    adapt_mass: bool = False
    prior_std: PosFloat = 1.0
    chains: PosInt = 1
    mode: Literal["full", "blocks", "subset"] = "full"
    subset: PosInt | None = None
    block_size: PosInt | None = None
    init: Literal["map", "random"] = "map"
    init_model: Name | None = None


class HMCMethod(ModelMethod):
    """``method: hmc`` — :func:`bayeslrp.train.hmc`, optionally started at a det model."""

    name = "hmc"
    Spec = HMCModel
    bayesian = True
    unkeyed = frozenset({"name", "seed", "init_model", "own_attack_sample"})

    def resolve(self, spec: Any, dataset: str) -> dict[str, Any]:
        if spec.mode == "subset" and spec.subset is None:
            raise ConfigIssue(("subset",), "required with mode: subset (number of training "
                                           "points)")
        if spec.mode != "subset" and spec.subset is not None:
            raise ConfigIssue(("subset",), "only used with mode: subset")
        if spec.mode != "blocks" and spec.block_size is not None:
            raise ConfigIssue(("block_size",), "only used with mode: blocks")
        if spec.n_samples % spec.chains:
            raise ConfigIssue(("n_samples",), f"must be divisible by chains={spec.chains}")
        if spec.init_model is not None and spec.init != "map":
            raise ConfigIssue(("init_model",), "only used with init: map")
        if spec.chains > 1 and spec.n_samples // spec.chains < 8:
            # split-chain R-hat and bulk ESS need at least 4 draws per half chain
            raise ConfigIssue(("n_samples",), f"with {spec.chains} chains each chain must keep "
                                              f"at least 8 samples for R-hat and ESS; use "
                                              f"n_samples >= {8 * spec.chains}")
        if spec.mode == "blocks":
            if spec.chains != 1:
                raise ConfigIssue(("chains",), "mode blocks runs one chain per block; leave "
                                               "chains at 1")
            if spec.block_size is None:
                return {"block_size": HMC_BLOCK_DEFAULT}
        return {}

    def check(self, spec: Any, config: Any) -> None:
        n_train = config.data.train_size
        if spec.subset is not None and n_train is not None and spec.subset > n_train:
            raise ConfigIssue(("subset",), f"larger than the {n_train} training images")
        if spec.mode == "blocks" and n_train is not None:
            blocks = -(-n_train // spec.block_size)
            if spec.n_samples < blocks:
                raise ConfigIssue(("n_samples",), f"mode blocks has {blocks} blocks of "
                                                  f"{spec.block_size}; ask for at least "
                                                  f"{blocks} samples")
        if spec.init_model is None:
            return
        ref = next((m for m in config.models if m.name == spec.init_model), None)
        if ref is None:
            raise ConfigIssue(("init_model",), f"no model named {spec.init_model!r}")
        if ref.method != "det":
            raise ConfigIssue(("init_model",), f"must name a det model (MAP start); "
                                               f"{spec.init_model!r} is {ref.method}")
        if (ref.arch, ref.hidden, ref.channels, ref.arch_kwargs) != (
                spec.arch, spec.hidden, spec.channels, spec.arch_kwargs):
            raise ConfigIssue(("init_model",), f"{spec.init_model!r} has a different "
                                               f"architecture (arch, hidden, channels, kwargs)")

    def cost(self, spec, n_train, flops):
        used = spec.subset if spec.mode == "subset" else n_train
        chains = -(-n_train // spec.block_size) if spec.mode == "blocks" else spec.chains
        iterations = chains * spec.warmup + spec.n_samples  # kept samples are pooled
        per_block = used if spec.mode != "blocks" else min(used, spec.block_size)
        total = iterations * (spec.steps + 1) * per_block * 3.0 * flops
        if spec.init == "map" and spec.init_model is None:
            total += 15 * 3.0 * used * flops  # the MAP start trained inside the stage
        return total, "hmc"

    def init_model(self, spec: Any) -> str | None:
        return spec.init_model

    def train(self, spec, net, x, y, *, init=None, common, scratch=None):
        from bayeslrp.train.hmc import hmc

        per_chain = (spec["n_samples"] if spec["mode"] == "blocks"
                     else spec["n_samples"] // spec["chains"])
        return hmc(net, x, y, n_samples=per_chain, warmup=spec["warmup"], steps=spec["steps"],
                   step_size=spec["step_size"], prior_std=spec["prior_std"], mode=spec["mode"],
                   subset=spec["subset"], block_size=spec["block_size"] or HMC_BLOCK_DEFAULT,
                   chains=spec["chains"], init=spec["init"], init_params=init,
                   mass="diag" if spec["adapt_mass"] else "identity",
                   target_accept=spec["target_accept"],
                   checkpoint_dir=None if scratch is None else scratch / "hmc", **common)

    def diagnostics(self, meta):
        steps = meta.get("step_size") or []
        diag = meta.get("diagnostics")
        return {"acceptance": meta.get("acceptance_rate"), "divergences": meta.get("divergences"),
                "step_size": float(np.mean(steps)) if steps else None,
                **({"rhat_max": diag.get("rhat_max")}
                   if isinstance(diag, dict) and "rhat_max" in diag else {})}
