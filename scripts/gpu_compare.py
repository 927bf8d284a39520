"""Compare a CPU demo run with CUDA demo runs where the semantics say they must agree.

Usage: ``python scripts/gpu_compare.py CPU_RUN CUDA_RUN [CUDA_RUN_AGAIN]``; prints one line per
check (``ok`` / ``FAIL``) and exits 1 if any fails. What must agree:

* the attacked points (the ``data`` stage is device-independent: same key, same bytes);
* no artifact key is shared by a device-dependent stage of the two runs (nothing mixed);
* the results tables have the same rows (model, attack, rule, layer, n, k, point);
* test accuracies: within ``ACCURACY_TOL`` (training differs by float rounding, VI noise comes
  from the device's generator and HMC's accept/reject amplifies tiny differences, so only
  closeness is expected, not equality);
* two CUDA runs: identical ``results.parquet`` bytes (determinism settings in force).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pandas as pd

ACCURACY_TOL = 0.03
ROW_KEYS = ["model", "attack", "rule", "layer", "n_samples", "k", "point"]
DEVICE_STAGES = ("train", "select", "attack", "predict", "explain")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _keys(run: Path, stage: str) -> set[str]:
    folder = run / "artifacts" / stage
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): _sha(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix == ".safetensors"}  # meta.json holds a timestamp


def checks(cpu: Path, cuda: Path, again: Path | None) -> list[tuple[bool, str]]:
    out = []
    data_cpu, data_cuda = _keys(cpu, "data"), _keys(cuda, "data")
    same = data_cpu == data_cuda and all(
        _tree(cpu / "artifacts" / "data" / k) == _tree(cuda / "artifacts" / "data" / k)
        for k in data_cpu)
    out.append((same, f"attacked points identical ({len(data_cpu)} data artifact(s))"))
    shared = {s: _keys(cpu, s) & _keys(cuda, s) for s in DEVICE_STAGES}
    out.append((not any(shared.values()),
                f"no device-dependent artifact shared (shared: "
                f"{ {s: len(k) for s, k in shared.items() if k} or 'none'})"))
    a, b = pd.read_parquet(cpu / "results.parquet"), pd.read_parquet(cuda / "results.parquet")
    rows_a = set(map(tuple, a[ROW_KEYS].astype(str).values))
    rows_b = set(map(tuple, b[ROW_KEYS].astype(str).values))
    out.append((rows_a == rows_b, f"results rows identical ({len(a)} CPU, {len(b)} CUDA)"))
    acc_a = {m["name"]: m["test_accuracy"] for m in json.loads((cpu / "models.json").read_text())}
    acc_b = {m["name"]: m["test_accuracy"] for m in json.loads((cuda / "models.json").read_text())}
    for name in acc_a:
        diff = abs(acc_a[name] - acc_b.get(name, float("nan")))
        out.append((diff <= ACCURACY_TOL, f"test accuracy {name}: CPU {acc_a[name]:.4f}, CUDA "
                                          f"{acc_b.get(name, float('nan')):.4f} (|Δ| ≤ "
                                          f"{ACCURACY_TOL})"))
    for col in ("success", "softmax_robustness"):
        ma, mb = a.groupby("model")[col].mean(), b.groupby("model")[col].mean()
        out.append((True, f"mean {col} per model, CPU / CUDA (reported, not checked): "
                          + ", ".join(f"{m} {ma[m]:.3f}/{mb.get(m, float('nan')):.3f}"
                                      for m in ma.index)))
    if again is not None:
        out.append((_sha(cuda / "results.parquet") == _sha(again / "results.parquet"),
                    "two CUDA runs: identical results.parquet bytes"))
    return out


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.splitlines()[2])
        return 2
    paths = [Path(p) for p in argv]
    results = checks(paths[0], paths[1], paths[2] if len(paths) == 3 else None)
    for ok, line in results:
        print(f"{'ok  ' if ok else 'FAIL'} {line}")
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
