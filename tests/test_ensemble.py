import json

import pytest
import torch

import bayeslrp as bl


def _nets(n, **kw):
    kw.setdefault("in_shape", (1, 8, 8))
    return [bl.nets.build("fc2", hidden=12, seed=s, **kw) for s in range(n)]


def test_logits_stack_the_single_networks():
    nets = _nets(3)
    ens = bl.Ensemble.from_modules(nets)
    x = torch.rand(5, 1, 8, 8)
    logits = ens.logits(x)
    assert logits.shape == (3, 5, 10)
    for j, net in enumerate(nets):
        torch.testing.assert_close(logits[j], net(x), atol=1e-6, rtol=1e-6)


def test_predict_proba_is_mean_softmax_and_respects_n_samples():
    nets = _nets(4)
    ens = bl.Ensemble.from_modules(nets)
    x = torch.rand(7, 1, 8, 8)
    expected = torch.stack([n(x).softmax(-1) for n in nets[:2]]).mean(0)
    torch.testing.assert_close(ens.predict_proba(x, n_samples=2), expected, atol=1e-6, rtol=1e-6)
    with pytest.raises(bl.BayesLRPError, match="n_samples=5"):
        ens.predict_proba(x, n_samples=5)


def test_chunking_over_samples_and_images_does_not_change_results():
    ens = bl.Ensemble.from_modules(_nets(5))
    x = torch.rand(9, 1, 8, 8)
    full = ens.logits(x)
    tiny_budget = ens.logits(x, memory_budget=1)  # one sample per chunk
    torch.testing.assert_close(full, tiny_budget)
    torch.testing.assert_close(ens.predict_proba(x, batch_size=2), ens.predict_proba(x))


def test_logits_are_differentiable_in_x():
    ens = bl.Ensemble.from_modules(_nets(2))
    x = torch.rand(3, 1, 8, 8, requires_grad=True)
    ens.logits(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_head_select_and_sample_module():
    nets = _nets(3)
    ens = bl.Ensemble.from_modules(nets)
    x = torch.rand(2, 1, 8, 8)
    assert ens.head(2).n_samples == 2
    torch.testing.assert_close(ens.select([2]).logits(x)[0], nets[2](x))
    torch.testing.assert_close(ens.sample_module(1)(x), nets[1](x))


def test_mixed_architectures_are_refused():
    with pytest.raises(bl.BayesLRPError, match="one architecture"):
        bl.Ensemble.from_modules([bl.nets.build("fc2", hidden=4), bl.nets.build("fc2", hidden=5)])


def test_save_load_round_trip_with_extras(tmp_path):
    ens = bl.Ensemble.from_modules(_nets(2), meta={"method": "vi"})
    ens.extras = {"mu.1.weight": torch.ones(3)}
    ens.save(tmp_path / "m")
    back = bl.Ensemble.load(tmp_path / "m")
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(back.logits(x), ens.logits(x))
    assert back.meta == {"method": "vi"} and torch.equal(back.extras["mu.1.weight"], torch.ones(3))
    record = json.loads((tmp_path / "m" / "ensemble.json").read_text())
    assert set(record["files"]) == {"params.safetensors", "extras.safetensors"}
    assert record["format_version"] == 2 and len(record["digest"]) == 64


def test_resnet_ensemble_matches_modules():
    nets = [bl.nets.build("resnet20", seed=s, in_shape=(3, 8, 8)) for s in range(2)]
    ens = bl.Ensemble.from_modules(nets)
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(ens.logits(x)[1], nets[1](x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("damage", ["flip", "truncate", "json"])
def test_corrupt_files_are_refused_with_a_clear_message(tmp_path, damage):
    path = bl.Ensemble.from_modules(_nets(1)).save(tmp_path / "m")
    tensors = path / "params.safetensors"
    data = bytearray(tensors.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
        tensors.write_bytes(bytes(data))
        match = "corrupt: its sha256"
    elif damage == "truncate":
        tensors.write_bytes(bytes(data[:100]))
        match = "corrupt"
    else:
        (path / "ensemble.json").write_text("{not json")
        match = "ensemble.json is corrupt"
    with pytest.raises(bl.BayesLRPError, match=match):
        bl.Ensemble.load(path)


def test_missing_model_directory(tmp_path):
    with pytest.raises(bl.BayesLRPError, match="not a saved model"):
        bl.Ensemble.load(tmp_path / "nothing")
