"""CLI options validated by the pydantic specs the YAML config uses (no ``x or default``).

A command builds the config section its options describe and validates it with
:func:`~bayeslrp.experiment.config.load_config`, so ``--epochs 0`` is refused exactly as
``epochs: 0`` is, and the defaults that depend on the dataset are the config's. Error
messages name the option (``--epochs``) instead of the config key.
"""
from __future__ import annotations

import re
from typing import Any

from ..errors import BayesLRPError

__all__ = ["attack_options", "check_data_dir", "data_options", "model_config",
           "option_error", "parse_settings"]

#: Config key of a model → the ``train`` option that sets it.
TRAIN_FLAGS = {"arch": "--arch", "method": "--method", "hidden": "--hidden",
               "channels": "--channels", "epochs": "--epochs", "lr": "--lr",
               "n_samples": "--n-samples", "init_std": "--vi-init-std",
               "lr_schedule": "--vi-lr-schedule", "mode": "--hmc-mode", "subset": "--subset",
               "warmup": "--warmup", "seed": "--seed", "adv_attack": "--adv-mode",
               "adv_mix": "--adv-mode", "init_model": "--init-model"}
_AT = re.compile(r"^[a-z-]+ error at (?:models\[0\]\.)?(?P<key>[a-z_.]+(?:\[\d+\])?): ")
#: Keys shared by the commands that read saved models → their option.
COMMON_FLAGS = {"eps": "--eps", "steps": "--steps", "mode": "--mode", "rule": "--rule",
                "n_samples": "--n-samples", "n_points": "--n-points", "seed": "--seed",
                "dataset": "--dataset", "data_dir": "--data-dir", "k": "--k"}


def check_data_dir(path: Any) -> None:
    """Refuse a ``--data-dir`` that is not a directory, whatever the dataset (a built-in
    one ignores it, which must not hide a typo)."""
    if path is not None:
        from ..data.locations import data_dir

        data_dir(path)


def option_error(exc: BayesLRPError, flags: dict[str, str]) -> BayesLRPError:
    """The config error ``exc`` reworded to name the CLI option it came from."""
    text = str(exc)
    match = _AT.match(text)
    if match is None:
        return exc
    key = match.group("key")
    flag = flags.get(key, {"data.dataset": "--dataset", "device": "--device",
                           "data.data_dir": "--data-dir"}.get(key))
    if flag is None:
        return exc
    return BayesLRPError(f"{flag}: {text[match.end():]}")


_ADV_MODES = {"fgsm": {"adv_attack": "fgsm"}, "mix": {"adv_attack": "fgsm", "adv_mix": True},
              "pgd": {"adv_attack": "pgd"}}


def model_config(*, dataset: str, method: str, seed: int, device: str, data_dir: Any,
                 options: dict[str, Any], settings: dict[str, Any] | None = None,
                 init_reference: dict[str, Any] | None = None) -> Any:
    """The validated :class:`~bayeslrp.experiment.config.Config` of ``train``: the model to
    train is ``models[0]``.

    ``options`` holds the method's keys as the config names them (``arch`` among them);
    ``None`` values, and keys the method's spec does not have, are left out (the config's
    default applies). ``adv_mode`` is translated to the config's keys. ``settings`` (``--set``)
    are keys of the method's spec, set last. ``init_reference``: the config entry of the
    ``--init-model`` model, added as ``models[1]`` and named by the model's ``init_model``
    (HMC then starts at it: ``init: map`` unless set).
    """
    from ..experiment.config import load_config
    from ..plugins.models import MODEL_METHODS

    if method not in MODEL_METHODS.names():
        raise BayesLRPError(f"--method must be one of {', '.join(MODEL_METHODS.names())}; "
                            f"got {method!r}")
    model: dict[str, Any] = {"name": "model", "method": method}
    fields = MODEL_METHODS.get(method).Spec.model_fields
    for key, value in options.items():
        if key == "adv_mode":
            if method == "adv":
                if value not in _ADV_MODES:
                    raise BayesLRPError(f"--adv-mode must be one of {', '.join(_ADV_MODES)}; "
                                        f"got {value!r}")
                model.update(_ADV_MODES[value])
        elif value is not None and key in fields:
            model[key] = value
    flags = dict(TRAIN_FLAGS)
    for key, value in (settings or {}).items():
        if key in ("name", "method"):
            raise BayesLRPError(f"--set {key}: not settable (use --method)" if key == "method"
                                else f"--set {key}: not settable")
        model[key] = value  # a key the spec lacks is refused by its validation
        flags[key] = f"--set {key}"
    if "members" in (settings or {}):  # an ensemble's members are its n_samples
        flags["n_samples"] = "--set members"
    models = [model]
    if init_reference is not None:
        if "init_model" not in fields:
            raise BayesLRPError(f"--init-model does not apply to {method}")
        model["init_model"] = init_reference["name"]
        if "init" in fields:
            model.setdefault("init", "map")
        models.append(init_reference)
    # The sections train does not use hold values valid for any model (n_points: attacked
    # test points; explain.n_samples: at most the samples any model keeps).
    check_data_dir(data_dir)
    data: dict[str, Any] = {"dataset": dataset, "n_points": 10}
    if data_dir is not None:
        data["data_dir"] = str(data_dir)
    doc = {"name": "train", "seed": seed, "device": device, "data": data, "models": models,
           "attacks": [{"method": "fgsm"}], "explain": {"n_samples": [1]}}
    try:
        return load_config(doc)
    except BayesLRPError as exc:
        raise option_error(exc, flags) from None


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` options as ``{key: value}``, each value read as YAML (``5`` an
    int, ``diag`` a string, ``[1, 2]`` a list)."""
    import yaml

    settings: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BayesLRPError(f"--set must be KEY=VALUE; got {item!r}")
        if key in settings:
            raise BayesLRPError(f"--set {key} given twice")
        try:
            settings[key] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise BayesLRPError(f"--set {key}: {text!r} is not a YAML value") from None
    return settings


def attack_options(method: str, options: dict[str, Any],
                   where_used: dict[str, Any] | None = None) -> dict[str, Any]:
    """The validated spec of attack ``method`` with ``options`` (``None`` values left out).

    ``where_used``: options with a CLI default (``--mode``, ``--rule``) passed only to the
    attacks that have the key.

    Raises
    ------
    BayesLRPError
        ``--method`` unknown, or an option the attack's spec refuses (named as the option).
    """
    from ..experiment.config import validate_spec
    from ..plugins.attacks import ATTACK_METHODS

    if method not in ATTACK_METHODS.names():
        raise BayesLRPError(f"--method must be one of {', '.join(ATTACK_METHODS.names())}; "
                            f"got {method!r}")
    cls = ATTACK_METHODS.get(method)
    fields = cls.Spec.model_fields
    given = {k: v for k, v in options.items() if v is not None}
    given.update({k: v for k, v in (where_used or {}).items() if k in fields})
    for key in given:
        if key not in fields:
            raise BayesLRPError(f"{COMMON_FLAGS.get(key, key)} does not apply to {method}")
    try:
        spec = validate_spec(cls.Spec, {"method": method, **given}, "attack")
    except BayesLRPError as exc:
        raise option_error(exc, COMMON_FLAGS) from None
    return spec.model_dump(mode="json", exclude=set(cls.unkeyed))


def data_options(dataset: str, n_points: int, seed: int, data_dir: Any = None) -> Any:
    """The validated data section of a command that reads test points (and its seed).

    Raises
    ------
    BayesLRPError
        Unknown dataset, ``--n-points`` not a positive multiple of 10 within the dataset's
        balanced test points, negative ``--seed`` — named as the option.
    """
    from ..experiment.config import validate_spec
    from ..experiment.config_sections import DataSpec
    from ..plugins.spec import Seed, StrictSpec

    class _Seeded(StrictSpec):
        seed: Seed

    check_data_dir(data_dir)
    data: dict[str, Any] = {"dataset": dataset, "n_points": n_points}
    if data_dir is not None:
        data["data_dir"] = str(data_dir)
    try:
        validate_spec(_Seeded, {"seed": seed}, "option")
        return validate_spec(DataSpec, data, "option")
    except BayesLRPError as exc:
        raise option_error(exc, COMMON_FLAGS) from None
