"""The report's "Versions and timings": the manifest's runs and per-stage timings as tables."""
from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["MAX_RUNS", "runs_table", "stage_timings_table"]

#: Runs shown (the most recent); a run directory resumed many times keeps its table short.
MAX_RUNS = 10


def _machine(run: dict[str, Any]) -> str:
    m = run.get("machine") or {}
    parts = [str(m.get("machine") or ""), f"{m.get('cpu_count', '?')} CPUs",
             f"torch threads {m.get('torch_threads', '?')}"]
    if m.get("cuda"):
        parts.append(f"CUDA {m['cuda']}")
    return ", ".join(p for p in parts if p)


def _span(start: Any, end: Any) -> str:
    """``2026-12-02 09:25:06 – 09:25:26 UTC`` from two ISO UTC stamps (the end's date only
    when it differs); other values as text."""
    def parts(stamp: Any) -> tuple[str, str] | None:
        text = "" if stamp is None else str(stamp)
        if len(text) == 25 and text[10] == "T" and text.endswith("+00:00"):
            return text[:10], text[11:19]
        return None

    a, b = parts(start), parts(end)
    if a is None or (b is None and end):
        return f"{start or ''} – {end or ''}"
    if b is None:
        return f"{a[0]} {a[1]} – (not finished) UTC"
    tail = b[1] if b[0] == a[0] else f"{b[0]} {b[1]}"
    return f"{a[0]} {a[1]} – {tail} UTC"


def runs_table(manifest: dict[str, Any]) -> pd.DataFrame:
    """One row per run of the run directory (the latest :data:`MAX_RUNS`): status, start and
    end, config names, devices, machine, package versions, and its tasks computed, reused
    and their seconds."""
    rows = []
    for run in (manifest.get("runs") or [])[-MAX_RUNS:]:
        stages = run.get("stages") or []
        packages = run.get("packages") or {}
        extra = run.get("extra") or {}
        rows.append({
            "run": run.get("run"), "status": run.get("status", "?"),
            "time": _span(run.get("started"), run.get("finished")),
            "configs": ", ".join(map(str, extra.get("names", []))),
            "device": ", ".join(map(str, extra.get("devices", []))),
            "machine": _machine(run),
            "versions": (f"bayeslrp {packages.get('bayeslrp', '?')}, torch "
                         f"{packages.get('torch', '?')}, python {packages.get('python', '?')}"),
            "computed": sum(1 for s in stages if s.get("computed")),
            "reused": sum(1 for s in stages if not s.get("computed")),
            "seconds": round(sum(float(s.get("seconds") or 0.0) for s in stages), 1),
        })
    return pd.DataFrame(rows)


def stage_timings_table(manifest: dict[str, Any]) -> pd.DataFrame:
    """Per stage of the latest run: tasks computed and reused, total and longest seconds,
    and a ``total`` row."""
    runs = manifest.get("runs") or []
    if not runs:
        return pd.DataFrame()
    records = runs[-1].get("stages") or []
    if not records:
        return pd.DataFrame()
    df = pd.DataFrame(records)
    df["seconds"] = df["seconds"].astype(float)
    order = list(dict.fromkeys(df["stage"]))
    out = df.groupby("stage", sort=False).agg(
        computed=("computed", "sum"), reused=("computed", lambda c: int((~c.astype(bool)).sum())),
        seconds=("seconds", "sum"), longest=("seconds", "max"))
    out = out.loc[order].reset_index()
    out["computed"] = out["computed"].astype(int)
    out["seconds"] = out["seconds"].round(2)
    out["longest"] = out["longest"].round(2)
    total = {"stage": "total", "computed": int(out["computed"].sum()),
             "reused": int(out["reused"].sum()), "seconds": round(float(out["seconds"].sum()), 2),
             "longest": round(float(out["longest"].max()), 2)}
    return pd.concat([out, pd.DataFrame([total])], ignore_index=True)
