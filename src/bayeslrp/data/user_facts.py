"""What a config's own dataset is: read once when the config is checked (SPEC §1 for users).

``data: {dataset: {train: PATH, test: PATH, bounds: [lo, hi]}}`` names two files (or IDX
folders). :func:`describe` reads both, checks them and returns the facts the rest of the
experiment needs — image shape, number of classes, split sizes, the largest balanced test
subset — together with the sha256 of each file, which becomes part of the data key: an edited
file gives new artifacts. :func:`load_split` reads one split at run time and refuses a file
whose sha256 changed since.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

from bayeslrp.data.user import Dataset, file_sha256, from_arrays, read_arrays
from bayeslrp.errors import BayesLRPError

__all__ = ["describe", "load_split", "dataset_param"]


def _stamp(path: Path) -> tuple:
    if path.is_dir():
        return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns)
                     for f in sorted(path.iterdir()) if f.is_file())
    st = path.stat()
    return (st.st_size, st.st_mtime_ns)


def _read(path: str, bounds: tuple, x_key: str, y_key: str) -> tuple[Dataset, str]:
    p = Path(path)
    if not p.exists():
        raise BayesLRPError(f"dataset file {p} does not exist")
    return _read_cached(str(p.resolve()), _stamp(p), tuple(bounds), x_key, y_key)


@lru_cache(maxsize=8)
def _read_cached(path: str, stamp: tuple, bounds: tuple, x_key: str, y_key: str):
    x, y = read_arrays(path, x_key, y_key)
    return from_arrays(x, y, bounds, name=path), file_sha256(path)


def describe(train: str | os.PathLike, test: str | os.PathLike, bounds=(0.0, 1.0),
             x_key: str = "x", y_key: str = "y") -> dict:
    """Facts of a user dataset: ``shape``, ``n_classes``, ``train_size``, ``test_size``,
    ``max_points`` (classes × the smallest class count of the test split), ``sha256``
    (per split) and the ``bounds``.

    Raises
    ------
    BayesLRPError
        A file that is missing or unreadable, or splits that disagree on the image shape.
    """
    parts = {split: _read(str(path), tuple(bounds), x_key, y_key)
             for split, path in (("train", train), ("test", test))}
    tr, te = parts["train"][0], parts["test"][0]
    if tr.shape != te.shape:
        raise BayesLRPError(f"train images are {list(tr.shape)} but test images "
                            f"{list(te.shape)}; both splits need one image shape")
    k = max(tr.n_classes, te.n_classes)
    counts = torch.bincount(te.y, minlength=k)
    return {"shape": list(te.shape), "n_classes": k, "train_size": len(tr),
            "test_size": len(te), "max_points": int(k * int(counts.min())),
            "bounds": list(tr.bounds), "sha256": {s: parts[s][1] for s in parts}}


def dataset_param(train, test, bounds, x_key: str, y_key: str) -> dict:
    """The ``dataset`` entry of a stage's key params: where the files are, how to read them,
    their sha256 and the class count (so that the key changes when a file does)."""
    facts = describe(train, test, bounds, x_key, y_key)
    return {"train": str(Path(train).resolve()), "test": str(Path(test).resolve()),
            "bounds": facts["bounds"], "x_key": x_key, "y_key": y_key,
            "n_classes": facts["n_classes"], "sha256": facts["sha256"]}


def load_split(param: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of ``split`` of a user dataset described by :func:`dataset_param`."""
    path = param[split]
    ds, sha = _read(path, tuple(param["bounds"]), param["x_key"], param["y_key"])
    if sha != param["sha256"][split]:
        raise BayesLRPError(f"dataset file {path} changed since the config was read (sha256 "
                            f"{sha[:12]}…, expected {param['sha256'][split][:12]}…); run again")
    return ds.x, ds.y
