"""Deep ensembles: M det (or adv) networks from seeds ``seed + j`` (``bl.train.ensemble``)."""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import model_validator

from bayeslrp.plugins.models.adversarial import AdvAttackFields, AdvMethod, adv_mode
from bayeslrp.plugins.models.base import ModelMethod
from bayeslrp.plugins.models.bayes_base import BayesSpecBase
from bayeslrp.plugins.models.deterministic import default_epochs
from bayeslrp.plugins.models.train_options import TrainOptionFields, train_options
from bayeslrp.plugins.spec import ConfigIssue, PosFloat, PosInt

__all__ = ["EnsembleMethod", "EnsembleModel", "MEMBERS_DEFAULT"]

MEMBERS_DEFAULT = 5
ADV_KEYS = ("adv_attack", "adv_eps", "adv_mix", "adv_steps", "adv_alpha")


class EnsembleModel(BayesSpecBase, TrainOptionFields, AdvAttackFields):
    """A deep ensemble of ``members`` networks (its samples); member j has seed ``seed + j``.

    ``members`` is read as the model's ``n_samples``. ``member: adv`` trains each member
    adversarially with the ``adv_*`` keys of ``method: adv``.
    """

    method: Literal["ensemble"]
    member: Literal["det", "adv"] = "det"
    epochs: PosInt | None = None
    lr: PosFloat = 1e-3
    batch_size: PosInt = 128

    @model_validator(mode="before")
    @classmethod
    def _members(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("method") != "ensemble":
            return data
        if "n_samples" in data and "members" in data:
            raise ConfigIssue(("n_samples",), "an ensemble's samples are its members; give "
                                              "members only")
        if "n_samples" in data:
            raise ConfigIssue(("n_samples",), "an ensemble's samples are its members; "
                                              "write members: M")
        data = dict(data)
        data["n_samples"] = data.pop("members", MEMBERS_DEFAULT)
        return data

    @property
    def members(self) -> int:
        """M, the number of networks (= ``n_samples``)."""
        return self.n_samples


class EnsembleMethod(ModelMethod):
    """``method: ensemble`` — :func:`bayeslrp.train.ensemble`."""

    name = "ensemble"
    Spec = EnsembleModel
    bayesian = True
    uses_bounds = True  # adv members clamp their examples to the data's pixel range
    unkeyed = frozenset({"name", "seed", "own_attack_sample"})

    def resolve(self, spec: Any, dataset: str) -> dict[str, Any]:
        if spec.member == "det":
            given = sorted(set(ADV_KEYS) & spec.model_fields_set)
            if given:
                raise ConfigIssue((given[0],), "only used with member: adv")
            return default_epochs(spec.arch, dataset) if spec.epochs is None else {}
        return AdvMethod().resolve(spec, dataset)

    def key_params(self, spec: Any) -> dict[str, Any]:
        params = super().key_params(spec)
        if spec.member == "det":
            for key in ADV_KEYS:
                params.pop(key, None)
        return params

    def cost(self, spec, n_train, flops):
        per_step = 3.0
        if spec.member == "adv":
            per_step += 3.0 * (spec.adv_steps or 1)
        return spec.members * per_step * spec.epochs * n_train * flops, "train"

    def train(self, spec, net, x, y, *, init=None, common, scratch=None):
        from bayeslrp import train
        from bayeslrp.experiment.stages.train import build_model_net
        from bayeslrp.train.preflight import preflight

        n_classes = preflight(net, x, y, common.get("device"))
        shape = list(x.shape[1:])
        extra = {}
        if spec["member"] == "adv":
            extra = {"adv_eps": spec["adv_eps"], "adv_mode": adv_mode(spec)}
            if spec["adv_attack"] == "pgd":
                extra.update(adv_steps=spec["adv_steps"], adv_alpha=spec["adv_alpha"])
        return train.ensemble(net, x, y, members=spec["n_samples"], epochs=spec["epochs"],
                              lr=spec["lr"], batch_size=spec["batch_size"],
                              init=lambda s: build_model_net(spec, shape, n_classes, s),
                              member=spec["member"], options=train_options(spec),
                              **extra, **common)

    def diagnostics(self, meta):
        history = meta.get("history") or {}
        loss, acc = history.get("loss") or [], history.get("train_accuracy") or []
        return {"members": meta.get("members"), "vectorized": meta.get("vectorized"),
                "final_loss_mean": float(np.mean(loss)) if loss else None,
                "final_train_accuracy_min": float(np.min(acc)) if acc else None,
                "final_train_accuracy_max": float(np.max(acc)) if acc else None}
