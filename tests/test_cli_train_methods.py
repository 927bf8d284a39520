"""``bayeslrp train`` for every model method (issue 22): ``--set KEY=VALUE`` and
``--init-model DIR`` reach the method's plug-in, and the saved model equals the library call
with the same settings, exactly; MC dropout's ``layers`` in the YAML; one-line errors (exit 2,
nothing written) for what the options cannot mean.
"""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

import bayeslrp as bl
from bayeslrp.cli import main
from bayeslrp.experiment import load_config
from bayeslrp.experiment.stages.train import build_model_net
from bayeslrp.plugins.models import MODEL_METHODS

TINY = ["train", "--dataset", "digits", "--hidden", "8", "--epochs", "1"]


def _call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _train(argv: list[str]) -> bl.Ensemble:
    out = argv[argv.index("--out") + 1]
    code, _, err = _call(argv)
    assert code == 0, err
    return bl.Ensemble.load(out)


def _same_params(a: bl.Ensemble, b: bl.Ensemble) -> None:
    assert a.params.keys() == b.params.keys()
    for key in a.params:
        assert torch.equal(a.params[key], b.params[key]), key


@pytest.fixture(scope="module")
def digits():
    return bl.data.load("digits", "train")


@pytest.fixture(scope="module")
def det_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "det"
    _train(TINY + ["--method", "det", "--out", str(out)])
    return out


def _net(x, seed=0):
    """The start the grid's train stage (and so the CLI) builds: init seed derived from seed."""
    return build_model_net({"arch": "fc2", "hidden": 8}, list(x.shape[1:]), 10, seed)


def test_ensemble_members_equal_det_trainings_of_their_seeds(tmp_path):
    got = _train(TINY + ["--method", "ensemble", "--set", "members=3", "--seed", "4",
                         "--out", str(tmp_path / "ens")])
    assert got.n_samples == 3 and got.meta["method"] == "ensemble"
    for j in (0, 2):  # member j is det training with seed 4 + j (init and batch order)
        det = _train(TINY + ["--method", "det", "--seed", str(4 + j),
                             "--out", str(tmp_path / f"det{j}")])
        for key, value in det.params.items():
            assert torch.equal(got.params[key][j], value[0]), (j, key)


def test_mc_dropout_layers_and_rate_reach_the_library(tmp_path, digits):
    x, y = digits
    got = _train(TINY + ["--method", "mc_dropout", "--set", "p=0.2", "--set", 'layers=["5"]',
                         "--n-samples", "3", "--out", str(tmp_path / "drop")])
    want = bl.train.mc_dropout(_net(x), x, y, p=0.2, n_samples=3, layers=["5"], epochs=1,
                               seed=0, progress=False)
    assert got.meta["layers"] == ["5"] and got.meta["p"] == 0.2
    _same_params(got, want)


@pytest.mark.parametrize("kind", ["diag", "last_layer"])
def test_laplace_builds_on_the_init_model(tmp_path, digits, det_dir, kind):
    x, y = digits
    got = _train(["train", "--dataset", "digits", "--method", "laplace", "--init-model",
                  str(det_dir), "--set", f"kind={kind}", "--n-samples", "3",
                  "--out", str(tmp_path / "lap")])
    want = bl.train.laplace(bl.Ensemble.load(det_dir), x, y, kind=kind, n_samples=3, seed=0,
                            progress=False)
    assert got.meta["kind"] == kind
    _same_params(got, want)
    # the architecture is the init model's (no --hidden given)
    assert got.params["1.weight"].shape[1:] == (8, 64)


def test_weight_noise_builds_on_the_init_model(tmp_path, digits, det_dir):
    got = _train(["train", "--dataset", "digits", "--method", "weight_noise", "--init-model",
                  str(det_dir), "--set", "sigma=0.1", "--n-samples", "3", "--seed", "2",
                  "--out", str(tmp_path / "wn")])
    want = bl.train.weight_noise(bl.Ensemble.load(det_dir), 0.1, n_samples=3, seed=2)
    _same_params(got, want)


def test_hmc_starts_at_the_init_model(tmp_path, digits, det_dir):
    got = _train(["train", "--dataset", "digits", "--method", "hmc", "--init-model",
                  str(det_dir), "--n-samples", "2", "--warmup", "0",
                  "--out", str(tmp_path / "hmc")])
    assert got.n_samples == 2 and got.meta["init"] == "map"
    # a MAP start from the saved det net: the chain's first proposal starts there, so the
    # samples stay near it (a random start would be ~‖w‖ away)
    det = bl.Ensemble.load(det_dir)
    w0 = det.params["3.weight"][0]
    dist = (got.params["3.weight"][0] - w0).norm() / w0.norm()
    assert dist < 0.5, float(dist)


@pytest.mark.parametrize("extra, words", [
    (["--method", "laplace"], "--init-model: required"),
    (["--method", "det", "--init-model", "DET"], "--init-model does not apply to det"),
    (["--method", "laplace", "--init-model", "DET", "--hidden", "16"],
     "--hidden 16: --init-model has hidden 8"),
    (["--method", "laplace", "--init-model", "DET", "--arch", "conv"],
     "--arch conv: --init-model has arch fc2"),
    (["--method", "laplace", "--init-model", "NOWHERE"], "holds no saved model"),
    (["--method", "hmc", "--init-model", "DROP"], "--init-model: must name a det model"),
    (["--method", "ensemble", "--set", "memberz=3"], "--set memberz: unknown key"),
    (["--method", "ensemble", "--set", "members=0"], "--set members"),
    (["--method", "ensemble", "--n-samples", "3"], "write members: M"),
    (["--method", "ensemble", "--set", "members"], "--set must be KEY=VALUE"),
    (["--method", "det", "--set", "name=x"], "--set name: not settable"),
    (["--method", "det", "--set", "lr=1", "--set", "lr=2"], "--set lr given twice"),
    (["--method", "mc_dropout", "--set", 'layers=["2"]'], "--set layers: dropout layer '2' is a"),
    (["--method", "mc_dropout", "--set", "layers=[]"], "--set layers"),
])
def test_train_options_refused_in_one_line(tmp_path, det_dir, extra, words):
    drop = tmp_path / "drop"
    if "DROP" in extra:
        _train(TINY + ["--method", "mc_dropout", "--n-samples", "2", "--out", str(drop)])
    paths = {"DET": str(det_dir), "NOWHERE": str(tmp_path / "none"), "DROP": str(drop)}
    argv = [paths.get(a, a) for a in extra]
    argv = (TINY if "--hidden" not in argv else TINY[:3] + TINY[5:]) + argv
    code, _, err = _call(argv + ["--out", str(tmp_path / "m")])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and words in lines[0], err
    assert not (tmp_path / "m").exists()


def test_init_model_of_another_dataset_is_refused(tmp_path, det_dir):
    code, _, err = _call(["train", "--dataset", "synthetic", "--method", "laplace",
                          "--init-model", str(det_dir), "--out", str(tmp_path / "m")])
    assert code == 2 and "was trained on digits, not synthetic" in err, err


def _dropout_config(**model):
    return {"name": "t", "data": {"dataset": "synthetic", "n_points": 10, "shape": [1, 8, 8]},
            "models": [{"name": "drop", "method": "mc_dropout", "arch": "fc2", "hidden": 8,
                        "epochs": 1, **model}],
            "attacks": [{"method": "fgsm"}], "explain": {"n_samples": [1]}}


def test_dropout_layers_in_yaml_and_in_the_key():
    method = MODEL_METHODS.get("mc_dropout")()
    default = load_config(_dropout_config()).models[0]
    chosen = load_config(_dropout_config(layers=["5"])).models[0]
    assert "layers" not in method.key_params(default)  # keys made before `layers` unchanged
    assert method.key_params(chosen)["layers"] == ["5"]
    with pytest.raises(bl.BayesLRPError, match=r"layers.*'4' is a .*only an nn.Linear"):
        load_config(_dropout_config(layers=["4"]))
    with pytest.raises(bl.BayesLRPError, match=r"layers.*'9' is not a module"):
        load_config(_dropout_config(layers=["9"]))


def test_cli_trains_what_a_grid_trains(tmp_path, det_dir):
    """The CLI's det and its laplace on top equal a grid's models of the same settings."""
    from bayeslrp.experiment import runner

    doc = {"name": "cli-vs-grid", "seed": 0, "data": {"dataset": "digits", "n_points": 10},
           "models": [{"name": "det", "method": "det", "arch": "fc2", "hidden": 8, "epochs": 1},
                      {"name": "lap", "method": "laplace", "arch": "fc2", "hidden": 8,
                       "init_model": "det", "kind": "diag", "n_samples": 3}],
           "attacks": [{"method": "fgsm"}],
           "explain": {"rules": ["epsilon"], "layers": "last", "n_samples": [1]}}
    run_dir = tmp_path / "grid"
    runner.run_experiment(load_config(doc), run_dir)
    entries = {m["name"]: m for m in json.loads((run_dir / "models.json").read_text())}
    grid = {name: bl.Ensemble.load(run_dir / "artifacts" / "train" / entry["artifact"] / "model")
            for name, entry in entries.items()}
    lap = _train(["train", "--dataset", "digits", "--method", "laplace", "--init-model",
                  str(det_dir), "--set", "kind=diag", "--n-samples", "3",
                  "--out", str(tmp_path / "lap")])
    _same_params(bl.Ensemble.load(det_dir), grid["det"])
    _same_params(lap, grid["lap"])
