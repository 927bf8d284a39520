"""Mean-field Gaussian variational inference (SPEC §3, paper Table III)."""
from __future__ import annotations

from typing import Any, Literal

from bayeslrp.plugins.models.base import ModelMethod, last_value
from bayeslrp.plugins.models.bayes_base import BayesSpecBase
from bayeslrp.plugins.models.train_options import TrainOptionFields, train_options
from bayeslrp.plugins.spec import ConfigIssue, PosFloat, PosInt

__all__ = ["VIMethod", "VIModel", "VI_INIT_STD_DEFAULT", "VI_KEY_LEGACY_VALUES",
           "VI_LR_SCHEDULES"]

VI_EPOCHS_DEFAULT = {"mnist": 5, "fashion_mnist": 15, "cifar10": 200}
VI_LR_DEFAULT = {"mnist": 0.01, "fashion_mnist": 0.001, "cifar10": 0.001}
#: Initial posterior σ of VI (``bayeslrp.train.vi.DEFAULT_INIT_STD``; repeated here so that
#: validating a config does not import torch; a test checks they agree).
VI_INIT_STD_DEFAULT = 1e-3
VI_LR_SCHEDULES = ("constant", "cosine")
#: VI options added after run directories already existed, with the values every earlier run
#: trained with. A model holding these values leaves them out of its artifact key (so older
#: run directories keep their artifacts), and training fills them back in. Literal on purpose:
#: changing a default later must not make new models reuse artifacts trained with the old values.
VI_KEY_LEGACY_VALUES = {"init_std": 1e-3, "lr_schedule": "constant", "num_particles": 1,
                        "mu_init_std": None}


class VIModel(BayesSpecBase, TrainOptionFields):
    """Mean-field Gaussian variational inference; ``n_samples`` posterior draws are kept.

    ``num_particles``: network samples per data point and step; ``mu_init_std``: initial
    means from N(0, mu_init_std²) instead of the built net's weights (bayesian-torch: 0.1).
    """

    method: Literal["vi"]
    epochs: PosInt | None = None
    lr: PosFloat | None = None
    batch_size: PosInt = 128
    prior_std: PosFloat = 1.0
    init_std: PosFloat = VI_INIT_STD_DEFAULT
    lr_schedule: Literal[VI_LR_SCHEDULES] = "constant"
    num_particles: PosInt = 1
    mu_init_std: PosFloat | None = None


class VIMethod(ModelMethod):
    """``method: vi`` — :func:`bayeslrp.train.vi`."""

    name = "vi"
    Spec = VIModel
    # own_attack_sample only adds derived models downstream; it does not change training.
    bayesian = True
    unkeyed = frozenset({"name", "seed", "own_attack_sample"})

    def resolve(self, spec: Any, dataset: str) -> dict[str, Any]:
        if spec.weight_decay:
            raise ConfigIssue(("weight_decay",), "VI takes no weight decay: prior_std is its "
                                                 "regulariser")
        update = {}
        for key, table in (("epochs", VI_EPOCHS_DEFAULT), ("lr", VI_LR_DEFAULT)):
            if getattr(spec, key) is None:
                if dataset not in table:
                    raise ConfigIssue((key,), f"required for vi on {dataset} (no default)")
                update[key] = table[dataset]
        return update

    def key_params(self, spec: Any) -> dict[str, Any]:
        params = super().key_params(spec)
        for key, legacy in VI_KEY_LEGACY_VALUES.items():
            if params.get(key) == legacy:
                del params[key]
        return params

    def cost(self, spec, n_train, flops):
        # a weight draw per batch, num_particles network samples per point
        return 4.0 * spec.epochs * spec.num_particles * n_train * flops, "train"

    def train(self, spec, net, x, y, *, init=None, common, scratch=None):
        from bayeslrp.train.vi import vi

        return vi(net, x, y, epochs=spec["epochs"], lr=spec["lr"], prior_std=spec["prior_std"],
                  n_samples=spec["n_samples"], batch_size=spec["batch_size"],
                  init_std=spec.get("init_std", VI_KEY_LEGACY_VALUES["init_std"]),
                  lr_schedule=spec.get("lr_schedule", VI_KEY_LEGACY_VALUES["lr_schedule"]),
                  num_particles=spec.get("num_particles", 1),
                  mu_init_std=spec.get("mu_init_std"), options=train_options(spec), **common)

    def diagnostics(self, meta):
        nll, kl = last_value(meta, "nll"), last_value(meta, "kl_per_point")
        return {"elbo_per_point": None if nll is None or kl is None else -(nll + kl),
                "nll_per_point": nll, "kl_per_point": kl}
