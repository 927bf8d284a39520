"""Your own model in a YAML grid (issue 13, items 2 and 5).

``arch: {factory, kwargs}`` (factories of ``test_own_model``, importable by a fresh process
with this directory on ``PYTHONPATH``), ``arch: NAME`` of a registered builder, ``arch_kwargs``,
``init_weights`` (safetensors and ``.pt``; sha256 in the key; det ``epochs: 0``), one config
error per bad factory, a grid on an ``.npz`` dataset with bounds [-1, 1] run to a report by the
CLI, and exit 2 before anything runs for a failing factory or an unsupported module.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

import bayeslrp as bl
from bayeslrp import BayesLRPError
from bayeslrp.experiment import expand_grid, load_config
from test_own_model import CLASSES, HERE, SRC, LeNet, _data, attention, lenet

# --------------------------------------------------------------------------- YAML
@pytest.fixture
def npz_files(tmp_path):
    paths = {}
    for split, n, seed in (("train", 96, 1), ("test", 40, 2)):
        ds = _data(n, seed)
        paths[split] = tmp_path / f"{split}.npz"
        np.savez(paths[split], x=ds.x.numpy(), y=ds.y.numpy())
    return paths


def _grid(files, arch=None, **model):
    arch = arch or {"factory": "test_own_model:lenet", "kwargs": {"width": 3}}
    return {
        "name": "own-model", "seed": 1,
        "data": {"dataset": {"train": str(files["train"]), "test": str(files["test"]),
                             "bounds": [-1, 1]}, "n_points": 8},
        "models": [
            {"name": "det", "method": "det", "arch": arch, "epochs": 1, "batch_size": 32,
             **model},
            {"name": "vi", "method": "vi", "arch": arch, "epochs": 1, "lr": 0.01,
             "batch_size": 32, "n_samples": 2},
            {"name": "hmc", "method": "hmc", "arch": arch, "n_samples": 2, "warmup": 2,
             "steps": 2, "init": "random"},
        ],
        "attacks": [{"method": "fgsm", "eps": 0.3}, {"method": "pgd", "eps": 0.3, "steps": 2}],
        "explain": {"rules": ["epsilon"], "layers": "all", "n_samples": [2]},
        "compare": {"baseline": "det"},
    }


def test_factory_arch_in_yaml_is_read_checked_and_keyed(npz_files):
    cfg = load_config(_grid(npz_files))
    m = cfg.models[0]
    assert (m.arch, m.arch_kwargs, m.learnable_layers) == ("test_own_model:lenet",
                                                           {"width": 3}, (0, 6, 8))
    from bayeslrp.experiment.config import dump_config

    assert load_config(dump_config(cfg)) == cfg
    key = expand_grid(cfg).by_label("train[det]").key
    wider = _grid(npz_files, arch={"factory": "test_own_model:lenet", "kwargs": {"width": 4}})
    assert expand_grid(load_config(wider)).by_label("train[det]").key != key
    layers = {t.coords.get("layer") for t in expand_grid(cfg).tasks if t.stage == "explain"}
    assert layers == {0, 6, 8}
    derived = _grid(npz_files)
    derived["models"][1]["own_attack_sample"] = 1
    derived["explain"]["layers"] = "last"
    tasks = expand_grid(load_config(derived)).tasks
    own = {t.coords.get("layer") for t in tasks
           if t.stage == "explain" and t.coords.get("model") == "vi.own1"}
    assert own == {8}
    derived["explain"]["layers"] = [6, 7]
    with pytest.raises(BayesLRPError, match=r"explain.layers\[1\]: layer 7 is not a learnable "
                                            r"layer of arch test_own_model:lenet"):
        load_config(derived)


@pytest.mark.parametrize("arch,match", [
    ({"factory": "test_own_model:failing"}, r"models\[0\].arch: factory test_own_model:failing "
                                            r"raised RuntimeError: weights server unreachable"),
    ({"factory": "no_such_pkg.nets:lenet"}, r"module 'no_such_pkg.nets' does not import"),
    ({"factory": "test_own_model:CLASSES"}, r"'CLASSES' is not callable"),
    ({"factory": "test_own_model:_data"}, r"returned a Dataset, not a torch.nn.Module"),
    ({"factory": "test_own_model:lenet", "kwargs": {"n_classes": 3}},
     r"returns \[1, 3\] for one image; the data have 4 classes"),
    ({"factory": "test_own_model:attention"}, r"unsupported module MultiheadAttention"),
    ({"factory": "test_own_model:lenet", "extra": 1}, r"models\[0\].arch: must be a name or"),
    ("no-such-arch", r"unknown arch 'no-such-arch'"),
], ids=["raises", "import", "not-callable", "not-module", "classes", "attention", "keys",
        "unknown"])
def test_bad_factory_is_one_config_error(npz_files, arch, match):
    with pytest.raises(BayesLRPError, match=match) as info:
        load_config(_grid(npz_files, arch=arch))
    assert "\n" not in str(info.value)


def test_registered_arch_in_yaml(npz_files):
    bl.nets.register("user-lenet", lenet, replace=True)
    cfg = load_config(_grid(npz_files, arch="user-lenet"))
    assert cfg.models[0].learnable_layers == (0, 6, 8)
    wide = _grid(npz_files, arch="user-lenet")
    for m in wide["models"]:
        m["arch_kwargs"] = {"width": 5}
    cfg = load_config(wide)
    net = expand_grid(cfg).by_label("train[det]").params["model"]
    from bayeslrp.experiment.stages.train import build_model_net

    assert build_model_net(net, [1, 6, 6], CLASSES, 0).features[0].out_channels == 5
    bl.nets.register("user-lenet-odd", lenet, learnable_layers=[1, 8], replace=True)
    with pytest.raises(BayesLRPError, match=r"learnable_layers \[1, 8\] are not learnable "
                                            r"positions of its LRP chain \[0, 6, 8\]"):
        load_config(_grid(npz_files, arch="user-lenet-odd"))
    with pytest.raises(BayesLRPError, match=r"models\[0\].arch_kwargs: only used with a factory"):
        load_config(_grid(npz_files, arch="fc2", arch_kwargs={"hidden": 3}, hidden=4))


def test_init_weights_load_keyed_and_checked(npz_files, tmp_path):
    net = lenet()
    for p in net.parameters():
        nn.init.constant_(p, 0.05)
    save_file(net.state_dict(), tmp_path / "w.safetensors")
    torch.save(net.state_dict(), tmp_path / "w.pt")
    cfg = load_config(_grid(npz_files, init_weights=str(tmp_path / "w.safetensors"), epochs=0))
    task = expand_grid(cfg).by_label("train[det]")
    assert task.params["model"]["init_weights"]["sha256"] == bl.fileio.sha256_file(
        tmp_path / "w.safetensors")
    from bayeslrp.experiment.stages.train import build_model_net

    built = build_model_net(task.params["model"], [1, 6, 6], CLASSES, 0)
    torch.testing.assert_close(built.head[2].weight, torch.full((8, 27), 0.05))
    from bayeslrp.plugins.models import model_method

    ds = _data()
    common = {"seed": 0, "progress": False, "device": "cpu"}
    as_is = model_method("det").train(task.params["model"], built, ds.x, ds.y, common=common)
    for name, value in net.state_dict().items():  # epochs 0: the file's weights, untrained
        torch.testing.assert_close(as_is.params[name][0], value)
    vi_task = expand_grid(cfg).by_label("train[vi]")
    assert "init_weights" not in vi_task.params["model"]
    with_weights = _grid(npz_files)
    with_weights["models"][1]["init_weights"] = str(tmp_path / "w.pt")
    vi_params = expand_grid(load_config(with_weights)).by_label("train[vi]").params["model"]
    start = build_model_net(vi_params, [1, 6, 6], CLASSES, 0)  # VI's initial means
    torch.testing.assert_close(start.features[0].weight, torch.full((3, 1, 3, 3), 0.05))
    pt = load_config(_grid(npz_files, init_weights=str(tmp_path / "w.pt"), epochs=0))
    assert expand_grid(pt).by_label("train[det]").key != task.key
    nn.init.constant_(net.head[2].bias, 0.5)  # an edited weights file: another key
    save_file(net.state_dict(), tmp_path / "w.safetensors")
    edited = load_config(_grid(npz_files, init_weights=str(tmp_path / "w.safetensors"),
                               epochs=0))
    assert expand_grid(edited).by_label("train[det]").key != task.key
    with pytest.raises(BayesLRPError, match="changed since the config was read"):
        build_model_net(task.params["model"], [1, 6, 6], CLASSES, 0)
    with pytest.raises(BayesLRPError, match=r"models\[0\].epochs: 0 epochs keeps the initial"):
        load_config(_grid(npz_files, epochs=0))
    save_file(LeNet(width=5).state_dict(), tmp_path / "wide.safetensors")
    with pytest.raises(BayesLRPError, match=r"models\[0\].init_weights: .* does not fit the "
                                            r"architecture: features.0.bias"):
        load_config(_grid(npz_files, init_weights=str(tmp_path / "wide.safetensors")))
    torch.save(LeNet(), tmp_path / "module.pt")  # a pickled module, not a state dict
    with pytest.raises(BayesLRPError, match=r"module.pt cannot be read \(read with torch.load"
                                            r"\(weights_only=True\): save net.state_dict\(\)"):
        load_config(_grid(npz_files, init_weights=str(tmp_path / "module.pt")))
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(BayesLRPError, match=r"init_weights: init_weights .*bad.pt cannot be "):
        load_config(_grid(npz_files, init_weights=str(tmp_path / "bad.pt")))


def _cli(args, tmp_path):
    """``bayeslrp ARGS`` in a fresh process (this directory importable): rc, stdout, stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(SRC)]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c",
                           "from bayeslrp.cli import main; raise SystemExit(main())", *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    return done.returncode, done.stdout, done.stderr


def test_yaml_grid_with_a_factory_arch_runs_to_a_report(npz_files, tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_grid(npz_files)))
    code, out, err = _cli(["run", str(path), "--run-dir", str(tmp_path / "run")], tmp_path)
    assert code == 0, err
    run = tmp_path / "run"
    assert (run / "report.html").is_file()
    import pandas as pd

    df = pd.read_parquet(run / "results.parquet")
    assert set(df["layer"]) == {0, 6, 8} and set(df["attack"]) == {"fgsm", "pgd"}
    assert set(df["model"]) == {"det", "vi", "hmc"}
    models = json.loads((run / "models.json").read_text())
    assert {m["arch"] for m in models} == {"test_own_model:lenet"}


@pytest.mark.parametrize("factory,match", [
    ("test_own_model:failing", "raised RuntimeError: weights server unreachable"),
    ("test_own_model:attention", "unsupported module MultiheadAttention"),
], ids=["failing", "unsupported"])
def test_cli_stops_a_bad_factory_before_anything_runs(npz_files, tmp_path, factory, match):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_grid(npz_files, arch={"factory": factory})))
    code, out, err = _cli(["run", str(path), "--run-dir", str(tmp_path / "run")], tmp_path)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and match in lines[0], err
    assert lines[0].startswith("error: config error at models[0].arch")
    assert not (tmp_path / "run").exists()


def test_library_names_an_unsupported_module():
    net = attention()
    with pytest.raises(BayesLRPError, match="unsupported module MultiheadAttention") as info:
        bl.lrp.check_network(net)
    assert "\n" not in str(info.value)


def test_a_re_registered_builder_is_probed_again(npz_files):
    bl.nets.register("user-swap", lenet, replace=True)
    assert load_config(_grid(npz_files, arch="user-swap")).models[0].learnable_layers == \
        (0, 6, 8)
    bl.nets.register("user-swap", attention, replace=True)
    with pytest.raises(BayesLRPError, match="unsupported module MultiheadAttention"):
        load_config(_grid(npz_files, arch="user-swap"))
