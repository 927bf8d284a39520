"""The semantic checks of a whole config, run by ``load_config`` after the schema.

Cross-section rules live here (names, links between models and attacks, sample counts,
layers); every method-specific rule is the plug-in's own (``resolve`` / ``check``).
"""
from __future__ import annotations

from typing import Any

from bayeslrp import catalog
from bayeslrp.plugins.attacks import ATTACK_METHODS
from bayeslrp.plugins.models import MODEL_METHODS
from bayeslrp.plugins.spec import ConfigIssue

__all__ = ["check_config"]

HIDDEN_DEFAULT = {"mnist": 512, "fashion_mnist": 1024}
CONV_CHANNELS_DEFAULT = 32


def _at(prefix: tuple, call, *args) -> Any:
    try:
        return call(*args)
    except ConfigIssue as issue:
        raise ConfigIssue(prefix + issue.path, str(issue)) from None


def _arch_updates(m: Any, data: Any) -> dict[str, Any]:
    ds = data.name
    if m.arch not in catalog.ARCHS:
        from bayeslrp.experiment.arch_probe import check_arch_name

        check_arch_name(m)
        for key in ("hidden", "channels"):
            if getattr(m, key) is not None:
                raise ConfigIssue((key,), f"only used by the built-in archs; give {m.arch}'s "
                                          f"widths in its kwargs")
        return {}
    if m.arch_kwargs is not None:
        raise ConfigIssue(("arch_kwargs",), f"only used with a factory arch; {m.arch} takes "
                                            f"hidden/channels")
    facts = catalog.ARCHS[m.arch]
    if not catalog.arch_fits(m.arch, data.image_shape):
        raise ConfigIssue(("arch",), f"arch {m.arch} does not fit {ds} images of shape "
                                     f"{data.image_shape}")
    update: dict[str, Any] = {}
    if not facts.takes_hidden:
        if m.hidden is not None:
            raise ConfigIssue(("hidden",), f"{m.arch} has fixed widths; remove hidden")
    elif m.hidden is None:
        if ds not in HIDDEN_DEFAULT:
            raise ConfigIssue(("hidden",), f"required for arch {m.arch} on {ds} (no default)")
        update["hidden"] = HIDDEN_DEFAULT[ds]
    if not facts.takes_channels and m.channels is not None:
        raise ConfigIssue(("channels",), "only used by arch conv")
    if facts.takes_channels and m.channels is None:
        update["channels"] = CONV_CHANNELS_DEFAULT
    size = catalog.parameter_count(m.arch, data.image_shape, update.get("hidden", m.hidden),
                                   update.get("channels", m.channels), data.facts.n_classes)
    if size is not None and size > catalog.MAX_PARAMETERS:
        key = "channels" if m.channels is not None and m.hidden is None else "hidden"
        raise ConfigIssue((key,), f"the {m.arch} net would have {size:.3g} parameters "
                                  f"({4 * size / 2**30:.3g} GiB per sample), more than the "
                                  f"{catalog.MAX_PARAMETERS:.3g} allowed; use a smaller {key}")
    return update


def _resolve_model(m: Any, data: Any) -> Any:
    from bayeslrp.experiment.arch_probe import check_model_arch

    update = _arch_updates(m, data)
    if update:
        m = m.model_copy(update=update)
    if m.arch not in catalog.ARCHS or m.init_weights is not None:
        check_model_arch(m, data)  # builds the network: the built-in ones need not
    update = MODEL_METHODS.get(m.method)().resolve(m, data.name)
    return m.model_copy(update=update) if update else m


def _unique_at(values: list, section: str, key: str, what: str) -> None:
    seen: set = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ConfigIssue((section, i, key), f"duplicate {what} {v!r}")
        seen.add(v)


def _derived_names(models: tuple) -> list[str]:
    known = [m.name for m in models]
    for i, m in enumerate(models):
        for j, (sample, own) in enumerate(zip(m.own_attack_sample or (), m.own_models)
                                          if m.bayesian else ()):
            if sample >= m.sample_count:
                raise ConfigIssue(("models", i, "own_attack_sample", j), (
                    f"sample {sample} does not exist; model {m.name!r} keeps "
                    f"{m.sample_count} samples (0 to {m.sample_count - 1})"))
            if own in known:
                raise ConfigIssue(("models", i, "own_attack_sample", j), (
                    f"derived model name {own!r} is already a model's name"))
            known.append(own)
    return known


def _check_attacks(cfg: Any, known: list[str]) -> None:
    for j, a in enumerate(cfg.attacks):
        if a.transfer_from is not None and a.transfer_from not in known:
            raise ConfigIssue(("attacks", j, "transfer_from"), (
                f"no model named {a.transfer_from!r}; models are {', '.join(known)}"))
    _unique_at([a.label for a in cfg.attacks], "attacks", "name", "attack name")
    for j, a in enumerate(cfg.attacks):
        if a.label == "clean":  # reserved: the unattacked images in task labels
            raise ConfigIssue(("attacks", j, "name"), "'clean' is reserved; choose another "
                                                      "attack name")
        _at(("attacks", j), ATTACK_METHODS.get(a.method)().check, a, cfg)


def _check_sample_counts(loc: tuple, counts: tuple, bayes: list, single: bool = False) -> None:
    for j, n in enumerate(counts):
        for i, m in bayes:
            if n > m.sample_count:
                where = loc if single else loc + (j,)
                raise ConfigIssue(where, (
                    f"{n} samples requested but model {m.name!r} keeps only {m.sample_count}; "
                    f"lower it or raise models[{i}]."
                    f"{'members' if m.method == 'ensemble' else 'n_samples'}"))


def _check_layers(cfg: Any) -> None:
    if isinstance(cfg.explain.layers, str):
        return
    for j, layer in enumerate(cfg.explain.layers):
        for m in cfg.models:
            layers = m.learnable_layers
            if layer not in layers:
                raise ConfigIssue(("explain", "layers", j), (
                    f"layer {layer} is not a learnable layer of arch {m.arch} (model "
                    f"{m.name!r}); use one of {list(layers)}, 'all' or 'last'"))


def _check_compare(compare: Any, models: tuple) -> None:
    by_name = {m.name: m for m in models}
    arch_of_baseline: dict[str, str] = {}
    for j, b in enumerate(compare.baseline):
        if b not in by_name:
            raise ConfigIssue(("compare", "baseline", j), (
                f"no model named {b!r}; models are {', '.join(by_name)}"))
        arch = by_name[b].arch
        if arch in arch_of_baseline:
            raise ConfigIssue(("compare", "baseline", j), (
                f"two baselines for arch {arch}: {arch_of_baseline[arch]!r} and {b!r}"))
        arch_of_baseline[arch] = b
    for i, m in enumerate(models):
        if m.name not in compare.baseline and m.arch not in arch_of_baseline:
            raise ConfigIssue(("models", i, "arch"), (
                f"model {m.name!r} (arch {m.arch}) has no baseline of the same arch; "
                f"add one to compare.baseline"))


def check_config(cfg: Any) -> Any:
    """Resolve the dataset-dependent defaults and run every semantic check.

    Returns
    -------
    Config
        ``cfg`` with its models resolved.

    Raises
    ------
    ConfigIssue
        With the full key path of the problem.
    """
    from bayeslrp.experiment.config import selects_nothing
    from bayeslrp.experiment.draws import check_fresh_draws

    models = tuple(_at(("models", i), _resolve_model, m, cfg.data)
                   for i, m in enumerate(cfg.models))
    _unique_at([m.name for m in models], "models", "name", "model name")
    cfg = cfg.model_copy(update={"models": models})
    known = _derived_names(models)
    for i, m in enumerate(models):
        _at(("models", i), MODEL_METHODS.get(m.method)().check, m, cfg)
    _check_attacks(cfg, known)
    bayes = [(i, m) for i, m in enumerate(models) if m.bayesian]
    _check_sample_counts(("explain", "n_samples"), cfg.explain.n_samples, bayes)
    for j, a in enumerate(cfg.attacks):
        if a.n_samples is not None:
            _check_sample_counts(("attacks", j, "n_samples"), (a.n_samples,), bayes, single=True)
    check_fresh_draws(cfg)
    _check_layers(cfg)
    n_pixels = cfg.data.image_shape[1] * cfg.data.image_shape[2]
    for j, k in enumerate(cfg.metrics.k):
        if selects_nothing(k, n_pixels, cfg.metrics.topk_mode):
            raise ConfigIssue(("metrics", "k", j), (
                f"k={k}% of {n_pixels} pixels selects no pixel"
                f"{' per sign' if cfg.metrics.topk_mode == 'signed' else ''}; use a larger k"))
    for j, count in enumerate(cfg.metrics.k_pixels):
        if count > n_pixels or (cfg.metrics.topk_mode == "signed" and count < 2):
            raise ConfigIssue(("metrics", "k_pixels", j), (
                f"{count} pixels of {n_pixels} cannot be selected"
                f"{' (signed mode takes at least 2)' if count < 2 else ''}"))
    if cfg.compare is not None:
        _check_compare(cfg.compare, models)
    return cfg
