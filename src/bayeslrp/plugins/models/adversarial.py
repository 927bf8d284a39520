"""Adversarial training: batches replaced by (or mixed with) FGSM/PGD examples (SPEC §3)."""
from __future__ import annotations

from typing import Any, Literal

from bayeslrp.plugins.models.base import ModelMethod, ModelSpecBase, last_value
from bayeslrp.plugins.models.deterministic import default_epochs
from bayeslrp.plugins.models.train_options import TrainOptionFields, train_options
from bayeslrp.plugins.spec import ConfigIssue, Epsilon, PosFloat, PosInt, StrictSpec

__all__ = ["AdvAttackFields", "AdvMethod", "AdvModel", "adv_mode"]

PGD_STEPS_DEFAULT, PGD_ALPHA_DEFAULT = 40, 0.01
#: Adversarial epochs where they differ from the det ones (the original's CIFAR ResNet-20).
ADV_EPOCHS_DEFAULT = {"resnet20": 150}


class AdvAttackFields(StrictSpec):
    """The adversarial-example keys of adversarial training (``method: adv`` and adv members
    of a deep ensemble): attack, ε, mixing with clean batches, PGD steps and step size."""

    adv_attack: Literal["fgsm", "pgd"] = "fgsm"
    adv_eps: Epsilon = 0.2
    adv_mix: bool = False
    adv_steps: PosInt | None = None
    adv_alpha: PosFloat | None = None


class AdvModel(ModelSpecBase, TrainOptionFields, AdvAttackFields):
    """Adversarial training: batches replaced by (or mixed with) FGSM/PGD examples."""

    method: Literal["adv"]
    epochs: PosInt | None = None
    lr: PosFloat = 1e-3
    batch_size: PosInt = 128


def adv_mode(model: dict) -> str:
    """The ``mode`` of :func:`bayeslrp.train.adversarial` for a spec (fgsm, mix or pgd)."""
    if model["adv_attack"] == "pgd":
        return "pgd"
    return "mix" if model["adv_mix"] else "fgsm"


class AdvMethod(ModelMethod):
    """``method: adv`` — :func:`bayeslrp.train.adversarial`."""

    name = "adv"
    Spec = AdvModel

    def resolve(self, spec: Any, dataset: str) -> dict[str, Any]:
        update = {}
        if spec.epochs is None:
            update = ({"epochs": ADV_EPOCHS_DEFAULT[spec.arch]} if spec.arch in ADV_EPOCHS_DEFAULT
                      else default_epochs(spec.arch, dataset))
        if spec.adv_attack == "fgsm":
            for key in ("adv_steps", "adv_alpha"):
                if getattr(spec, key) is not None:
                    raise ConfigIssue((key,), "only used with adv_attack: pgd")
            return update
        if spec.adv_mix:
            raise ConfigIssue(("adv_mix",), "mixing clean and PGD batches is not implemented; "
                                            "use adv_mix: false or adv_attack: fgsm")
        return {**update, "adv_steps": spec.adv_steps or PGD_STEPS_DEFAULT,
                "adv_alpha": spec.adv_alpha or PGD_ALPHA_DEFAULT}

    def cost(self, spec, n_train, flops):
        per_attack = 3.0 * (spec.adv_steps or 1)  # FGSM: one forward + backward
        return (3.0 + per_attack) * spec.epochs * n_train * flops, "train"

    uses_bounds = True  # its training batches are clamped to the data's pixel range

    def train(self, spec, net, x, y, *, init=None, common, scratch=None):
        from bayeslrp import train

        extra = ({"pgd_steps_": spec["adv_steps"], "pgd_alpha": spec["adv_alpha"]}
                 if spec["adv_attack"] == "pgd" else {})
        return train.adversarial(net, x, y, eps=spec["adv_eps"], mode=adv_mode(spec),
                                 epochs=spec["epochs"], lr=spec["lr"],
                                 batch_size=spec["batch_size"], options=train_options(spec),
                                 **extra, **common)

    def diagnostics(self, meta):
        return {"final_loss": last_value(meta, "loss"),
                "final_train_accuracy": last_value(meta, "train_accuracy")}
