"""Your own model (issue 13, items 1, 2, 5; issue 16's saved-model part).

The networks are user classes defined here, not in ``bayeslrp.nets``; the factories are this
module's functions (``test_own_model:lenet``), importable by a fresh process with this
directory on ``PYTHONPATH``. Covered: ``Ensemble.from_module`` / ``from_modules`` with and
without a factory, save/load round trips in a fresh process, format 2's schema and digest
(every edit of ``ensemble.json`` refused with one line), format 1 still read, the four train
functions and FGSM/PGD/top-k on a user net with data in [-1, 1], preflight errors before
training, ``bl.nets.register``. The YAML side is in ``test_own_model_grid.py``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import bayeslrp as bl
from bayeslrp import BayesLRPError
from bayeslrp.ensemble_format import ModelFileError, canonical_digest

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
SHAPE, CLASSES = (1, 6, 6), 4


class LeNet(nn.Module):
    """A small LeNet-5-like user network: Conv, BatchNorm, ReLU, AvgPool, Dropout, Linear."""

    def __init__(self, width: int = 3, n_classes: int = CLASSES):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width),
                                      nn.ReLU(), nn.AvgPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.25), nn.Linear(width * 9, 8),
                                  nn.ReLU(), nn.Linear(8, n_classes))

    def forward(self, x):
        return self.head(self.features(x))


def lenet(width: int = 3, n_classes: int = CLASSES) -> nn.Module:
    """The factory of :class:`LeNet` (``test_own_model:lenet``)."""
    return LeNet(width, n_classes)


def failing(**_):
    raise RuntimeError("weights server unreachable")


def attention():
    return nn.Sequential(nn.Flatten(), nn.MultiheadAttention(36, 1), nn.Linear(36, CLASSES))


def _data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    centres = torch.rand(CLASSES, *SHAPE, generator=g) * 2 - 1
    x = (centres[y] + 0.2 * torch.randn(n, *SHAPE, generator=g)).clamp(-1, 1)
    return bl.data.from_arrays(x, y, bounds=(-1, 1))


def _net(seed=0, width=3):
    torch.manual_seed(seed)
    return LeNet(width).eval()


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter with this directory importable; its stdout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(SRC)]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


# --------------------------------------------------------------------------- from_module
def test_from_module_of_a_user_net_keeps_its_weights():
    nets = [_net(s) for s in range(3)]
    ens = bl.Ensemble.from_modules(nets)
    x = _data().x[:5]
    torch.testing.assert_close(ens.logits(x), torch.stack([n(x) for n in nets]).detach())
    one = bl.Ensemble.from_module(nets[1])
    assert one.n_samples == 1 and one.spec is None
    torch.testing.assert_close(one.logits(x)[0], nets[1](x))


def test_from_modules_refuses_different_architectures():
    with pytest.raises(BayesLRPError, match=r"one architecture: module 1 differs .*features.0"):
        bl.Ensemble.from_modules([_net(0, width=3), _net(0, width=4)])
    with pytest.raises(BayesLRPError, match="torch.nn.Module"):
        bl.Ensemble.from_modules([_net(0), "not a net"])


def test_factory_is_checked_against_the_net():
    with pytest.raises(BayesLRPError, match="builds another architecture"):
        bl.Ensemble.from_module(_net(width=3), factory="test_own_model:lenet",
                                kwargs={"width": 4})
    with pytest.raises(BayesLRPError, match="cannot be imported by another process"):
        bl.Ensemble.from_module(_net(), factory=lambda: LeNet())
    with pytest.raises(BayesLRPError, match="not an import path"):
        bl.Ensemble.from_module(_net(), factory="lenet")
    with pytest.raises(BayesLRPError, match="must be JSON values"):
        bl.Ensemble.from_module(_net(), factory=lenet, kwargs={"width": object()})
    with pytest.raises(BayesLRPError, match="pass factory= with it"):
        bl.Ensemble.from_module(_net(), kwargs={"width": 3})


def test_save_load_in_a_fresh_process_with_the_factory(tmp_path):
    net = _net(3)
    ens = bl.Ensemble.from_module(net, {"method": "det"}, factory=lenet, kwargs={"width": 3})
    assert ens.spec == {"factory": "test_own_model:lenet", "kwargs": {"width": 3}}
    ens.save(tmp_path / "m")
    x = _data().x[:6]
    torch.save(x, tmp_path / "x.pt")
    out = _python(
        "import torch, bayeslrp as bl\n"
        f"ens = bl.Ensemble.load({str(tmp_path / 'm')!r})\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)\n"
        "print(type(ens.module).__module__, ens.meta['method'])\n"
        "print(repr(ens.logits(x).flatten().tolist()))\n")
    head, values = out.strip().splitlines()
    assert head == "test_own_model det"
    torch.testing.assert_close(torch.tensor(eval(values)), ens.logits(x).flatten())


def test_save_without_a_factory_loads_with_module_or_factory(tmp_path):
    net = _net(4)
    bl.Ensemble.from_module(net).save(tmp_path / "m")
    with pytest.raises(BayesLRPError, match="pass module= .* or factory="):
        bl.Ensemble.load(tmp_path / "m")
    x = _data().x[:4]
    back = bl.Ensemble.load(tmp_path / "m", module=LeNet())
    torch.testing.assert_close(back.logits(x)[0], net(x))
    out = _python(
        "import bayeslrp as bl\n"
        f"ens = bl.Ensemble.load({str(tmp_path / 'm')!r}, factory='test_own_model:lenet')\n"
        "print(ens.n_samples, ens.spec['factory'])\n")
    assert out.split() == ["1", "test_own_model:lenet"]
    with pytest.raises(BayesLRPError, match=r"features.0.weight has shape \[3, 1, 3, 3\], the "
                                            r"architecture's is \[5, 1, 3, 3\]"):
        bl.Ensemble.load(tmp_path / "m", module=LeNet(width=5))


# --------------------------------------------------------------------------- format 2
def _saved(tmp_path):
    ens = bl.Ensemble.from_modules([bl.nets.build("fc2", seed=s, hidden=4, in_shape=SHAPE,
                                                  n_classes=CLASSES) for s in range(2)],
                                   meta={"method": "vi", "dataset": "digits"})
    return ens.save(tmp_path / "m")


@pytest.mark.parametrize("edit", [
    lambda r: r.update(n_samples=3),
    lambda r: r["architecture"]["kwargs"].update(hidden=5),
    lambda r: r["meta"].update(dataset="mnist"),
    lambda r: r["architecture"].update(factory="os:getcwd"),
    lambda r: r["params"].update({"1.weight": [2, 4, 99]}),
], ids=["n_samples", "hidden", "dataset", "factory", "shape"])
def test_every_edit_of_ensemble_json_is_refused(tmp_path, edit):
    path = _saved(tmp_path)
    record = json.loads((path / "ensemble.json").read_text())
    edit(record)
    (path / "ensemble.json").write_text(json.dumps(record))
    with pytest.raises(ModelFileError, match=r"ensemble.json (was edited|is corrupt or edited)") as info:
        bl.Ensemble.load(path)
    assert "\n" not in str(info.value) and isinstance(info.value, BayesLRPError)


@pytest.mark.parametrize("edit,match", [
    (lambda r: r.update(format_version=99), r"format_version 99; this bayeslrp reads 1, 2"),
    (lambda r: r.update(n_samples="2"), r"corrupt or edited \(n_samples: Input should be"),
    (lambda r: r.pop("digest"), r"corrupt or edited \(digest: Field required"),
    (lambda r: r.update(extra=1), r"corrupt or edited \(extra: Extra inputs"),
], ids=["version", "type", "no-digest", "unknown-key"])
def test_schema_violations_are_one_line(tmp_path, edit, match):
    path = _saved(tmp_path)
    record = json.loads((path / "ensemble.json").read_text())
    edit(record)
    (path / "ensemble.json").write_text(json.dumps(record))
    with pytest.raises(ModelFileError, match=match):
        bl.Ensemble.load(path)


def test_a_consistent_but_lying_record_is_still_caught(tmp_path):
    """Even with a recomputed digest, the JSON must agree with the tensors."""
    path = _saved(tmp_path)
    record = json.loads((path / "ensemble.json").read_text())
    record["n_samples"] = 3
    record["params"] = {k: [3, *v[1:]] for k, v in record["params"].items()}
    record["digest"] = canonical_digest(record)
    (path / "ensemble.json").write_text(json.dumps(record))
    with pytest.raises(ModelFileError, match="says 3 samples; params.safetensors holds"):
        bl.Ensemble.load(path)


def test_format_1_files_still_load(tmp_path):
    """The layout written before format 2: ``spec`` and ``sha256``, no digest."""
    from bayeslrp.fileio import sha256_file

    path = _saved(tmp_path)
    want = bl.Ensemble.load(path)
    tensors = path / "params.safetensors"
    (path / "ensemble.json").write_text(json.dumps({
        "format_version": 1, "spec": {"arch": "fc2", "kwargs": {"hidden": 4, "in_shape": [1, 6, 6],
                                                                "n_classes": CLASSES}},
        "n_samples": 2, "meta": {"method": "vi"},
        "sha256": {"params.safetensors": sha256_file(tensors)}}))
    back = bl.Ensemble.load(path)
    x = _data().x[:3]
    torch.testing.assert_close(back.logits(x), want.logits(x))
    record = json.loads((path / "ensemble.json").read_text())
    record["n_samples"] = 5
    (path / "ensemble.json").write_text(json.dumps(record))
    with pytest.raises(ModelFileError, match="says 5 samples"):
        bl.Ensemble.load(path)


def test_save_writes_atomically_and_leaves_no_temp_files(tmp_path):
    path = _saved(tmp_path)
    assert sorted(p.name for p in path.iterdir()) == ["ensemble.json", "params.safetensors"]
    record = json.loads((path / "ensemble.json").read_text())
    assert record["format_version"] == 2 and record["digest"] == canonical_digest(record)
    assert record["module_class"] == "torch.nn.modules.container.Sequential"


# --------------------------------------------------------------------------- training
def test_every_train_function_trains_a_user_net():
    ds, net = _data(), _net(5)
    kw = {"progress": False}
    det = bl.train.deterministic(net, ds, epochs=2, batch_size=16, **kw)
    adv = bl.train.adversarial(net, ds, epochs=1, eps=0.3, batch_size=16, **kw)
    vi = bl.train.vi(net, ds, epochs=1, n_samples=3, batch_size=16, **kw)
    hmc = bl.train.hmc(net, ds, n_samples=3, warmup=2, steps=2, init="random", **kw)
    for ens, s in ((det, 1), (adv, 1), (vi, 3), (hmc, 3)):
        assert ens.n_samples == s and isinstance(ens.module, LeNet) and ens.spec is None
        assert torch.isfinite(ens.logits(ds.x[:4])).all()
    assert not torch.equal(det.params["head.2.weight"][0], net.head[2].weight)


class _Wrong(nn.Module):
    def __init__(self, out=CLASSES, fail=False):
        super().__init__()
        self.fc = nn.Linear(36 if not fail else 5, out)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("net,match", [
    (_Wrong(fail=True), r"_Wrong cannot take the training images of shape \[1, 6, 6\]: "
                        r"RuntimeError"),
    (_Wrong(out=3), r"labels run from 0 to 3 but _Wrong has 3 outputs"),
    (nn.Sequential(nn.Flatten()), r"returns \[2, 36\]|has no parameters"),
    ("net", r"net must be a torch.nn.Module"),
], ids=["forward", "classes", "no-params", "not-module"])
@pytest.mark.parametrize("train", ["deterministic", "adversarial", "vi", "hmc"])
def test_train_functions_refuse_before_training(monkeypatch, net, match, train):
    import bayeslrp.train.loop as loop
    import bayeslrp.train.vi_meanfield as vmf

    def never(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(loop, "fit", never)
    monkeypatch.setattr(vmf, "fit", never)
    with pytest.raises(BayesLRPError, match=match) as info:
        getattr(bl.train, train)(net, _data(), progress=False)
    assert "\n" not in str(info.value)


def test_float_labels_are_refused_before_training():
    ds = _data()
    with pytest.raises(BayesLRPError, match="labels must be a 1-d integer tensor"):
        bl.train.deterministic(_net(), ds.x, ds.y.float(), progress=False)


# --------------------------------------------------------------------------- attacks
def test_fgsm_pgd_topk_on_a_user_net_stay_in_bounds():
    ds = _data()
    ens = bl.train.deterministic(_net(6), ds, epochs=3, batch_size=16, progress=False)
    x, y = ds.x[:8], ds.y[:8]
    for name, xa in (("fgsm", bl.attacks.fgsm(ens, x, y, eps=0.3, bounds=ds.bounds)),
                     ("pgd", bl.attacks.pgd(ens, x, y, eps=0.3, steps=3, alpha=0.1,
                                            bounds=ds.bounds)),
                     ("topk", bl.attacks.topk(ens, x, y, eps=0.3, steps=2,
                                              bounds=ds.bounds))):
        assert xa.shape == x.shape, name
        assert xa.min() >= -1 and xa.max() <= 1 and (xa - x).abs().max() <= 0.3 + 1e-6, name
    assert (bl.attacks.fgsm(ens, x, y, eps=0.3, bounds=ds.bounds) < 0).any()


# --------------------------------------------------------------------------- nets.register
def test_register_builds_and_saves_a_named_architecture(tmp_path):
    bl.nets.register("user-lenet", lenet, replace=True)
    net = bl.nets.build("user-lenet", seed=1, width=3)
    assert net.bayeslrp_spec == {"arch": "user-lenet", "kwargs": {"width": 3},
                                 "factory": "test_own_model:lenet"}
    assert bl.nets.learnable_layers(net) == [0, 6, 8]
    ens = bl.Ensemble.from_module(net)
    ens.save(tmp_path / "m")
    out = _python(  # not registered there: the recorded factory rebuilds it
        "import bayeslrp as bl\n"
        f"print(bl.Ensemble.load({str(tmp_path / 'm')!r}).spec['arch'])\n")
    assert out.strip() == "user-lenet"
    bl.nets.register("user-lenet-2", lambda: LeNet(), learnable_layers=[6, 8], replace=True)
    net2 = bl.nets.build("user-lenet-2")
    assert bl.nets.learnable_layers(net2) == [6, 8] and "factory" not in net2.bayeslrp_spec
    with pytest.raises(BayesLRPError, match="built-in architecture"):
        bl.nets.register("fc2", lenet)
    with pytest.raises(BayesLRPError, match="already registered"):
        bl.nets.register("user-lenet", failing)
    with pytest.raises(BayesLRPError, match="unknown architecture 'nope'.*register"):
        bl.nets.build("nope")


#: logits of ``tests/fixtures/format1_model`` on ``linspace(0, 1, 32)`` images, printed by
#: the code that wrote it (main at 5618ed0, format 1).
FORMAT1_LOGITS = [0.34960782527923584, 0.5147502422332764, 0.5473605394363403,
                  0.33395451307296753, 0.506841778755188, 0.588039755821228,
                  0.10352954268455505, -0.10290175676345825, 0.27305281162261963,
                  0.06745138764381409, -0.12327079474925995, 0.2934439778327942]


def test_a_model_saved_by_format_1_code_loads():
    ens = bl.Ensemble.load(HERE / "fixtures" / "format1_model")
    assert ens.n_samples == 2 and ens.meta == {"method": "vi", "dataset": "synthetic"}
    assert torch.equal(ens.extras["mu.1.weight"], torch.ones(2))
    x = torch.linspace(0, 1, 32).reshape(2, 1, 4, 4)
    torch.testing.assert_close(ens.logits(x).flatten(), torch.tensor(FORMAT1_LOGITS))


def test_trained_user_models_round_trip_in_a_fresh_process(tmp_path):
    """det, VI (with its extras) and HMC of a registered user net, saved here and loaded by
    a process that has not registered it (the recorded factory rebuilds the net)."""
    bl.nets.register("user-lenet", lenet, replace=True)
    ds, net = _data(), bl.nets.build("user-lenet", seed=3)
    kw = {"progress": False}
    models = {"det": bl.train.deterministic(net, ds, epochs=1, batch_size=16, **kw),
              "vi": bl.train.vi(net, ds, epochs=1, n_samples=2, batch_size=16, **kw),
              "hmc": bl.train.hmc(net, ds, n_samples=2, warmup=1, steps=2, init="random", **kw)}
    x = ds.x[:3]
    torch.save(x, tmp_path / "x.pt")
    for name, ens in models.items():
        ens.save(tmp_path / name)
    out = _python(
        "import json, torch, bayeslrp as bl\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)\n"
        "out = {}\n"
        "for name in ('det', 'vi', 'hmc'):\n"
        f"    ens = bl.Ensemble.load({str(tmp_path)!r} + '/' + name)\n"
        "    out[name] = [ens.meta['method'], sorted(ens.extras), ens.logits(x).tolist()]\n"
        "print(json.dumps(out))\n")
    back = json.loads(out)
    for name, ens in models.items():
        method, extras, logits = back[name]
        assert method == name and extras == sorted(ens.extras)
        torch.testing.assert_close(torch.tensor(logits), ens.logits(x))


def test_model_file_error_is_exported_at_top_level(tmp_path):
    """Users catch a broken saved model as ``bl.ModelFileError`` without knowing the module."""
    path = _saved(tmp_path)
    (path / "ensemble.json").write_text("{not json")
    with pytest.raises(bl.ModelFileError):
        bl.Ensemble.load(path)
    assert bl.ModelFileError is ModelFileError and "ModelFileError" in bl.__all__
