"""Tests of the artifact store: keys, atomic all-or-nothing writes, verification, manifest."""
from __future__ import annotations

import json
import os
import time

import pandas as pd
import pytest
import torch

from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment import manifest as manifest_module
from bayeslrp.experiment.store import Store, artifact_key
from bayeslrp.fileio import sha256_bytes

K0 = artifact_key("data", {"n": 1})
K1 = artifact_key("train", {"lr": 0.001}, {"data": K0})


def test_artifact_key_stable_and_sensitive():
    assert K0 == artifact_key("data", {"n": 1}) and len(K0) == 64
    assert artifact_key("data", {"n": 2}) != K0
    assert artifact_key("train", {"n": 1}) != K0
    assert artifact_key("data", {"n": 1}, version=2) != K0
    other = artifact_key("data", {"n": 3})
    assert artifact_key("m", {}, {"a": K0, "b": other}) == artifact_key("m", {}, {"b": other,
                                                                                 "a": K0})
    assert artifact_key("m", {}, {"a": K0, "b": other}) != artifact_key("m", {}, {"a": other,
                                                                                 "b": K0})
    assert artifact_key("m", {}, [K0, other]) != artifact_key("m", {}, [other, K0])
    assert artifact_key("m", {"x": (1, 2)}) == artifact_key("m", {"x": [1, 2]})
    with pytest.raises(BayesLRPError):
        artifact_key("m", {}, {"a": "not-a-key"})
    with pytest.raises(BayesLRPError):
        artifact_key("Bad Stage", {})


def test_put_get_roundtrip_and_meta(tmp_path):
    store = Store(tmp_path)
    assert not store.has(K0)
    path = store.put(K0, {"a.bin": b"hello", "sub/b.txt": b"world"}, {"rows": 3}, stage="data")
    assert path == tmp_path / "artifacts" / "data" / K0
    assert store.has(K0) and Store(tmp_path).has(K0)
    assert store.get_path(K0) == path
    assert store.load_meta(K0) == {"rows": 3}
    record = store.load_record(K0)
    assert record["files"]["a.bin"] == {"sha256": sha256_bytes(b"hello"), "bytes": 5}
    assert record["stage"] == "data" and record["key"] == K0
    assert store.read_bytes(K0, "sub/b.txt") == b"world"
    with pytest.raises(BayesLRPError, match="has no file"):
        store.read_bytes(K0, "nope")


def test_writer_callback(tmp_path):
    store = Store(tmp_path)

    def writer(directory):
        (directory / "x.json").write_text(json.dumps({"v": 1}))
        (directory / "d").mkdir()
        (directory / "d" / "y.bin").write_bytes(b"\x00\x01")

    store.put(K1, writer, stage="train")
    assert store.read_json(K1, "x.json") == {"v": 1}
    assert store.read_bytes(K1, "d/y.bin") == b"\x00\x01"


def test_failed_write_leaves_nothing(tmp_path):
    store = Store(tmp_path)

    def writer(directory):
        (directory / "part.bin").write_bytes(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        store.put(K0, writer, stage="data")
    assert not store.has(K0)
    assert list((tmp_path / "artifacts" / "data").iterdir()) == []
    with pytest.raises(BayesLRPError, match="no files"):
        store.put(K0, {}, stage="data")
    with pytest.raises(BayesLRPError, match="reserved"):
        store.put(K0, lambda d: (d / "meta.json").write_text("{}"), stage="data")
    with pytest.raises(BayesLRPError, match="JSON|hash"):
        store.put(K0, {"a": b"1"}, {"bad": float("nan")}, stage="data")
    assert list((tmp_path / "artifacts" / "data").iterdir()) == []


@pytest.mark.parametrize("name", ["../x", "/abs", "meta.json", "a/../../b", ""])
def test_bad_file_names_rejected(tmp_path, name):
    with pytest.raises(BayesLRPError):
        Store(tmp_path).put(K0, {name: b"1"}, stage="data")


@pytest.mark.parametrize("damage", ["flip", "delete", "truncate", "meta", "wrong_key"])
def test_corrupt_artifact_is_absent_and_removed(tmp_path, damage):
    Store(tmp_path).put(K0, {"a.bin": b"hello world"}, stage="data")
    path = tmp_path / "artifacts" / "data" / K0
    if damage == "flip":
        (path / "a.bin").write_bytes(b"hellO world")
    elif damage == "delete":
        (path / "a.bin").unlink()
    elif damage == "truncate":
        (path / "a.bin").write_bytes(b"hello")
    elif damage == "meta":
        (path / "meta.json").write_text("{not json")
    else:
        rec = json.loads((path / "meta.json").read_text())
        rec["key"] = K1
        (path / "meta.json").write_text(json.dumps(rec))
    store = Store(tmp_path)
    assert not store.has(K0)
    assert not path.exists()
    with pytest.raises(BayesLRPError, match="missing or corrupt"):
        store.get_path(K0)
    store.put(K0, {"a.bin": b"hello world"}, stage="data")   # the stage recomputes
    assert store.read_bytes(K0, "a.bin") == b"hello world"


def test_read_checks_sha_even_after_has(tmp_path):
    store = Store(tmp_path)
    path = store.put(K0, {"a.bin": b"hello"}, stage="data")
    assert store.has(K0)
    (path / "a.bin").write_bytes(b"HELLO")     # changed after verification
    with pytest.raises(BayesLRPError, match="changed on disk"):
        store.read_bytes(K0, "a.bin")
    assert not store.has(K0) and not path.exists()


def test_put_is_idempotent_and_survives_a_concurrent_writer(tmp_path):
    store = Store(tmp_path)
    store.put(K0, {"a.bin": b"first"}, stage="data")
    store.put(K0, {"a.bin": b"second"}, stage="data")
    assert store.read_bytes(K0, "a.bin") == b"first"

    # another worker finishes the same artifact while this one is still writing
    def slow_writer(directory):
        Store(tmp_path).put(K1, {"w.bin": b"winner"}, stage="train")
        (directory / "w.bin").write_bytes(b"loser")

    fresh = Store(tmp_path)
    fresh.put(K1, slow_writer, stage="train")
    assert fresh.read_bytes(K1, "w.bin") == b"winner"
    assert [p.name for p in (tmp_path / "artifacts" / "train").iterdir()] == [K1]


def test_tensors_roundtrip(tmp_path):
    store = Store(tmp_path)
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tensors = {"x": base, "view": base[1:], "y": torch.tensor([1, 2, 3], dtype=torch.int64),
               "half": torch.randn(2, 2).to(torch.float16)}
    store.save_tensors(K0, tensors, {"n": 3}, stage="data")
    loaded = Store(tmp_path).load_tensors(K0)
    assert set(loaded) == set(tensors)
    for name, t in tensors.items():
        assert loaded[name].dtype == t.dtype and torch.equal(loaded[name], t)


def test_table_roundtrip(tmp_path):
    store = Store(tmp_path)
    df = pd.DataFrame({"image": [0, 1, 2], "robustness": [0.5, 1.0, 0.25],
                       "model": ["det", "hmc", "vi"], "success": [True, False, True]})
    store.save_table(K0, df, stage="metrics")
    pd.testing.assert_frame_equal(Store(tmp_path).load_table(K0), df)


def test_manifest_records_and_merges_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest_module, "MANIFEST_REUSE_SAVE_INTERVAL", 0.0)  # save every record
    store = Store(tmp_path)
    assert store.begin_run(config_key="c" * 64, seeds={"seed": 0}) == 0
    store.record_stage("data", "data", K0, computed=True, seconds=1.25)
    store.record_stage("train[det]", "train", K1, computed=True, seconds=3.5)
    store.end_run()
    first = json.loads((tmp_path / "manifest.json").read_text())
    run = first["runs"][0]
    assert run["status"] == "finished" and run["seeds"] == {"seed": 0}
    assert run["machine"]["cpu_count"] == os.cpu_count()
    assert run["machine"]["torch"] == torch.__version__
    assert run["packages"]["torch"] and run["packages"]["python"]
    assert [s["computed"] for s in run["stages"]] == [True, True]

    resumed = Store(tmp_path)
    assert resumed.begin_run() == 1
    resumed.record_stage("data", "data", K0, computed=False, seconds=0.01)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert len(manifest["runs"]) == 2 and manifest["runs"][1]["status"] == "running"
    assert manifest["runs"][1]["stages"][0]["computed"] is False
    assert manifest["artifacts"][K0]["compute_seconds"] == 1.25      # from the run that made it
    assert manifest["artifacts"][K0]["computed_in_run"] == 0
    assert manifest["artifacts"][K1]["labels"] == ["train[det]"]


def test_reuse_records_are_saved_in_batches_computed_ones_at_once(tmp_path, monkeypatch):
    writes = []
    real_write = manifest_module.atomic_write_json
    monkeypatch.setattr(manifest_module, "atomic_write_json",
                        lambda path, obj: (writes.append(path), real_write(path, obj)))
    store = Store(tmp_path)
    store.begin_run()
    keys = [artifact_key("data", {"n": i}) for i in range(2000)]
    started = time.monotonic()
    for i, key in enumerate(keys):
        store.record_stage(f"data{i}", "data", key, computed=False, seconds=0.0)
    elapsed = time.monotonic() - started
    # begin_run, then at most one save per started second of the loop (not one per record)
    assert len(writes) <= 2 + int(elapsed / manifest_module.MANIFEST_REUSE_SAVE_INTERVAL)
    assert len(writes) < 100
    store.record_stage("train", "train", K1, computed=True, seconds=2.0)
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["runs"][0]["stages"][-1]["label"] == "train"  # computed: saved at once
    assert len(on_disk["runs"][0]["stages"]) == 2001
    before = len(writes)
    store.record_stage("again", "data", keys[0], computed=False, seconds=0.0)
    store.end_run()
    assert len(writes) <= before + 2
    final = json.loads((tmp_path / "manifest.json").read_text())["runs"][0]
    assert final["status"] == "finished" and final["stages"][-1]["label"] == "again"


def test_unreadable_manifest_is_kept_aside(tmp_path):
    (tmp_path / "manifest.json").write_text("{broken")
    store = Store(tmp_path)
    store.begin_run()
    assert json.loads((tmp_path / "manifest.json").read_text())["runs"][0]["run"] == 0
    assert len(list(tmp_path.glob("manifest.json.unreadable-*"))) == 1


def test_clean_tmp_removes_only_old_leftovers(tmp_path):
    store = Store(tmp_path)
    stage_dir = tmp_path / "artifacts" / "data"
    old, new = stage_dir / ".tmp-old", stage_dir / ".tmp-new"
    old.mkdir(parents=True)
    new.mkdir()
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert store.clean_tmp(older_than_s=3600) == 1
    assert not old.exists() and new.exists()
