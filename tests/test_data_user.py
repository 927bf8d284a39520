"""A user's own dataset (issue 13, item 3): loaders, bounds in the attacks, a YAML grid on it.

Tiny files are written to ``tmp_path``: ``.npz`` (default and named keys), ``.pt`` (a dict and
a pair, read with ``weights_only=True``), a folder of IDX files (plain and gzipped). Bad files
give one error line; FGSM and PGD keep their points in the data's bounds and the ε-ball
([-1, 1] here); a YAML grid on an ``.npz`` dataset with bounds [-1, 1] runs to a report, and an
edited file changes the data key.
"""
from __future__ import annotations

import contextlib
import gzip
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

import bayeslrp as bl
from bayeslrp import BayesLRPError
from bayeslrp.data.idx import encode_idx
from bayeslrp.experiment import expand_grid, load_config
from bayeslrp.experiment.store import Store


def _images(n=40, shape=(1, 6, 6), k=4, seed=0, lo=-1.0, hi=1.0):
    """Learnable class-mean images in [lo, hi] (float32) and balanced labels."""
    g = np.random.default_rng(seed)
    y = np.arange(n) % k
    centres = g.uniform(lo, hi, (k, *shape))
    x = np.clip(centres[y] + 0.25 * g.standard_normal((n, *shape)), lo, hi)
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture
def pm1_files(tmp_path):
    """train.npz / test.npz with pixel values in [-1, 1] (some negative)."""
    paths = {}
    for split, n, seed in (("train", 240, 1), ("test", 80, 2)):
        x, y = _images(n, seed=seed)
        paths[split] = tmp_path / f"{split}.npz"
        np.savez(paths[split], x=x, y=y)
    return paths


# --------------------------------------------------------------------------- loaders
def test_from_arrays_shapes_dtypes_and_classes():
    x = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5) * 4
    ds = bl.data.from_arrays(x, np.array([0, 2, 1]))
    assert ds.x.shape == (3, 1, 4, 5) and ds.x.dtype == torch.float32
    torch.testing.assert_close(ds.x[:, 0], torch.from_numpy(x).float() / 255)
    assert (ds.bounds, ds.n_classes, ds.shape, len(ds)) == ((0.0, 1.0), 3, (1, 4, 5), 3)
    # uint8 is mapped onto the given bounds; floats are kept as they are
    ds = bl.data.from_arrays(np.array([[[0, 255]]], dtype=np.uint8).repeat(2, 0), [0, 1],
                             bounds=(-1, 1))
    assert ds.x.flatten().tolist() == [-1.0, 1.0, -1.0, 1.0]
    xf = torch.rand(4, 3, 2, 2) * 2 - 1
    ds = bl.data.from_arrays(xf, torch.tensor([0, 1, 1, 0]), bounds=(-1, 1), n_classes=5)
    assert torch.equal(ds.x, xf) and ds.n_classes == 5 and ds.subset([1, 2]).y.tolist() == [1, 1]


def test_npz_pt_and_idx_folders_give_the_same_dataset(tmp_path):
    x, y = _images(12, shape=(2, 3, 3), k=3)
    np.savez(tmp_path / "plain.npz", x=x, y=y)
    np.savez(tmp_path / "named.npz", images=x, labels=y)
    torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, tmp_path / "dict.pt")
    torch.save((torch.from_numpy(x), torch.from_numpy(y)), tmp_path / "pair.pt")
    want = bl.data.from_arrays(x, y, bounds=(-1, 1))
    for name, kw in (("plain.npz", {}), ("named.npz", {"x_key": "images", "y_key": "labels"}),
                     ("dict.pt", {}), ("pair.pt", {})):
        got = bl.data.from_file(tmp_path / name, bounds=(-1, 1), **kw)
        assert torch.equal(got.x, want.x) and torch.equal(got.y, want.y), name
        assert got.n_classes == 3
    # IDX: uint8 [N, H, W] images, one plain and one gzipped file, a README beside them
    u8 = (np.arange(12 * 4 * 4) % 256).astype(np.uint8).reshape(12, 4, 4)
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "images-idx3-ubyte").write_bytes(encode_idx(u8))
    (idx / "labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(y.astype(np.uint8))))
    (idx / "README").write_text("my data")
    got = bl.data.from_file(idx)
    assert got.x.shape == (12, 1, 4, 4)
    torch.testing.assert_close(got.x[:, 0], torch.from_numpy(u8).float() / 255)
    assert torch.equal(got.y, torch.from_numpy(y))


class _Pickled:
    pass


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "missing.npz", "does not exist"),
    (lambda p: _write(p / "data.csv", b"1,2"), "unknown format .csv; use .npz, .pt"),
    (lambda p: _write(p / "bad.npz", b"not a zip"), "cannot be read as .npz"),
    (lambda p: _savez(p / "keys.npz", a=np.zeros((2, 2, 2)), y=np.zeros(2, int)),
     r"has no array 'x' \(it holds \['a', 'y'\]\); name the arrays with x_key"),
    (lambda p: _torch_save(p / "obj.pt", {"x": _Pickled()}), r"weights_only=True"),
    (lambda p: _torch_save(p / "three.pt", [torch.zeros(2, 2, 2)] * 3), "holds a list"),
    (lambda p: _savez(p / "range.npz", x=np.full((2, 2, 2), 3.0), y=np.array([0, 1])),
     r"pixel values \[3, 3\] lie outside the bounds \[0, 1\]"),
    (lambda p: _savez(p / "lab.npz", x=np.zeros((2, 2, 2)), y=np.array([0.0, 1.0])),
     "labels must be integers"),
    (lambda p: _savez(p / "n.npz", x=np.zeros((2, 2, 2)), y=np.array([0, 1, 1])),
     r"2 images but labels of shape \[3\]"),
    (lambda p: _savez(p / "dim.npz", x=np.zeros((2, 2)), y=np.array([0, 1])),
     r"images must be \[N, C, H, W\] or \[N, H, W\]"),
    (lambda p: _idx_folder(p, 2), "must hold one IDX file of images and one of labels"),
], ids=["missing", "suffix", "not-zip", "keys", "pickle", "list", "range", "float-labels",
        "count", "dims", "idx-two-images"])
def test_bad_files_give_one_clear_line(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(BayesLRPError, match=match) as info:
        bl.data.from_file(path)
    assert "\n" not in str(info.value)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _savez(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _torch_save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def _idx_folder(root: Path, n_images: int) -> Path:
    d = root / "idx"
    d.mkdir()
    for i in range(n_images):
        (d / f"img{i}-idx3-ubyte").write_bytes(encode_idx(np.zeros((2, 3, 3), np.uint8)))
    (d / "lab-idx1-ubyte").write_bytes(encode_idx(np.zeros(2, np.uint8)))
    return d


# --------------------------------------------------------------------------- attacks
@pytest.fixture(scope="module")
def pm1_model():
    torch.manual_seed(0)
    x, y = _images(200, k=4, seed=3)
    ds = bl.data.from_arrays(x, y, bounds=(-1, 1))
    net = bl.nets.build("fc2", hidden=16, in_shape=(1, 6, 6), n_classes=4, seed=0)
    ens = bl.train.deterministic(net, ds, epochs=3, progress=False)  # a Dataset as the data
    return ens, ds.subset(slice(0, 40))


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_gradient_attacks_keep_points_in_bounds_and_ball(pm1_model, attack):
    ens, ds = pm1_model
    eps = 0.6
    fn = getattr(bl.attacks, attack)
    kw = {"steps": 5, "alpha": 0.3} if attack == "pgd" else {}
    adv = fn(ens, ds, eps=eps, **kw)  # the Dataset gives labels and bounds
    assert adv.min() >= -1 and adv.max() <= 1
    assert (adv - ds.x).abs().max() <= eps + 1e-6
    assert (adv < -1e-3).any()  # not clamped to [0, 1]
    assert bool(((adv == -1) | (adv == 1)).any())  # the bounds bind somewhere
    same = fn(ens, ds.x, ds.y, eps=eps, bounds=(-1, 1), **kw)
    assert torch.equal(adv, same)
    # the default bounds are [0, 1]: these images are outside them
    with pytest.raises(BayesLRPError, match=r"pixel values in \[0, 1\].*pass bounds="):
        fn(ens, ds.x, ds.y, eps=eps, **kw)


def test_saliency_attack_and_run_attack_respect_bounds(pm1_model):
    ens, ds = pm1_model
    small = ds.subset(slice(0, 6))
    adv = bl.attacks.topk(ens, small, eps=0.5, steps=2)
    assert adv.min() >= -1 and adv.max() <= 1 and (adv - small.x).abs().max() <= 0.5 + 1e-6
    adv = bl.attacks.run_attack(ens, small, None, "pgd", eps=0.5, steps=2, alpha=0.3)
    assert adv.min() >= -1 and (adv < 0).any() and (adv - small.x).abs().max() <= 0.5 + 1e-6


def test_adversarial_training_clamps_to_bounds(pm1_model):
    from bayeslrp.train.perturb import fgsm_step

    ens, ds = pm1_model
    net = ens.sample_module(0)
    out = fgsm_step(net, ds.x, ds.y, 0.5, (-1.0, 1.0))
    assert out.min() >= -1 and (out < 0).any()
    net = bl.nets.build("fc2", hidden=8, in_shape=(1, 6, 6), n_classes=4)
    ens2 = bl.train.adversarial(net, ds.x, ds.y, eps=0.3, epochs=1, progress=False,
                                bounds=(-1, 1))
    assert ens2.meta["bounds"] == [-1.0, 1.0]
    ens3 = bl.train.adversarial(net, ds, eps=0.3, epochs=1, progress=False)  # its bounds
    assert ens3.meta["bounds"] == [-1.0, 1.0]
    for p in ens2.params:
        torch.testing.assert_close(ens2.params[p], ens3.params[p])
    ens4 = bl.train.vi(net, ds, epochs=1, n_samples=2, progress=False)
    assert ens4.n_samples == 2


# --------------------------------------------------------------------------- config and grid
def _grid_cfg(files, **data):
    return {
        "name": "own-data", "seed": 2,
        "data": {"dataset": {"train": str(files["train"]), "test": str(files["test"]),
                             "bounds": [-1, 1], **data}, "n_points": 20},
        "models": [
            {"name": "det", "method": "det", "arch": "fc2", "hidden": 8, "epochs": 2,
             "batch_size": 64},
            {"name": "adv", "method": "adv", "arch": "fc2", "hidden": 8, "epochs": 1,
             "batch_size": 64, "adv_eps": 0.3},
            {"name": "vi", "method": "vi", "arch": "fc2", "hidden": 8, "epochs": 2,
             "lr": 0.01, "batch_size": 64, "n_samples": 2},
        ],
        "attacks": [{"method": "fgsm", "eps": 0.4}, {"method": "pgd", "eps": 0.4, "steps": 3}],
        "explain": {"rules": ["epsilon"], "layers": "all", "n_samples": [2]},
        "metrics": {"k": [20]},
        "compare": {"baseline": "det"},
    }


def test_config_reads_the_facts_of_user_files(pm1_files):
    cfg = load_config(_grid_cfg(pm1_files))
    facts = cfg.data.facts
    assert (facts.shape, facts.n_classes, facts.bounds, facts.train_size) == \
        ((1, 6, 6), 4, (-1.0, 1.0), 240)
    assert facts.max_points == 80
    param = cfg.data.param
    assert param["sha256"]["test"] == bl.data.user.file_sha256(pm1_files["test"])
    from bayeslrp.experiment.config import config_key, dump_config

    again = load_config(dump_config(cfg))  # a dumped config loads back to the same object
    assert again == cfg and config_key(again) == config_key(cfg)
    bad = _grid_cfg(pm1_files)
    bad["data"]["n_points"] = 22
    with pytest.raises(BayesLRPError, match=r"data.n_points: must be divisible by 4"):
        load_config(bad)


@pytest.mark.parametrize("change,match", [
    (lambda c, p: c["data"]["dataset"].update(test=str(p / "nope.npz")),
     r"config error at data.dataset.test: dataset file .*nope.npz does not exist"),
    (lambda c, p: c["data"]["dataset"].update(bounds=[0, 1]),
     r"config error at data.dataset.train: .*lie outside the bounds \[0, 1\]"),
    (lambda c, p: c["data"]["dataset"].update(bounds=[1, -1]),
     r"config error at data.dataset.bounds: must be \[low, high\]"),
    (lambda c, p: c["data"]["dataset"].update(x_key="images"),
     r"config error at data.dataset.train: .*has no array 'images'"),
], ids=["missing", "bounds", "inverted", "key"])
def test_bad_dataset_is_one_config_error(pm1_files, tmp_path, change, match):
    cfg = _grid_cfg(pm1_files)
    change(cfg, tmp_path)
    with pytest.raises(BayesLRPError, match=match) as info:
        load_config(cfg)
    assert "\n" not in str(info.value)


def test_cli_refuses_a_bad_dataset_file_before_running(pm1_files, tmp_path):
    from bayeslrp.cli import main

    cfg = _grid_cfg(pm1_files)
    (tmp_path / "broken.npz").write_bytes(b"garbage")
    cfg["data"]["dataset"]["train"] = str(tmp_path / "broken.npz")
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(cfg))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", str(path), "--run-dir", str(tmp_path / "run")])
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1 and "broken.npz cannot be read as .npz" in lines[0]
    assert not (tmp_path / "run").exists()


def test_an_edited_file_changes_the_data_key(pm1_files):
    key = expand_grid(load_config(_grid_cfg(pm1_files))).by_label("data").key
    assert expand_grid(load_config(_grid_cfg(pm1_files))).by_label("data").key == key
    x, y = _images(80, seed=9)
    np.savez(pm1_files["test"], x=x, y=y)
    grid = expand_grid(load_config(_grid_cfg(pm1_files)))
    assert grid.by_label("data").key != key
    assert grid.by_label("train[det]").key == expand_grid(load_config(
        _grid_cfg(pm1_files))).by_label("train[det]").key


def test_yaml_grid_on_npz_with_bounds_runs_to_a_report(pm1_files, tmp_path):
    from bayeslrp.cli import main

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_grid_cfg(pm1_files)))
    run_dir = tmp_path / "run"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", str(path), "--run-dir", str(run_dir)])
    assert code == 0, err.getvalue()
    assert (run_dir / "report.html").is_file() and any((run_dir / "figures").glob("*.png"))
    import pandas as pd

    df = pd.read_parquet(run_dir / "results.parquet")
    assert set(df["dataset"]) == {"user:test.npz"}
    assert set(df["layer"]) == {1, 3, 5} and set(df["attack"]) == {"fgsm", "pgd"}
    grid, store = expand_grid(load_config(path)), Store(run_dir)
    x = load_file(store.get_path(grid.by_label("data").key) / "data.safetensors")["x"]
    assert x.min() < 0  # the [-1, 1] images reach the attacks unscaled
    for task in grid.tasks:
        if task.stage == "attack":
            adv = load_file(store.get_path(task.key) / "images.safetensors")["x"]
            assert adv.min() >= -1 and adv.max() <= 1, task.label
            assert (adv - x).abs().max() <= 0.4 + 1e-6, task.label
            assert (adv < 0).any(), task.label


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_figures_show_images_of_any_bounds_and_channels(channels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bayeslrp.plots.heatmaps import _show_image

    image = np.linspace(-1, 1, channels * 5 * 4).reshape(channels, 5, 4)
    fig, ax = plt.subplots()
    try:
        _show_image(ax, image)
        shown = np.asarray(ax.get_images()[0].get_array())
    finally:
        plt.close(fig)
    assert shown.shape == ((5, 4) if channels < 3 else (5, 4, 3))
    assert shown.min() >= 0 and shown.max() <= 1 and shown.max() > shown.min()
