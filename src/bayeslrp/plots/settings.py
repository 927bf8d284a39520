"""The figure settings of a run, read from its ``config.yaml``.

Figures are drawn per run directory, so one set of settings applies to all of them: the
``figures`` section and the ``metrics.ties`` / ``metrics.topk_mode`` of the first document
of ``config.yaml`` (every document of a profile carries the same values). A run directory
without a config, or with a config of an older version, gets the defaults.
"""
from __future__ import annotations

from dataclasses import dataclass

from bayeslrp.errors import BayesLRPError
from bayeslrp.metrics import MODES, TIES

from .heatmaps import POINT_CHOICES

__all__ = ["FigureSettings", "figure_settings"]


@dataclass(frozen=True)
class FigureSettings:
    """What the figures of one run show.

    Attributes
    ----------
    fig6_point : str
        How Fig. 6 and the top-k pixel figure pick their image (``figures.fig6_point``).
    ties, topk_mode : str
        The run's top-k selection (``metrics``), used to draw the top-k pixel sets.
    """

    fig6_point: str = "first_failed"
    ties: str = "nonzero"
    topk_mode: str = "abs"


def _value(doc: dict, section: str, key: str, allowed: tuple[str, ...], default: str,
           source: str) -> str:
    part = doc.get(section)
    if not isinstance(part, dict) or part.get(key) is None:
        return default
    value = part[key]
    if value not in allowed:
        raise BayesLRPError(f"config error at {section}.{key} ({source}): {value!r} is not one "
                            f"of {', '.join(allowed)}")
    return str(value)


def figure_settings(config_text: str | None, source: str = "config.yaml") -> FigureSettings:
    """The :class:`FigureSettings` of a run's ``config.yaml`` text (defaults when absent).

    Raises
    ------
    BayesLRPError
        When the config names a value that does not exist (one line naming the key).
    """
    import yaml

    if config_text is None:
        return FigureSettings()
    try:
        docs = [d for d in yaml.safe_load_all(config_text) if isinstance(d, dict)]
    except yaml.YAMLError:
        return FigureSettings()
    if not docs:
        return FigureSettings()
    doc = docs[0]
    return FigureSettings(
        fig6_point=_value(doc, "figures", "fig6_point", POINT_CHOICES, "first_failed", source),
        ties=_value(doc, "metrics", "ties", TIES, "nonzero", source),
        topk_mode=_value(doc, "metrics", "topk_mode", MODES, "abs", source))
