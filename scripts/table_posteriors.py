"""The robustness and model tables of docs/results.md (issue 22) from a posteriors run dir:
``PYTHONPATH=src python scripts/table_posteriors.py RUN_DIR``."""
import json, sys
import numpy as np, pandas as pd
from bayeslrp.analysis.bootstrap import median_diff_interval
run = sys.argv[1]
r = pd.read_parquet(f"{run}/results.parquet"); t = pd.read_parquet(f"{run}/tests.parquet")
models = {m["name"]: m for m in json.load(open(f"{run}/models.json"))}
base_of = {"_e": "det_fc2_e", "_f": "det_fc2_f"}
print("| model | n | attack | success | median L5 | Bay−Det L5 [95 % CI] | p | median L1 | Bay−Det L1 [95 % CI] |")
print("|---|---|---|---|---|---|---|---|---|")
for (model, n, attack), g in r.groupby(["model", "n_samples", "attack"], sort=False):
    base = "det_fc2_e" if model.startswith("ens") else next((b for s, b in base_of.items() if model.endswith(s)), "det_fc2")
    cells = []
    for layer in (5, 1):
        gl = g[g.layer == layer].set_index("point")
        bl = r[(r.model == base) & (r.attack == attack) & (r.layer == layer)].set_index("point")
        med = gl.lrp_robustness.median()
        if model == base:
            cells.append((f"{med:.3f}", "–", "–")); continue
        d = (gl.lrp_robustness - bl.lrp_robustness.reindex(gl.index)).to_numpy()
        m, lo, hi = median_diff_interval(d)
        tt = t[(t.model == model) & (t.n_samples == n) & (t.attack == attack) & (t.layer == layer)
               & (t.other == base) & (t.test == "baseline<model")]
        p = tt.pvalue.iloc[0] if len(tt) else float("nan")
        cells.append((f"{med:.3f}", f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]", f"{p:.2g}"))
    succ = g[g.layer == 5].success.mean()
    print(f"| {model} | {n} | {attack} | {succ:.3f} | {cells[0][0]} | {cells[0][1]} | {cells[0][2]} | {cells[1][0]} | {cells[1][1]} |")
print()
print("| model | acc % | NLL | ECE | disagreement | dist between | dist to ref | repeated | ESS |")
print("|---|---|---|---|---|---|---|---|---|")
f = lambda v, fmt: "–" if v is None else format(v, fmt)
for name, m in models.items():
    c, p = m.get("calibration") or {}, m.get("posterior") or {}
    ess = p.get("predictive_ess"); ess = ess.get("median") if isinstance(ess, dict) else ess
    print(f"| {name} | {100*c.get('accuracy', float('nan')):.2f} | {c.get('nll', float('nan')):.3f} | {c.get('ece', float('nan')):.4f} | "
          f"{f(p.get('prediction_disagreement'), '.3f')} | {f(p.get('weight_distance_between'), '.3f')} | {f(p.get('weight_distance_to_reference'), '.3f')} | {f(p.get('repeated_share'), '.2f')} | {f(ess, '.1f')} |")
