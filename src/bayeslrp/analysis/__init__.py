"""The analysis layer (``bl.analysis``): results-table comparisons used by the compare stage,
the figures, the report and the CLI summary alike.

* :func:`paired_differences` — per-image ``model − baseline`` robustness against an explicit
  baseline map;
* :func:`mann_whitney_tests` — one-sided tests with stars (``baseline<model``, ``adv<bayes``);
* :func:`spearman_table` — ρ of LRP vs softmax robustness per model, layer, attack;
* :func:`baseline_map` — a run's ``{model: baseline}`` (from the config's ``compare.baseline``,
  as recorded in ``differences.parquet``);
* :func:`median_diff_interval` — 95 % percentile bootstrap interval of a median per-image
  difference; :func:`seed_spread` — the across-seed range of the medians;
* :data:`RESULT_COLUMNS`, :data:`TABLE_ORDER` … — the run-directory tables' columns and order.
"""
from bayeslrp.analysis.comparisons import (DIFFERENCE_COLUMNS, DIFFERENCES_FILE, GROUP,
                                           RESULT_COLUMNS, RESULT_ORDER, RESULTS_FILE,
                                           SPEARMAN_COLUMNS, SPEARMAN_FILE, TABLE_ORDER,
                                           TEST_COLUMNS, TESTS_FILE, baseline_map,
                                           mann_whitney_tests, paired_differences,
                                           spearman_table, with_explainer_column)
from bayeslrp.analysis.bootstrap import median_diff_interval, seed_spread

__all__ = ["DIFFERENCE_COLUMNS", "DIFFERENCES_FILE", "GROUP", "RESULTS_FILE", "RESULT_COLUMNS",
           "RESULT_ORDER", "SPEARMAN_COLUMNS", "SPEARMAN_FILE", "TABLE_ORDER", "TESTS_FILE",
           "TEST_COLUMNS", "baseline_map", "mann_whitney_tests", "median_diff_interval", "seed_spread",
           "paired_differences", "spearman_table", "with_explainer_column"]
