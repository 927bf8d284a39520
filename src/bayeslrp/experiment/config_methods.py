"""``explain.methods``: the list form of the explain section, expanded to ``rules`` + options.

Each entry of ``explain.methods`` is an explainer name or a map ``{method: NAME, ...params}``
(the parameters flat, or nested under ``params:``). The list is expanded before validation
into the one internal form the stages read: ``rules`` (the explainer names, in order),
``options.<name>`` (a non-LRP explainer's parameters) and ``rule_params`` (the LRP rules'
ε, γ, α, β). A config written with ``methods`` and the same config written with ``rules`` /
``options`` / ``rule_params`` therefore give identical task keys.
"""
from __future__ import annotations

from typing import Any

from bayeslrp.plugins.spec import ConfigIssue

__all__ = ["expand_methods"]

_FORM = "an explainer name or a map {method: NAME, ...parameters}"


def _entry(i: int, entry: Any) -> tuple[str, dict]:
    """``(name, params)`` of one list entry."""
    if isinstance(entry, str):
        return entry, {}
    if not isinstance(entry, dict) or not isinstance(entry.get("method"), str):
        raise ConfigIssue(("methods", i), f"must be {_FORM}; got {entry!r}"[:300])
    params = {k: v for k, v in entry.items() if k != "method"}
    if set(params) == {"params"}:
        params = params["params"]
        if not isinstance(params, dict):
            raise ConfigIssue(("methods", i, "params"), "must be a map of the explainer's "
                                                        "parameters")
    return entry["method"], dict(params)


def _merge_rule_params(i: int, method, params: dict, rule_params: dict) -> None:
    """An LRP rule's parameters go to the shared ``rule_params``; a clash is an error."""
    unknown = sorted(set(params) - set(method.rule_keys))
    if unknown:
        raise ConfigIssue(("methods", i), f"unknown parameter(s) {unknown} for the "
                                          f"{method.name} rule; allowed: "
                                          f"{sorted(method.rule_keys)}")
    for key, value in params.items():
        if key in rule_params and rule_params[key] != value:
            raise ConfigIssue(("methods", i, key), f"{key} = {value!r} here but "
                                                   f"{rule_params[key]!r} elsewhere in the "
                                                   f"explain section; give it once")
        rule_params[key] = value


def _check_params(i: int, method, params: dict) -> None:
    """A non-LRP explainer's parameters, validated here so the error names the entry."""
    from pydantic import ValidationError

    try:
        method.Params.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigIssue(("methods", i, *first["loc"]),
                          f"{first['msg']}" + (f" ({len(exc.errors()) - 1} more problem(s))"
                                               if len(exc.errors()) > 1 else "")) from None
    except ValueError as exc:
        raise ConfigIssue(("methods", i), " ".join(str(exc).split())[:300]) from None


def expand_methods(data: Any) -> Any:
    """The explain section with ``methods`` replaced by ``rules``, ``options``, ``rule_params``.

    Parameters
    ----------
    data : Any
        The raw ``explain`` mapping of a config (returned unchanged when it has no
        ``methods`` key, or is not a mapping: the model's own validation reports that).

    Returns
    -------
    Any
        The mapping in the internal form.

    Raises
    ------
    ConfigIssue
        A malformed entry, an unknown explainer, an explainer listed twice, ``methods``
        together with ``rules`` or ``options``, or an LRP parameter given twice differently.
    """
    if not isinstance(data, dict) or "methods" not in data:
        return data
    from bayeslrp.explainers import EXPLAINERS
    from bayeslrp.explainers.lrp_rules import LRPMethod

    both = [key for key in ("rules", "options") if key in data]
    if both:
        raise ConfigIssue(("methods",), f"give explain.methods or explain.{both[0]}, not "
                                        f"both (methods holds each explainer's parameters)")
    methods = data["methods"]
    if not isinstance(methods, (list, tuple)) or not methods:
        raise ConfigIssue(("methods",), f"must be a non-empty list, each entry {_FORM}")
    rules: list[str] = []
    options: dict[str, dict] = {}
    rule_params = dict(data.get("rule_params") or {})
    for i, entry in enumerate(methods):
        name, params = _entry(i, entry)
        if name not in EXPLAINERS:
            raise ConfigIssue(("methods", i), f"unknown explainer {name!r}; registered: "
                                              f"{', '.join(EXPLAINERS.names())}")
        if name in rules:
            raise ConfigIssue(("methods", i), f"explainer {name!r} is listed twice; each "
                                              f"explainer can appear once")
        rules.append(name)
        method = EXPLAINERS.get(name)
        if issubclass(method, LRPMethod):
            _merge_rule_params(i, method, params, rule_params)
        elif params:
            _check_params(i, method, params)
            options[name] = params
    out = {key: value for key, value in data.items() if key != "methods"}
    out["rules"] = rules
    if options:
        out["options"] = options
    if rule_params:
        out["rule_params"] = rule_params
    return out
