"""Reading config text: a safe YAML loader that reports duplicate keys, and one-line errors.

:func:`parse_yaml` turns YAML text into plain Python data; :func:`error_line` turns a pydantic
``ValidationError`` into ``config error at <key path>: <what>``.
"""
from __future__ import annotations

import difflib
import re
from typing import Any

import yaml
from pydantic import ValidationError

from bayeslrp.errors import BayesLRPError
from bayeslrp.plugins.spec import ConfigIssue

__all__ = ["error_line", "parse_yaml", "plain"]

# --------------------------------------------------------------------------- YAML loading


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that keeps duplicate keys visible and reads ``1e-3`` as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


class _Dups(dict):
    """A YAML mapping that remembers keys given twice (PyYAML silently keeps the last)."""

    duplicates: list


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Dups:
    loader.flatten_mapping(node)
    out = _Dups()
    out.duplicates = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            out.duplicates.append((key, key_node.start_mark.line + 1))
        try:
            out[key] = loader.construct_object(value_node, deep=True)
        except TypeError:  # unhashable key such as a list
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable key", key_node.start_mark) from None
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _find_duplicate(obj: Any, path: str = "") -> tuple[str, int] | None:
    if isinstance(obj, _Dups):
        if obj.duplicates:
            key, line = obj.duplicates[0]
            return f"{path}.{key}" if path else str(key), line
        for k, v in obj.items():
            found = _find_duplicate(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = _find_duplicate(v, f"{path}[{i}]")
            if found:
                return found
    return None


def plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    return obj


def parse_yaml(text: str) -> Any:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise BayesLRPError(f"config error at {where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise BayesLRPError(f"config error at (file): invalid YAML: "
                            f"{' '.join(str(exc).split())}") from None
    dup = _find_duplicate(data)
    if dup:
        raise BayesLRPError(f"config error at {dup[0]}: key given twice (again on line {dup[1]})")
    return plain(data)


# --------------------------------------------------------------------------- errors


def field_names(classes) -> list[str]:
    """Every key of the given spec classes (for "did you mean" hints)."""
    return sorted({name for cls in classes for name in cls.model_fields})


def _format_path(loc: tuple, data: Any) -> str:
    """Render a pydantic ``loc`` as ``models[1].epochs``, dropping discriminator tags."""
    parts: list[str] = []
    cur = data
    for pos, el in enumerate(loc):
        last = pos == len(loc) - 1
        if isinstance(cur, dict) and not last and cur.get("method") == el:
            continue  # the discriminator tag pydantic puts into the loc of a union member
        if pos and loc[pos - 1] == "dataset" and el in ("name", "files") and not (
                isinstance(cur, dict) and el in cur):
            continue  # the tag of data.dataset's union (a built-in name or a user's files)
        if isinstance(el, int):
            parts.append(f"[{el}]")
            cur = cur[el] if isinstance(cur, list) and -len(cur) <= el < len(cur) else None
        elif isinstance(cur, dict) and el in cur:
            parts.append(f".{el}")
            cur = cur[el]
        elif isinstance(cur, dict) and not last:
            continue  # a union tag ("det", "fgsm"): not a key of the input
        else:
            parts.append(f".{el}")
            cur = None
    return "".join(parts).lstrip(".") or "(top level)"


def _describe(err: dict, names: list[str], tags: dict) -> tuple[tuple, str]:
    loc = tuple(err.get("loc", ()))
    etype = err.get("type", "")
    msg = err.get("msg", "invalid value")
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigIssue):
        return loc + cause.path, str(cause)
    if etype in ("union_tag_invalid", "union_tag_not_found"):
        disc = str((err.get("ctx") or {}).get("discriminator", "method")).strip("'\"")
        if etype == "union_tag_not_found":
            msg = f"missing; must be one of {_tags_hint(loc, tags)}"
        else:
            given = (err.get("ctx") or {}).get("tag", err.get("input"))
            msg = f"unknown {disc} {given!r}; must be one of {_tags_hint(loc, tags)}"
        return loc + (disc,), msg
    if etype == "extra_forbidden" and loc and isinstance(loc[-1], str):
        close = difflib.get_close_matches(loc[-1], names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return loc, f"unknown key{hint}"
    if etype == "missing":
        return loc, "required key is missing"
    if etype in ("tuple_type", "list_type"):  # YAML users write lists, never tuples
        return loc, "Input should be a list"
    if etype in ("model_type", "model_attributes_type", "dict_type"):
        return loc, "Input should be a mapping of keys to values"
    msg = msg.replace("Tuple should", "List should")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return loc, msg


def _tags_hint(loc: tuple, tags: dict) -> str:
    section = next((el for el in loc if isinstance(el, str)), "")
    names = tags.get(section, ())
    return ", ".join(names) if names else "the listed methods"


def _real_errors(errors: list[dict]) -> list[dict]:
    """``errors`` without pydantic's follow-on errors.

    A container whose item failed is reported again at the container's own location (e.g. a
    ``models`` tuple "should have at least 1 item" after its only item was rejected); such an
    error, whose location is a prefix of another error's, says nothing new.
    """
    locs = [tuple(e.get("loc", ())) for e in errors]
    kept = [e for e, loc in zip(errors, locs)
            if not any(len(other) > len(loc) and other[:len(loc)] == loc for other in locs)]
    return kept or errors


def error_line(exc: ValidationError, data: Any, names: list[str] = (),
               tags: dict | None = None) -> str:
    """``config error at <path>: <message>`` for the first error of ``exc``.

    ``names``: known keys (for "did you mean"); ``tags``: section → discriminator values.
    """
    errors = _real_errors(exc.errors())
    loc, msg = _describe(errors[0], list(names), tags or {})
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    line = f"config error at {_format_path(loc, data)}: {msg}{more}"
    return " ".join(line.split())
