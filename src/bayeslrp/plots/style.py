"""Figure creation, colours and atomic saving shared by every figure module.

Figures are built with the object-oriented API on an Agg canvas (``matplotlib.figure.Figure``,
never ``pyplot``): no display is needed, no global figure registry keeps them alive, and the
caller's matplotlib backend is left alone.
"""
from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bayeslrp.fileio import atomic_write_bytes

__all__ = ["HEATMAP_CMAP", "FORMATS", "new_figure", "save_figure", "series_colors", "styled"]

#: Diverging colour map for relevance, used with ``vmin=-1, vmax=1`` so that 0 is white.
HEATMAP_CMAP = "bwr"
FORMATS = ("png", "pdf")
PNG_DPI = 130

_RC = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
}
# Stable metadata so that the same data gives byte-identical files.
_METADATA = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None,
                                                "CreationDate": None}}


_F = TypeVar("_F", bound=Callable)


def styled(func: _F) -> _F:
    """Run a figure function under the package's matplotlib style (rcParams are read when
    axes and artists are created, so the whole drawing runs inside the style context)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(_RC):
            return func(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width × height`` inches on an Agg canvas, constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path_stem: str | Path,
                formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.png`` and ``<path_stem>.pdf``, each atomically.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path_stem : str or Path
        Target path without suffix; parent directories are created.
    formats : iterable of str
        File formats (suffixes) to write; PNG and PDF by default.

    Returns
    -------
    list of Path
        The written files, in the order of ``formats``.
    """
    stem = Path(path_stem)
    written = []
    for fmt in formats:
        buffer = io.BytesIO()
        with mpl.rc_context(_RC):
            fig.savefig(buffer, format=fmt, dpi=PNG_DPI, metadata=_METADATA.get(fmt),
                        facecolor="white")
        written.append(atomic_write_bytes(stem.with_name(f"{stem.name}.{fmt}"),
                                          buffer.getvalue()))
    return written


_BAYES_MAPS = ("Blues", "Greens", "Purples", "Reds")


def series_colors(series: list[tuple[str, str, int]]) -> dict[tuple[str, str, int], tuple]:
    """One colour per ``(model, method, n_samples)``.

    Deterministic models are dark grey, adversarially trained ones orange shades, and each
    Bayesian model gets its own sequential colour map, darker with more posterior samples.
    """
    cmap = mpl.colormaps
    colors: dict[tuple[str, str, int], tuple] = {}
    bayes_models = sorted({m for m, meth, _ in series if meth not in ("det", "adv")})
    plain = {"det": [], "adv": []}
    for item in series:
        if item[1] in plain:
            plain[item[1]].append(item)
    for i, item in enumerate(plain["det"]):
        colors[item] = cmap["Greys"](0.85 - 0.2 * (i % 3))
    for i, item in enumerate(plain["adv"]):
        colors[item] = cmap["Oranges"](0.65 + 0.15 * (i % 3))
    for j, model in enumerate(bayes_models):
        items = sorted((s for s in series if s[0] == model), key=lambda s: s[2])
        shades = [0.8] if len(items) == 1 else \
            [0.45 + 0.5 * i / (len(items) - 1) for i in range(len(items))]
        for item, shade in zip(items, shades):
            colors[item] = cmap[_BAYES_MAPS[j % len(_BAYES_MAPS)]](shade)
    return colors
