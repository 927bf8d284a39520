"""Resumable gradient attacks (``ChunkCheckpoint``): a PGD interrupted after some image chunks
resumes from them and gives exactly the points of an uninterrupted run; a corrupt chunk is
recomputed with a warning; chunks of another layout are discarded. Also through the attack
stage: the runner's scratch directory holds the chunks of a killed attack."""
from __future__ import annotations

import json

import pytest
import torch

import bayeslrp as bl
from bayeslrp.attacks import gradient
from bayeslrp.attacks.checkpoint import ChunkCheckpoint

SHAPE = (1, 4, 4)


@pytest.fixture
def setup():
    ens = bl.Ensemble.from_modules([bl.nets.build("fc2", seed=s, hidden=8, in_shape=SHAPE)
                                    for s in range(3)])
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(10, *SHAPE, generator=gen)
    y = torch.randint(0, 10, (10,), generator=gen)
    return ens, x, y


class Interrupt(Exception):
    pass


class StopAfter(ChunkCheckpoint):
    """A checkpoint whose attack is killed after ``n`` saved chunks."""

    def __init__(self, directory, n):
        super().__init__(directory)
        self.left = n

    def put(self, restart, chunk, result):
        super().put(restart, chunk, result)
        self.left -= 1
        if self.left == 0:
            raise Interrupt


def counting_steps(monkeypatch):
    calls = []
    real = gradient._run_steps

    def run_steps(*args, **kwargs):
        calls.append(args[1].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(gradient, "_run_steps", run_steps)
    return calls


@pytest.mark.parametrize("mode,restarts", [("expected_gradient", 1), ("predictive", 2),
                                           ("per_sample_average", 1)])
def test_an_interrupted_pgd_resumes_to_the_same_points(setup, tmp_path, mode, restarts):
    ens, x, y = setup
    kw = dict(eps=0.2, steps=4, alpha=0.05, mode=mode, restarts=restarts, seed=3, batch_size=3)
    expected = bl.attacks.pgd(ens, x, y, **kw)
    with pytest.raises(Interrupt):
        bl.attacks.pgd(ens, x, y, checkpoint=StopAfter(tmp_path / "ck", 2), **kw)
    index = json.loads((tmp_path / "ck" / "index.json").read_text())
    assert len(index["chunks"]) == 2
    resumed = bl.attacks.pgd(ens, x, y, checkpoint=ChunkCheckpoint(tmp_path / "ck"), **kw)
    assert torch.equal(resumed, expected)
    assert len(json.loads((tmp_path / "ck" / "index.json").read_text())["chunks"]) == \
        4 * restarts  # 10 images in chunks of 3 → 4 chunks per restart


def test_a_resumed_attack_computes_only_the_missing_chunks(setup, tmp_path, monkeypatch):
    ens, x, y = setup
    kw = dict(eps=0.2, steps=3, alpha=0.05, seed=1, batch_size=4)
    with pytest.raises(Interrupt):
        bl.attacks.pgd(ens, x, y, checkpoint=StopAfter(tmp_path / "ck", 2), **kw)
    calls = counting_steps(monkeypatch)
    bl.attacks.pgd(ens, x, y, checkpoint=ChunkCheckpoint(tmp_path / "ck"), **kw)
    assert calls == [2]  # chunks 4 + 4 were saved; only the last 2 images are attacked


def test_a_corrupt_chunk_is_recomputed_with_a_warning(setup, tmp_path, caplog):
    ens, x, y = setup
    kw = dict(eps=0.2, steps=3, alpha=0.05, seed=1, batch_size=4)
    expected = bl.attacks.pgd(ens, x, y, checkpoint=ChunkCheckpoint(tmp_path / "ck"), **kw)
    chunk = next((tmp_path / "ck").glob("restart000_chunk00001.safetensors"))
    chunk.write_bytes(chunk.read_bytes()[:-8] + b"garbage!")
    with caplog.at_level("WARNING", logger="bayeslrp.attacks"):
        again = bl.attacks.pgd(ens, x, y, checkpoint=ChunkCheckpoint(tmp_path / "ck"), **kw)
    assert "corrupt" in caplog.text and chunk.name in caplog.text
    assert torch.equal(again, expected)


def test_chunks_of_another_layout_are_discarded(setup, tmp_path, monkeypatch):
    ens, x, y = setup
    kw = dict(eps=0.2, steps=3, alpha=0.05, seed=1)
    bl.attacks.pgd(ens, x, y, checkpoint=ChunkCheckpoint(tmp_path / "ck"), batch_size=4, **kw)
    calls = counting_steps(monkeypatch)
    other = bl.attacks.pgd(ens, x, y, checkpoint=ChunkCheckpoint(tmp_path / "ck"),
                           batch_size=5, **kw)
    assert calls == [5, 5]
    monkeypatch.undo()
    torch.testing.assert_close(other, bl.attacks.pgd(ens, x, y, batch_size=5, **kw),
                               rtol=0, atol=0)


def test_fgsm_takes_a_checkpoint_too(setup, tmp_path):
    ens, x, y = setup
    plain = bl.attacks.fgsm(ens, x, y, eps=0.1, batch_size=4)
    saved = bl.attacks.fgsm(ens, x, y, eps=0.1, batch_size=4,
                            checkpoint=ChunkCheckpoint(tmp_path / "ck"))
    assert torch.equal(plain, saved)
    assert len(list((tmp_path / "ck").glob("*.safetensors"))) == 3


def test_the_attack_stage_resumes_from_its_scratch_directory(tmp_path, monkeypatch):
    from bayeslrp.experiment import runner

    config = {"name": "resume", "seed": 2,
              "data": {"dataset": "synthetic", "n_points": 20, "shape": [1, 8, 8]},
              "models": [{"name": "det", "method": "det", "arch": "fc2", "hidden": 8,
                          "epochs": 1, "batch_size": 64}],
              "attacks": [{"method": "pgd", "eps": 0.2, "steps": 3, "alpha": 0.05}],
              "explain": {"rules": ["epsilon"], "layers": "last", "n_samples": [1]}}
    clean = runner.run_experiment(config, tmp_path / "clean")
    # chunks of 8 images (8, 8, 4) for 20 points; the first run dies after the first chunk
    real_chunks = gradient.image_chunks
    monkeypatch.setattr(gradient, "image_chunks",
                        lambda ens, x, n, batch_size, **kw: real_chunks(ens, x, n, 8, **kw))
    saved = []
    real_put = ChunkCheckpoint.put

    def put_then_die(self, restart, chunk, result):
        real_put(self, restart, chunk, result)
        saved.append(self.directory)
        raise Interrupt

    monkeypatch.setattr(ChunkCheckpoint, "put", put_then_die)
    with pytest.raises(Interrupt):
        runner.run_experiment(config, tmp_path / "killed")
    scratch = saved[0]
    assert scratch.is_relative_to(tmp_path / "killed" / "work" / "attack")
    monkeypatch.setattr(ChunkCheckpoint, "put", real_put)
    calls = counting_steps(monkeypatch)
    resumed = runner.run_experiment(config, tmp_path / "killed")
    assert calls == [8, 4]  # the saved first chunk was not attacked again
    assert not scratch.exists()  # the scratch directory goes once the artifact is stored
    import pandas as pd

    pd.testing.assert_frame_equal(pd.read_parquet(resumed.results),
                                  pd.read_parquet(clean.results))
