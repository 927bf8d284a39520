"""Figures of the paper from a run's results table (SPEC §7, numbering of paper 000).

Every figure function takes the results table (a ``pandas.DataFrame`` with the columns of
:data:`RESULT_COLUMNS`) and, for heatmap figures, saved :class:`HeatmapSet` objects, and
returns a ``matplotlib.figure.Figure`` drawn on an Agg canvas (no display needed).

* :func:`layer_heatmaps` — Fig. 1, layers of one deterministic network;
* :func:`difference_distributions` — Fig. 2 / 7–9, ``Adv − Det`` and ``Bay − Det`` per layer;
* :func:`rule_boxplots` — Fig. 3 / 10–15, rules × datasets with Mann-Whitney stars;
* :func:`robustness_scatter` — Fig. 4 / 16, LRP vs softmax robustness with Spearman ρ;
* :func:`det_vs_bayes_heatmaps` — Fig. 6, a failed attack on a det and a Bayesian network;
* :func:`robustness_distributions` — paper 001 Figs. 4–7, absolute LRP robustness per model
  and layer for two top-k sizes;
* :func:`topk_pixels` — paper 000 Fig. 5 / 001 Fig. 2, the top-k pixel sets before and after
  the attack;
* :func:`save_figure` writes PNG + PDF atomically; :func:`make_all_figures` draws everything
  a run directory supports. ``docs/figures.md`` describes each figure.
"""
from __future__ import annotations

from .boxplots import rule_boxplots
from .distributions import difference_distributions
from .frames import paired_differences
from .heatmaps import (POINT_CHOICES, det_vs_bayes_heatmaps, layer_heatmaps, normalised_topk,
                       showcase_point)
from .make import FigureRecord, make_all_figures, read_figure_index
from .rundir import RESULT_COLUMNS, HeatmapKey, HeatmapSet, RunData, load_run
from .robustness import PAPER_K_PIXELS, distribution_ks, robustness_distributions
from .scatter import robustness_scatter
from .settings import FigureSettings, figure_settings
from .style import save_figure
from .topk import topk_pixels, topk_sets

__all__ = [
    "FigureRecord",
    "FigureSettings",
    "PAPER_K_PIXELS",
    "POINT_CHOICES",
    "HeatmapKey",
    "HeatmapSet",
    "RESULT_COLUMNS",
    "RunData",
    "det_vs_bayes_heatmaps",
    "difference_distributions",
    "distribution_ks",
    "figure_settings",
    "layer_heatmaps",
    "load_run",
    "make_all_figures",
    "normalised_topk",
    "paired_differences",
    "read_figure_index",
    "robustness_distributions",
    "robustness_scatter",
    "rule_boxplots",
    "save_figure",
    "showcase_point",
    "topk_pixels",
    "topk_sets",
]
