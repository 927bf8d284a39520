"""The four posterior methods of issue 22 in a YAML grid: config errors (one line naming the
key, exit 2 before any work), ``bayeslrp plan`` estimates, and a tiny ``bayeslrp run`` on the
synthetic data that gives results rows for each method, with its diagnostics in models.json
and each ensemble member equal to the grid's det model of that seed.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json

import pandas as pd
import pytest
import torch
import yaml

import bayeslrp as bl
from bayeslrp import BayesLRPError
from bayeslrp.cli import main
from bayeslrp.experiment import expand_grid, load_config

FC2 = {"arch": "fc2", "hidden": 8}
BASE = {
    "name": "posteriors", "seed": 1,
    "data": {"dataset": "synthetic", "n_points": 20, "shape": [1, 8, 8]},
    "models": [
        {"name": "det", "method": "det", **FC2, "epochs": 2, "batch_size": 64},
        {"name": "det2", "method": "det", **FC2, "epochs": 2, "batch_size": 64, "seed": 2},
        {"name": "ens", "method": "ensemble", **FC2, "epochs": 2, "batch_size": 64,
         "members": 3},
        {"name": "drop", "method": "mc_dropout", **FC2, "epochs": 2, "batch_size": 64,
         "p": 0.3, "n_samples": 3},
        {"name": "lap", "method": "laplace", **FC2, "init_model": "det", "n_samples": 3,
         "kind": "diag"},
        {"name": "lapll", "method": "laplace", **FC2, "init_model": "det", "n_samples": 3,
         "kind": "last_layer"},
        {"name": "wn", "method": "weight_noise", **FC2, "init_model": "det", "n_samples": 3},
    ],
    "attacks": [{"method": "fgsm"}],
    "explain": {"rules": ["epsilon"], "layers": "last", "n_samples": [3]},
    "metrics": {"k": [20]},
    "compare": {"baseline": "det"},
}


def _call(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _with(i, **changes):
    doc = copy.deepcopy(BASE)
    doc["models"][i] = {**doc["models"][i], **changes}
    for key in [k for k, v in changes.items() if v is None]:
        del doc["models"][i][key]
    return doc


@pytest.mark.parametrize("doc, words", [
    (_with(2, n_samples=3), r"models\[2\]\.n_samples: an ensemble's samples are its members"),
    (_with(2, adv_eps=0.1), r"models\[2\]\.adv_eps: only used with member: adv"),
    (_with(2, members=0), r"models\[2\]\.n_samples: Input should be greater than 0"),
    (_with(3, p=1.0), r"models\[3\]\.p: Input should be less than 1"),
    (_with(4, init_model=None), r"models\[4\]\.init_model: required: the det model"),
    (_with(4, init_model="ens"), r"models\[4\]\.init_model: must name a det model"),
    (_with(4, init_model="nobody"), r"models\[4\]\.init_model: no model named 'nobody'"),
    (_with(4, kind="kron"), r"models\[4\]\.kind: Input should be 'diag' or 'last_layer'"),
    (_with(4, prior_precision=-1.0), r"models\[4\]\.prior_precision: Input should be greater"),
    (_with(4, hidden=9), r"models\[4\]\.init_model: 'det' has a different architecture"),
    (_with(6, init_model=None), r"models\[6\]\.init_model: required: the trained det"),
    (_with(6, init_model="drop"), r"models\[6\]\.init_model: must name a det or adv model"),
    (_with(6, sigma=0.1, max_accuracy_drop=0.1),
     r"models\[6\]\.max_accuracy_drop: only used without sigma"),
    (_with(6, sigma=0.0), r"models\[6\]\.sigma: Input should be greater than 0"),
])
def test_config_errors_name_the_key(doc, words, tmp_path):
    with pytest.raises(BayesLRPError, match=words):
        load_config(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, _, err = _call(["run", str(path), "--run-dir", str(tmp_path / "run")])
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not (tmp_path / "run").exists()


def test_too_few_members_names_members():
    doc = copy.deepcopy(BASE)
    doc["explain"]["n_samples"] = [4]
    with pytest.raises(BayesLRPError, match=r"explain\.n_samples\[0\]: 4 samples requested "
                                            r"but model 'ens' keeps only 3; lower it or raise "
                                            r"models\[2\]\.members"):
        load_config(doc)


def test_own_attack_sample_of_a_member():
    cfg = load_config(_with(2, own_attack_sample=1))
    assert cfg.own_models() == [("ens.own1", "ens", 1)]


def test_specs_keys_and_plan(tmp_path):
    cfg = load_config(BASE)
    ens = cfg.model("ens")
    assert (ens.members, ens.sample_count, ens.bayesian, ens.epochs) == (3, 3, True, 2)
    assert load_config(_with(3, epochs=None)).model("drop").epochs == 15  # det's for fc2
    grid = expand_grid(cfg)
    lap = grid.by_label("train[lap]")
    assert lap.deps["init"] == grid.by_label("train[det]").key
    assert "adv_eps" not in lap.params["model"] and "init_model" not in lap.params["model"]
    assert "adv_eps" not in grid.by_label("train[ens]").params["model"]
    other = _with(2, members=4)
    other["explain"]["n_samples"] = [3]
    assert expand_grid(load_config(other)).by_label("train[ens]").key != \
        grid.by_label("train[ens]").key
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(BASE))
    code, out, err = _call(["plan", str(path)])
    assert code == 0, err
    assert "train" in out and "total" in out


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("posteriors")
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump(BASE))
    code, out, err = _call(["run", str(path), "--run-dir", str(root / "run")])
    assert code == 0, err
    return root / "run"


def test_grid_run_gives_rows_and_diagnostics_per_method(grid_run):
    df = pd.read_parquet(grid_run / "results.parquet")
    for name in ("ens", "drop", "lap", "lapll", "wn"):
        rows = df[df["model"] == name]
        assert len(rows) > 0 and set(rows["n_samples"]) == {3}, name
    models = {m["name"]: m for m in json.loads((grid_run / "models.json").read_text())}
    assert models["ens"]["diagnostics"]["members"] == 3
    assert models["drop"]["diagnostics"]["p"] == 0.3
    assert models["lap"]["diagnostics"]["prior_precision_from"] == "evidence"
    assert models["lap"]["diagnostics"]["kind"] == "diag"
    assert load_config(_with(4, kind=None)).model("lap").kind == "last_layer"  # the default
    assert models["lapll"]["diagnostics"]["kind"] == "last_layer"
    assert models["wn"]["diagnostics"]["sigma_from"] == "heuristic"
    assert all(models[n]["n_samples"] == 3 for n in ("ens", "drop", "lap", "lapll", "wn"))


def test_grid_ensemble_members_are_the_grid_det_models(grid_run):
    models = {m["name"]: m for m in json.loads((grid_run / "models.json").read_text())}

    def load(name):
        return bl.Ensemble.load(grid_run / "artifacts" / "train" / models[name]["artifact"]
                                / "model")

    ens, det, det2 = load("ens"), load("det"), load("det2")
    for j, ref in ((0, det), (1, det2)):  # member j has seed 1 + j
        assert all(torch.equal(ens.params[k][j], ref.params[k][0]) for k in ref.params)
    lap, wn = load("lapll"), load("wn")
    assert torch.equal(lap.params["1.weight"][2], det.params["1.weight"][0])  # not the head
    assert not torch.equal(wn.params["1.weight"][0], det.params["1.weight"][0])


def test_user_factory_architecture_runs_every_method(tmp_path):
    """The own-model path: a factory LeNet (Conv, BatchNorm, Dropout, two Linear) on an .npz
    dataset with bounds [-1, 1]; each method trains, and the grid gives rows for it."""
    import numpy as np

    from test_own_model import _data

    files = {}
    for split, n, seed in (("train", 96, 1), ("test", 40, 2)):
        ds = _data(n, seed)
        files[split] = tmp_path / f"{split}.npz"
        np.savez(files[split], x=ds.x.numpy(), y=ds.y.numpy())
    arch = {"factory": "test_own_model:lenet", "kwargs": {"width": 3}}
    doc = {"name": "own-posteriors", "seed": 1,
           "data": {"dataset": {"train": str(files["train"]), "test": str(files["test"]),
                                "bounds": [-1, 1]}, "n_points": 8},
           "models": [
               {"name": "det", "method": "det", "arch": arch, "epochs": 1, "batch_size": 32},
               {"name": "ens", "method": "ensemble", "arch": arch, "epochs": 1,
                "batch_size": 32, "members": 2},
               {"name": "drop", "method": "mc_dropout", "arch": arch, "epochs": 1,
                "batch_size": 32, "n_samples": 2},
               {"name": "lap", "method": "laplace", "arch": arch, "init_model": "det",
                "n_samples": 2, "kind": "diag"},
               {"name": "lapll", "method": "laplace", "arch": arch, "init_model": "det",
                "n_samples": 2, "kind": "last_layer"},
               {"name": "wn", "method": "weight_noise", "arch": arch, "init_model": "det",
                "n_samples": 2, "sigma": 0.1}],
           "attacks": [{"method": "fgsm", "eps": 0.3}],
           "explain": {"rules": ["epsilon"], "layers": "last", "n_samples": [2]},
           "compare": {"baseline": "det"}}
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, _, err = _call(["run", str(path), "--run-dir", str(tmp_path / "run")])
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert {"ens", "drop", "lap", "lapll", "wn"} <= set(df["model"])
    models = {m["name"]: m for m in json.loads((tmp_path / "run" / "models.json").read_text())}
    assert models["drop"]["diagnostics"]["dropout_layers"] == ["head.2", "head.4"]
