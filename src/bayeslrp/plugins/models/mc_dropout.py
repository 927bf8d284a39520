"""MC dropout: a net trained with dropout, its S masks written into the weights (SPEC §9)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from bayeslrp.plugins.models.base import ModelMethod, last_value
from bayeslrp.plugins.models.bayes_base import BayesSpecBase
from bayeslrp.plugins.models.deterministic import default_epochs
from bayeslrp.plugins.models.train_options import TrainOptionFields, train_options
from bayeslrp.plugins.spec import ConfigIssue, PosFloat, PosInt

__all__ = ["MCDropoutMethod", "MCDropoutModel"]


class MCDropoutModel(BayesSpecBase, TrainOptionFields):
    """Dropout of rate ``p`` on the inputs of ``layers`` (module names of ``nn.Linear``
    layers, as ``net.named_modules()`` gives them: fc2's are ``"3"`` and ``"5"``); by default
    every Linear layer after the first learnable one. ``n_samples`` masks are the posterior
    samples."""

    method: Literal["mc_dropout"]
    p: Annotated[float, Field(gt=0, lt=1)] = 0.5
    layers: Annotated[list[Annotated[str, StringConstraints(min_length=1)]],
                      Field(min_length=1)] | None = None
    epochs: PosInt | None = None
    lr: PosFloat = 1e-3
    batch_size: PosInt = 128


class MCDropoutMethod(ModelMethod):
    """``method: mc_dropout`` — :func:`bayeslrp.train.mc_dropout`."""

    name = "mc_dropout"
    Spec = MCDropoutModel
    bayesian = True
    unkeyed = frozenset({"name", "seed", "own_attack_sample"})

    def resolve(self, spec: Any, dataset: str) -> dict[str, Any]:
        return default_epochs(spec.arch, dataset) if spec.epochs is None else {}

    def check(self, spec: Any, config: Any) -> None:
        from bayeslrp import catalog

        if spec.arch in catalog.ARCHS and spec.layers is None:
            return  # fc2, conv, resnet20: all end in a Linear head
        from bayeslrp.errors import BayesLRPError
        from bayeslrp.train.mc_dropout import check_dropout_layers, default_dropout_layers

        net = _network(self, spec, config)
        if spec.layers is None:
            if not default_dropout_layers(net):
                raise ConfigIssue(("arch",), f"{spec.arch} has no nn.Linear layer after its "
                                             f"first learnable layer; MC dropout drops such a "
                                             f"layer's input (name layers: explicitly)")
            return
        try:
            check_dropout_layers(net, spec.layers)
        except BayesLRPError as exc:
            raise ConfigIssue(("layers",), str(exc)) from None

    def key_params(self, spec: Any) -> dict[str, Any]:
        params = super().key_params(spec)
        if params.get("layers") is None:  # the default: absent from the keys made before it
            params.pop("layers", None)
        return params

    def cost(self, spec, n_train, flops):
        return 3.0 * spec.epochs * n_train * flops, "train"

    def train(self, spec, net, x, y, *, init=None, common, scratch=None):
        from bayeslrp import train

        return train.mc_dropout(net, x, y, p=spec["p"], n_samples=spec["n_samples"],
                                layers=spec.get("layers"), epochs=spec["epochs"], lr=spec["lr"],
                                batch_size=spec["batch_size"], options=train_options(spec),
                                **common)

    def diagnostics(self, meta):
        return {"p": meta.get("p"), "dropout_layers": meta.get("layers"),
                "final_loss": last_value(meta, "loss"),
                "final_train_accuracy": last_value(meta, "train_accuracy")}



def _network(method: MCDropoutMethod, spec: Any, config: Any):
    """The network ``spec`` builds on the config's data, as the train stage builds it (its
    ``init_weights`` not loaded: only module names are checked)."""
    from bayeslrp.experiment.stages.train import build_model_net

    params = {k: v for k, v in method.key_params(spec).items() if k != "init_weights"}
    return build_model_net(params, list(config.data.image_shape), config.data.facts.n_classes, 0)
