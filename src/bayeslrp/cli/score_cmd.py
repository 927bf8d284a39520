"""``bayeslrp score``: the robustness of an explanation of a saved model under an attack."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import BayesLRPError
from .app import app


def _options(text: Optional[str], flag: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise BayesLRPError(f"{flag} must be a JSON object, e.g. '{{\"steps\": 64}}'") from None
    if not isinstance(value, dict):
        raise BayesLRPError(f"{flag} must be a JSON object, e.g. '{{\"steps\": 64}}'")
    return value


@app.command()
def score(
    model: Path = typer.Option(..., help="Directory of a saved model."),
    explainer: str = typer.Option("integrated_gradients",
                                  help="A registered explainer (see docs/explainers.md)."),
    attack: str = typer.Option("pgd", help="A registered attack: fgsm, pgd, topk, region, beta."),
    n_points: int = typer.Option(500, help="Balanced test points (n/10 per class)."),
    k: float = typer.Option(20.0, help="Top-k percentage of the overlap."),
    layer: Optional[int] = typer.Option(None, help="Learnable layer explained (default output)."),
    n_samples: Optional[int] = typer.Option(None, help="Posterior samples used (default all)."),
    explainer_options: Optional[str] = typer.Option(
        None, "--explainer-options", help="The explainer's options as JSON."),
    attack_options: Optional[str] = typer.Option(
        None, "--attack-options", help="The attack's options as JSON (eps, steps, …)."),
    seed: int = typer.Option(0, help="Seed of the points, the attack and the bootstrap."),
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the model's)."),
    data_dir: Optional[Path] = typer.Option(None, help="Directory with the dataset files."),
) -> None:
    """Print the explanation's top-k overlap, softmax robustness and attack success (medians
    with 95 % bootstrap intervals) on balanced test points."""
    from .. import attacks, data
    from ..ensemble import Ensemble
    from ..explainers import EXPLAINERS
    from ..compat import check_data
    from ..scoring import robustness
    from .model_cmd import _bounds, _n_classes
    from .specs import data_options

    if explainer not in EXPLAINERS:
        raise BayesLRPError(f"--explainer must be one of {', '.join(EXPLAINERS.names())}; "
                            f"got {explainer!r}")
    if attack not in attacks.methods():
        raise BayesLRPError(f"--attack must be one of {', '.join(attacks.methods())}; "
                            f"got {attack!r}")
    check_k(k)
    e_opts = _options(explainer_options, "--explainer-options")
    a_opts = _options(attack_options, "--attack-options")
    check_attack(attack, a_opts)
    ens = Ensemble.load(model)
    n = ens.resolve_n(n_samples)
    name = dataset if dataset is not None else ens.meta.get("dataset")
    if not name:
        raise BayesLRPError("the model does not record its dataset; pass --dataset")
    data_options(name, n_points, seed, data_dir)
    _check_options(explainer, e_opts, layer, ens)
    x_all, y_all = data.load(name, "test", data_dir=data_dir)
    check_data(ens, x_all, y_all, dataset=name, n_classes=_n_classes(name), bounds=_bounds(name))
    points = data.balanced_subset(y_all, n=n_points, seed=seed)
    result = robustness(ens, x_all[points], y_all[points], explainer=explainer, attack=attack,
                        k=k, n_samples=n, seed=seed, layer=layer, explainer_params=e_opts,
                        attack_params=a_opts)
    typer.echo(f"{name}, {n_points} balanced test points, model {model}")
    typer.echo(str(result))


def _check_options(explainer: str, options: dict, layer, ens) -> None:
    """Refuse bad explainer options and layers before any attack runs."""
    from .. import nets
    from ..explainers import EXPLAINERS

    params = dict(options)
    if "quadrature" in params:
        params["method"] = params.pop("quadrature")
    cls = EXPLAINERS.get(explainer)
    try:
        if hasattr(cls, "check_params"):
            cls.check_params(params)
        else:
            cls.Params.model_validate(params)
    except ValueError as exc:
        raise BayesLRPError(f"--explainer-options: " + " ".join(str(exc).split())[:300]) \
            from None
    if layer is not None and layer not in nets.learnable_layers(ens.module):
        raise BayesLRPError(f"--layer {layer} is not a learnable layer of this model; choose "
                            f"one of {nets.learnable_layers(ens.module)}")


def check_attack(attack: str, options: dict) -> None:
    """Refuse ``--attack-options`` the attack's spec does not accept, before any work."""
    from ..experiment.config import validate_spec
    from ..plugins.attacks import ATTACK_METHODS

    try:
        validate_spec(ATTACK_METHODS.get(attack).Spec, {"method": attack, **options}, "attack")
    except BayesLRPError as exc:
        raise BayesLRPError(f"--attack-options: {exc}") from None


def check_k(k: float) -> None:
    """Validate ``--k`` with the config's ``metrics.k`` (a percentage in (0, 100])."""
    from ..experiment.config import validate_spec
    from ..experiment.config_sections import MetricsSpec

    try:
        validate_spec(MetricsSpec, {"k": [k]}, "option")
    except BayesLRPError as exc:
        raise BayesLRPError(f"--k: {str(exc).split(': ', 1)[-1]}") from None
