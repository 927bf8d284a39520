"""``compat: original``: the original research code's settings, filled in where not given."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["COMPAT_ORIGINAL", "expand_compat"]


#: ``compat: original`` fills these values where the config does not give them (explicit
#: values win). Paths are (section, key); see docs/compat.md for why each default differs.
COMPAT_ORIGINAL: dict[str, Any] = {
    "attacks.mode": "per_sample_average",       # fgsm and pgd only
    "metrics.topk_mode": "signed",
    "metrics.ties": "index",
    "explain.output_seed": "one",
    "explain.inner_seed": "original",            # per-channel argmax counts at inner layers
    "explain.bayes": "per_sample_argmax",
    "models.mode": "blocks",                    # hmc only (block_size then defaults to 4000)
    "models.channels": 16,                      # conv only
    "figures.fig6_point": "original",           # which image Figs. 5-6 show
}


def expand_compat(data: Mapping[str, Any]) -> dict[str, Any]:
    """The raw config with the ``compat: original`` settings filled in where not given.

    Explicit values in ``data`` are kept. Entries of the wrong type are left alone, so that
    schema validation reports them at their usual path.
    """
    out = dict(data)

    def fill(entry: Any, key: str, value: Any) -> Any:
        if isinstance(entry, dict) and key not in entry:
            return {**entry, key: value}
        return entry

    if isinstance(out.get("attacks"), list):
        out["attacks"] = [fill(a, "mode", COMPAT_ORIGINAL["attacks.mode"])
                          if isinstance(a, dict) and a.get("method") in ("fgsm", "pgd", "pgd_adaptive") else a
                          for a in out["attacks"]]
    if isinstance(out.get("models"), list):
        models = []
        for m in out["models"]:
            if isinstance(m, dict) and m.get("method") == "hmc":
                m = fill(m, "mode", COMPAT_ORIGINAL["models.mode"])
            if isinstance(m, dict) and m.get("arch") == "conv":
                m = fill(m, "channels", COMPAT_ORIGINAL["models.channels"])
            models.append(m)
        out["models"] = models
    for section in ("explain", "metrics", "figures"):
        entry = out.get(section, {})
        for path, value in COMPAT_ORIGINAL.items():
            if path.startswith(section + "."):
                entry = fill(entry, path.split(".", 1)[1], value)
        out[section] = entry
    return out
