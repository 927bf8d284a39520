"""The off-manifold table of docs/results.md (issue 15) from a run dir with manifold.parquet.

Usage: ``PYTHONPATH=src python scripts/table_manifold.py RUN_DIR`` (prints Markdown).
One row per model: the median over the points of the normal share of the mean over the first
n samples (PCA basis, the run's main K and d), for the prediction gradient, the loss gradient
and the ε heatmap at n = 1 and at the model's largest n, and of the FGSM and PGD
perturbations; then the same medians in the random-subspace control.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

QUANTITIES = (("prediction", "∇ₓ logit"), ("loss", "∇ₓ loss"), ("heatmap:epsilon", "LRP-ε heatmap"))


def _median(rows: pd.DataFrame) -> str:
    return f"{rows.share.median():.3f}" if len(rows) else "–"


def share_rows(table: pd.DataFrame, basis: str):
    """One Markdown row per model (in the table's order) of median shares in ``basis``."""
    means = table[(table.kind == "mean") & (table.basis == basis)]
    for model, rows in means.groupby("model", sort=False):
        top = int(rows.n.max())
        cells = []
        for quantity, _ in QUANTITIES:
            own = rows[rows.quantity == quantity]
            cells += [_median(own[own.n == 1]),
                      _median(own[own.n == top]) if top > 1 else "–"]
        for attack in ("fgsm", "pgd"):
            cells.append(_median(rows[(rows.quantity == "perturbation")
                                      & (rows.attack == attack)]))
        yield f"| {model} | {top} | " + " | ".join(cells) + " |"


def main(run: Path) -> None:
    table = pd.read_parquet(run / "manifold.parquet")
    header = " | ".join(f"{label}, n = 1 | n = max" for _, label in QUANTITIES)
    for basis in ("pca", "random"):
        print(f"basis: {basis}\n")
        print(f"| model | max n | {header} | FGSM x̃ − x | PGD x̃ − x |")
        print("|---|---|" + "---|" * (2 * len(QUANTITIES) + 2))
        print("\n".join(share_rows(table, basis)))
        print()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
