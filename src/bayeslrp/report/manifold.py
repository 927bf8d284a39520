"""The report's manifold section: the theorem's prediction next to the measured normal shares.

Present only when the run has ``manifold.parquet`` (config ``analysis.manifold``).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bayeslrp.plots.manifold import main_setting, share_quantiles

from .html import esc, table_html

__all__ = ["MANIFOLD_NOTE", "manifold_section", "manifold_summary", "sensitivity_table"]

MANIFOLD_NOTE = (
    "Paper 000, Theorem IV.1: for an infinitely wide Bayesian network at full convergence in "
    "the limit of infinite data, the posterior mean of the input gradient of the prediction "
    "function has no component normal to the data manifold (its [2] says the same of the "
    "loss gradient), so averaged explanations cannot be moved by normal perturbations while "
    "a single network's can. Prediction for a finite run: the normal share of the mean over "
    "n posterior samples falls as n grows (for independent normal components as 1/√n), "
    "while a single network keeps its own share. The tangent space at each attacked point is "
    "estimated by local PCA of its nearest training images (k, d below); the random-subspace "
    "control of the same dimension shows what share a direction with no relation to the "
    "data would have. Rows: median over points (n = 1: one sample; n = max: the mean of all)."
)


def manifold_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and quantity: median share at n = 1 and at the largest n, the random control,
    and the change; perturbation rows per attack (main k/d setting)."""
    main = main_setting(table)
    stats = share_quantiles(main[main["quantity"] != "perturbation"])
    rows = []
    for (model, method, quantity), part in stats.groupby(["model", "method", "quantity"],
                                                         sort=True):
        pca = part[part["basis"] == "pca"].sort_values("n")
        control = part[part["basis"] == "random"]
        first, last = pca.iloc[0], pca.iloc[-1]
        rows.append({"model": model, "method": method, "quantity": quantity,
                     "share n=1": float(first["median"]), "n max": int(last["n"]),
                     "share n max": float(last["median"]),
                     "change": float(last["median"] - first["median"]),
                     "random subspace": (float(control["median"].iloc[-1]) if len(control)
                                         else float("nan"))})
    out = pd.DataFrame(rows)
    perturb = main[main["quantity"] == "perturbation"]
    if len(perturb):
        extra = (perturb[perturb["basis"] == "pca"]
                 .groupby(["model", "method", "attack"])["share"].median().reset_index())
        extra = extra.rename(columns={"share": "share n=1"})
        extra["quantity"] = "perturbation " + extra.pop("attack")
        out = pd.concat([out, extra], ignore_index=True)
    out["n max"] = out["n max"].astype("Int64")
    k, dim = main["k"].iloc[0], main["dim"].iloc[0]
    out.attrs["setting"] = (int(k), int(dim))
    return out


def sensitivity_table(table: pd.DataFrame) -> pd.DataFrame:
    """Median share of the mean of all samples per model, quantity and (k, d) setting."""
    means = table[(table["kind"] == "mean") & (table["basis"] == "pca")
                  & (table["quantity"] != "perturbation")]
    if means.empty:
        return pd.DataFrame()
    top = means.groupby("model")["n"].transform("max")
    last = means[means["n"] == top]
    out = last.groupby(["model", "quantity", "k", "dim"])["share"].median().unstack(["k", "dim"])
    out.columns = [f"k={k}, d={'var' if d < 0 else d}" for k, d in out.columns]
    return out.reset_index()


def manifold_section(run_dir: Path) -> str | None:
    """HTML of the manifold section, or None when the run measured nothing."""
    path = Path(run_dir) / "manifold.parquet"
    if not path.is_file():
        return None
    table = pd.read_parquet(path)
    summary = manifold_summary(table)
    k, dim = summary.attrs["setting"]
    sensitivity = sensitivity_table(table)
    parts = [f'<p class="note">{esc(MANIFOLD_NOTE)}</p>',
             f"<h3>Normal share, k = {k} neighbours, d = {'by variance' if dim < 0 else dim}"
             f"</h3>", table_html(summary.round(4)),
             f"<p>{esc(_verdict(summary))}</p>"]
    if len(sensitivity.columns) > 3:
        parts += ["<h3>Sensitivity to k and d (share of the mean of all samples)</h3>",
                  table_html(sensitivity.round(4))]
    return "\n".join(parts)


def _verdict(summary: pd.DataFrame) -> str:
    """One sentence per multi-sample model on the prediction gradient."""
    rows = summary[(summary["quantity"] == "prediction") & (summary["n max"] > 1)]
    if rows.empty:
        return "No model with several posterior samples measured the prediction gradient."
    words = []
    for _, r in rows.iterrows():
        trend = "falls" if r["change"] < 0 else "does not fall"
        words.append(f"{r['model']}: the normal share of the mean prediction gradient {trend} "
                     f"from {r['share n=1']:.3f} (n = 1) to {r['share n max']:.3f} "
                     f"(n = {int(r['n max'])}); random subspace {r['random subspace']:.3f}.")
    return " ".join(words)
