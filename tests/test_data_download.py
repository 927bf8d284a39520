"""Downloads from a local HTTP server on 127.0.0.1: checksum, atomic write, resume, refusal."""
from __future__ import annotations

import gzip
import hashlib
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

import bayeslrp.data as bd
from bayeslrp.data import registry
from bayeslrp.data.idx import encode_idx
from bayeslrp.errors import BayesLRPError

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESLRP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BAYESLRP_DATA", raising=False)
    monkeypatch.delenv("BAYESLRP_MIRROR", raising=False)


@pytest.fixture
def server():
    """A local HTTP server: ``files`` maps URL paths to bytes; it records (path, Range) per request."""

    class Handler(BaseHTTPRequestHandler):
        files: dict = {}
        requests: list = []
        honour_range = True
        cut_after = None  # send only this many body bytes, then close

        def do_GET(self):  # noqa: N802 (http.server API)
            rng = self.headers.get("Range")
            self.requests.append((self.path, rng))
            body = self.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if rng and self.honour_range:
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload if self.cut_after is None else payload[:self.cut_after])

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    Handler.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield Handler
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def remote_mnist(monkeypatch, server):
    """A fixture 'mnist' (not installed offline) whose four .gz files the server holds."""
    rng = np.random.default_rng(0)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), NAMES[1]: (np.arange(30) % 10).astype(np.uint8),
        NAMES[2]: rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), NAMES[3]: (np.arange(20) % 10).astype(np.uint8),
    }
    blobs = {k: encode_idx(v) for k, v in arrays.items()}
    spec = replace(registry.SPECS["mnist"], n_train=30, n_test=20, offline=(), fix="FIX-mnist",
                   sha256={k: hashlib.sha256(b).hexdigest() for k, b in blobs.items()},
                   mirrors=(f"{server.url}/first/", f"{server.url}/second/"))
    monkeypatch.setitem(registry.SPECS, "mnist", spec)
    gz = {k: gzip.compress(b, mtime=0) for k, b in blobs.items()}
    server.files.update({f"/mnist/{k}.gz": v for k, v in gz.items()})
    return arrays, blobs, gz


def _check_test_split(x, y, arrays):
    assert torch.equal(x, torch.from_numpy(arrays[NAMES[2]]).unsqueeze(1).float() / 255)
    assert torch.equal(y, torch.from_numpy(arrays[NAMES[3]]).long())


def _partial(tmp_path, name):
    return tmp_path / "cache" / "mnist" / ".partial" / f"{name}.gz.part"


def test_download_verifies_and_writes_the_cache(remote_mnist, server, tmp_path):
    arrays, blobs, gz = remote_mnist
    _check_test_split(*bd.load("mnist", "test", mirror=server.url), arrays)
    assert sorted(server.requests) == [(f"/mnist/{NAMES[2]}.gz", None), (f"/mnist/{NAMES[3]}.gz", None)]
    for name in NAMES[2:]:
        assert (tmp_path / "cache" / "mnist" / name).read_bytes() == blobs[name]  # stored decompressed
        assert not _partial(tmp_path, name).exists()
    server.requests.clear()
    _check_test_split(*bd.load("mnist", "test", mirror=server.url), arrays)
    assert server.requests == []  # from the cache now


def test_mirror_from_environment(remote_mnist, server, monkeypatch):
    arrays, blobs, gz = remote_mnist
    monkeypatch.setenv("BAYESLRP_MIRROR", server.url + "/")
    _check_test_split(*bd.load("mnist", "test"), arrays)
    assert bd.info("mnist")["download_from"] == [f"{server.url}/mnist/"]


def test_canonical_mirrors_are_tried_in_order(remote_mnist, server):
    arrays, blobs, gz = remote_mnist
    server.files.update({f"/second/{k}.gz": v for k, v in gz.items()})  # /first/ answers 404
    _check_test_split(*bd.load("mnist", "test"), arrays)
    paths = [p for p, _ in server.requests]
    assert paths.count(f"/first/{NAMES[2]}.gz") == 1 and paths.count(f"/second/{NAMES[2]}.gz") == 1
    assert paths.index(f"/first/{NAMES[2]}.gz") < paths.index(f"/second/{NAMES[2]}.gz")


def test_resume_continues_a_partial_file(remote_mnist, server, tmp_path):
    arrays, blobs, gz = remote_mnist
    name = NAMES[2]
    half = len(gz[name]) // 2
    part = _partial(tmp_path, name)
    part.parent.mkdir(parents=True)
    part.write_bytes(gz[name][:half])
    _check_test_split(*bd.load("mnist", "test", mirror=server.url), arrays)
    assert (f"/mnist/{name}.gz", f"bytes={half}-") in server.requests
    assert sum(p == f"/mnist/{name}.gz" for p, _ in server.requests) == 1
    assert not part.exists()


def test_a_bad_partial_file_is_never_trusted(remote_mnist, server, tmp_path):
    arrays, blobs, gz = remote_mnist
    name = NAMES[2]
    part = _partial(tmp_path, name)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\x1f\x8b" + b"junk" * (len(gz[name]) // 8))
    _check_test_split(*bd.load("mnist", "test", mirror=server.url), arrays)
    mine = [r for r in server.requests if r[0] == f"/mnist/{name}.gz"]
    assert mine[0][1] is not None and mine[1] == (f"/mnist/{name}.gz", None)  # resumed, refused, restarted
    assert (tmp_path / "cache" / "mnist" / name).read_bytes() == blobs[name]


def test_server_ignoring_range_restarts_the_file(remote_mnist, server, tmp_path):
    arrays, blobs, gz = remote_mnist
    server.honour_range = False
    name = NAMES[3]
    part = _partial(tmp_path, name)
    part.parent.mkdir(parents=True)
    part.write_bytes(gz[name][:10])
    _check_test_split(*bd.load("mnist", "test", mirror=server.url), arrays)


def test_complete_partial_file_is_verified_after_416(remote_mnist, server, tmp_path):
    arrays, blobs, gz = remote_mnist
    name = NAMES[3]
    part = _partial(tmp_path, name)
    part.parent.mkdir(parents=True)
    part.write_bytes(gz[name])
    _check_test_split(*bd.load("mnist", "test", mirror=server.url), arrays)


def test_interrupted_download_keeps_the_part_and_resumes_next_time(remote_mnist, server, tmp_path):
    arrays, blobs, gz = remote_mnist
    server.cut_after = 100
    with pytest.raises(BayesLRPError, match="incomplete .*resumed next time.*FIX-mnist"):
        bd.load("mnist", "test", mirror=server.url)
    name = NAMES[2]
    assert _partial(tmp_path, name).read_bytes() == gz[name][:100]
    assert not (tmp_path / "cache" / "mnist" / name).exists()
    server.cut_after = None
    server.requests.clear()
    _check_test_split(*bd.load("mnist", "test", mirror=server.url), arrays)
    assert (f"/mnist/{name}.gz", "bytes=100-") in server.requests


def test_wrong_checksum_is_refused_and_nothing_is_kept(remote_mnist, server, tmp_path):
    arrays, blobs, gz = remote_mnist
    tampered = bytearray(blobs[NAMES[2]])
    tampered[-1] ^= 1
    server.files[f"/mnist/{NAMES[2]}.gz"] = gzip.compress(bytes(tampered))
    with pytest.raises(BayesLRPError, match=f"downloaded {NAMES[2]}.gz fails its SHA-256 check.*refusing"):
        bd.load("mnist", "test", mirror=server.url)
    assert not (tmp_path / "cache" / "mnist" / NAMES[2]).exists()
    assert not _partial(tmp_path, NAMES[2]).exists()


def test_not_gzip_is_refused(remote_mnist, server, tmp_path):
    server.files[f"/mnist/{NAMES[3]}.gz"] = b"<html>not found</html>"
    with pytest.raises(BayesLRPError, match="not a readable gzip file"):
        bd.load("mnist", "test", mirror=server.url)
    assert not (tmp_path / "cache" / "mnist" / NAMES[3]).exists()


def test_download_disabled_does_not_touch_the_network(remote_mnist, server):
    with pytest.raises(BayesLRPError, match="download disabled"):
        bd.load("mnist", "test", mirror=server.url, download=False)
    assert server.requests == []


def test_fetch_downloads_all_four_files(remote_mnist, server, tmp_path):
    arrays, blobs, gz = remote_mnist
    assert "downloaded" in bd.fetch("mnist", mirror=server.url)
    for name in NAMES:
        assert (tmp_path / "cache" / "mnist" / name).read_bytes() == blobs[name]


def test_cifar_archive_download(monkeypatch, server, tmp_path):
    from test_data_sources import check_cifar, make_cifar
    spec, batches, archive, expected = make_cifar(per_batch=3)
    monkeypatch.setitem(registry.SPECS, "cifar10", spec)
    server.files["/cifar10/cifar-10-python.tar.gz"] = archive
    check_cifar(*bd.load("cifar10", "test", mirror=server.url), expected["test"])
    cache = tmp_path / "cache" / "cifar10"
    assert sorted(p.name for p in cache.iterdir() if p.is_file()) == sorted(
        ["manifest.json", "test-images-idx4-ubyte", "test-labels-idx1-ubyte", "train-images-idx4-ubyte",
         "train-labels-idx1-ubyte"])
    assert not (cache / ".partial" / "cifar-10-python.tar.gz.part").exists()
    server.requests.clear()
    check_cifar(*bd.load("cifar10", "train", mirror=server.url), expected["train"])
    assert server.requests == []
    # a wrong archive is refused
    (cache / "test-images-idx4-ubyte").unlink()
    server.files["/cifar10/cifar-10-python.tar.gz"] = archive[:-100]
    with pytest.raises(BayesLRPError, match="cifar-10-python.tar.gz fails its SHA-256 check"):
        bd.load("cifar10", "test", mirror=server.url)
    assert not (cache / ".partial" / "cifar-10-python.tar.gz.part").exists()
