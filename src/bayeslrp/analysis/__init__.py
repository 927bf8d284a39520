"""The analysis layer: results-table comparisons used by the compare stage, the figures, the
report and the CLI summary alike.

* :func:`differences` — per-image ``model − baseline`` robustness against explicit pairs;
* :func:`mann_whitney_tests` — one-sided tests with stars (``baseline<model``, ``adv<bayes``);
* :func:`spearman_table` — ρ of LRP vs softmax robustness per model, layer, attack;
* :func:`baseline_map` — a run's ``{model: baseline}`` (from the config's ``compare.baseline``).
"""
from bayeslrp.analysis.comparisons import (GROUP, RESULT_COLUMNS, RESULT_ORDER, baseline_map,
                                           differences, mann_whitney_tests, spearman_table)

__all__ = ["GROUP", "RESULT_COLUMNS", "RESULT_ORDER", "baseline_map", "differences",
           "mann_whitney_tests", "spearman_table"]
