"""The robustness and model tables of docs/results.md (issue 22) from a posteriors run dir.

Usage: ``PYTHONPATH=src python scripts/table_posteriors.py RUN_DIR [--rule R] [--attacks A,B]
[--n 1,10] [--no-models]`` (prints Markdown). Each model is compared with the baseline its
document names (``compare.baseline``, the ``baseline`` column of tests.parquet); baseline
models get a median only. Rows are one explanation rule (default epsilon), optionally some
attacks and sample counts only.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from bayeslrp.analysis.bootstrap import median_diff_interval

LAYERS = (5, 1)  # fc2's output layer, then its first


def _na(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def robustness_rows(results: pd.DataFrame, tests: pd.DataFrame, counts=None):
    """One Markdown row per (model, n, attack), n in ``counts`` (None: all): success, and per
    layer the median, Bay−Det with its bootstrap interval and (at the first layer) the
    Mann-Whitney p. The baselines' rows are read at any n (a det model has n = 1 only)."""
    tests = tests[tests.test == "baseline<model"]
    baseline_of = dict(zip(tests.model, tests.baseline))
    by_point = results.set_index(["model", "attack", "layer", "point"]).lrp_robustness
    shown = results if not counts else results[results.n_samples.isin(counts)]
    for (model, n, attack), rows in shown.groupby(["model", "n_samples", "attack"], sort=False):
        base = baseline_of.get(model)
        cells = []
        for layer in LAYERS:
            own = rows[rows.layer == layer].set_index("point").lrp_robustness
            if base is None:
                cells += [f"{own.median():.3f}", "–", "–"]
                continue
            diff = own - by_point.loc[(base, attack, layer)].reindex(own.index)
            mid, lo, hi = median_diff_interval(diff.to_numpy())
            test = tests[(tests.model == model) & (tests.n_samples == n)
                         & (tests.attack == attack) & (tests.layer == layer)]
            cells += [f"{own.median():.3f}", f"{mid:+.3f} [{lo:+.3f}, {hi:+.3f}]",
                      f"{test.pvalue.iloc[0]:.2g}" if len(test) else "–"]
        success = rows[rows.layer == LAYERS[0]].success.mean()
        del cells[5]  # p of the second layer: left out of the table
        yield f"| {model} | {n} | {attack} | {success:.3f} | " + " | ".join(cells) + " |"


def model_rows(models: list[dict]):
    """One Markdown row per model: calibration and posterior diagnostics (models.json)."""
    for m in models:
        cal, post = m.get("calibration") or {}, m.get("posterior") or {}
        ess = post.get("predictive_ess")
        ess = ess.get("median") if isinstance(ess, dict) else ess
        yield (f"| {m['name']} | {100 * cal['accuracy']:.2f} | {cal['nll']:.3f} | "
               f"{cal['ece']:.4f} | {_na(post.get('prediction_disagreement'), '.3f')} | "
               f"{_na(post.get('weight_distance_between'), '.3f')} | "
               f"{_na(post.get('weight_distance_to_reference'), '.3f')} | "
               f"{_na(post.get('repeated_share'), '.2f')} | {_na(ess, '.1f')} |")


def select(frame: pd.DataFrame, *, rule: str, attacks) -> pd.DataFrame:
    """The rows of one rule, and of the given attacks (None: all)."""
    keep = frame.rule == rule
    if attacks:
        keep &= frame.attack.isin(attacks)
    return frame[keep]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--rule", default="epsilon")
    parser.add_argument("--attacks", type=lambda s: s.split(","), default=None)
    parser.add_argument("--n", type=lambda s: [int(v) for v in s.split(",")], default=None)
    parser.add_argument("--no-models", action="store_true", help="Leave out the models table.")
    args = parser.parse_args(argv)
    results, tests = (select(pd.read_parquet(args.run / f"{name}.parquet"), rule=args.rule,
                             attacks=args.attacks) for name in ("results", "tests"))
    print("| model | n | attack | success | median L5 | Bay−Det L5 [95 % CI] | p | median L1 "
          "| Bay−Det L1 [95 % CI] |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(robustness_rows(results, tests, args.n)))
    if args.no_models:
        return
    print()
    print("| model | acc % | NLL | ECE | disagreement | dist between | dist to ref | repeated | ESS |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(model_rows(json.loads((args.run / "models.json").read_text()))))


if __name__ == "__main__":
    main()
