"""Training options (SGD, weight decay, lr milestones, crop+flip augmentation), VI with
BatchNorm (point estimates, running statistics) and the cifar_synthetic dataset."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import bayeslrp as bl
from bayeslrp.errors import BayesLRPError
from bayeslrp.plugins.models import MODEL_METHODS
from bayeslrp.plugins.models.train_options import drop_default_options, train_options
from bayeslrp.train.options import TrainOptions, augment_batch


def test_augment_batch_is_a_padded_crop_and_flip_per_image():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    gen = torch.Generator().manual_seed(3)
    out = augment_batch(x, gen, padding=2)
    gen = torch.Generator().manual_seed(3)
    offsets = torch.randint(0, 5, (2, 2), generator=gen)
    flips = torch.rand(2, generator=gen) < 0.5
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):
        i, j = offsets[b].tolist()
        want = padded[b, :, i:i + 6, j:j + 6]
        if flips[b]:
            want = want.flip(-1)
        assert torch.equal(out[b], want)


def test_lr_milestones_follow_multistep():
    opts = TrainOptions(lr_milestones=(2, 4), lr_gamma=0.5)
    assert [opts.lr_at(e, 1.0) for e in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    with pytest.raises(BayesLRPError, match="increasing"):
        TrainOptions(lr_milestones=(3, 2))
    with pytest.raises(BayesLRPError, match="optimizer"):
        TrainOptions(optimizer="rmsprop")


def _tiny_data(n=64):
    x, y = bl.data.load("synthetic", "train", n=n, shape=(1, 6, 6), seed=1)
    return x, y


def test_default_options_train_bit_identically_and_sgd_differs():
    x, y = _tiny_data()
    net = bl.nets.build("fc2", hidden=16, in_shape=(1, 6, 6))
    plain = bl.train.deterministic(net, x, y, epochs=2, progress=False)
    default = bl.train.deterministic(net, x, y, epochs=2, progress=False, options=TrainOptions())
    for k in plain.params:
        assert torch.equal(plain.params[k], default.params[k])
    sgd = TrainOptions(optimizer="sgd", momentum=0.9, weight_decay=1e-4, lr_milestones=(1,),
                       augment="crop_flip")
    other = bl.train.deterministic(net, x, y, epochs=2, lr=0.05, progress=False, options=sgd)
    assert other.meta["options"]["optimizer"] == "sgd"
    assert any(not torch.equal(plain.params[k], other.params[k]) for k in plain.params)


def test_sgd_with_milestones_equals_a_hand_written_loop():
    x, y = _tiny_data(32)
    net = bl.nets.build("fc2", hidden=8, in_shape=(1, 6, 6))
    opts = TrainOptions(optimizer="sgd", momentum=0.5, weight_decay=1e-3, lr_milestones=(1,),
                        lr_gamma=0.1)
    ens = bl.train.deterministic(net, x, y, epochs=2, lr=0.1, batch_size=16, seed=4,
                                 progress=False, options=opts)
    ref = bl.nets.build("fc2", hidden=8, in_shape=(1, 6, 6)).train()
    sgd = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.5, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(sgd, milestones=[1], gamma=0.1)
    gen = torch.Generator().manual_seed(4)
    for _ in range(2):
        order = torch.randperm(32, generator=gen)
        for s in range(0, 32, 16):
            idx = order[s:s + 16]
            sgd.zero_grad()
            nn.functional.cross_entropy(ref(x[idx]), y[idx]).backward()
            sgd.step()
        sched.step()
    for name, p in ref.state_dict().items():
        torch.testing.assert_close(ens.params[name][0], p, rtol=1e-5, atol=1e-6)


def test_option_keys_stay_out_of_the_artifact_key_at_their_defaults():
    det = MODEL_METHODS.get("det")()
    spec = det.Spec(name="d", method="det", arch="fc2", epochs=1)
    assert not {"optimizer", "augment", "lr_milestones"} & set(det.key_params(spec))
    sgd = det.Spec(name="d", method="det", arch="fc2", epochs=1, optimizer="sgd",
                   lr_milestones=[2])
    keyed = det.key_params(sgd)
    assert keyed["optimizer"] == "sgd" and keyed["lr_milestones"] == [2]
    assert train_options(keyed) == TrainOptions(optimizer="sgd", lr_milestones=(2,))
    assert drop_default_options({"momentum": 0.9, "lr": 1.0}) == {"lr": 1.0}


def test_vi_keeps_batchnorm_as_point_estimates_with_learnt_statistics():
    x, y = bl.data.load("synthetic", "train", n=64, shape=(3, 8, 8), seed=1)
    x = x * 3 + 1  # statistics far from BatchNorm's initial (0, 1)
    net = bl.nets.build("resnet20", in_shape=(3, 8, 8), normalize="none")
    ens = bl.train.vi(net, x, y, epochs=2, lr=1e-2, n_samples=3, progress=False,
                      num_particles=2, mu_init_std=0.1)
    mu = {k[3:] for k in ens.extras if k.startswith("mu.")}
    learnable = {n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert mu == {n for n, _ in net.named_parameters() if n.rsplit(".", 1)[0] in learnable}
    running = ens.params["2.running_mean"]  # the stem's BatchNorm
    assert running.shape == (3, 16) and torch.equal(running[0], running[2])
    assert not torch.equal(running[0], torch.zeros(16))  # learnt in training mode
    scale = ens.params["2.weight"]
    assert torch.equal(scale[0], scale[1]) and not torch.equal(scale[0], torch.ones(16))
    conv = ens.params["1.weight"]
    assert not torch.equal(conv[0], conv[1])  # posterior draws differ
    assert ens.meta["num_particles"] == 2 and ens.meta["mu_init_std"] == 0.1
    with pytest.raises(BayesLRPError, match="weight_decay"):
        bl.train.vi(net, x, y, epochs=1, n_samples=1, progress=False,
                    options=TrainOptions(weight_decay=1e-4))


def test_cifar_synthetic_is_seeded_balanced_and_in_bounds():
    x, y = bl.data.load("cifar_synthetic", "test", n=200)
    x2, y2 = bl.data.load("cifar_synthetic", "test", n=200)
    assert x.shape == (200, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(torch.bincount(y), torch.full((10,), 20))
    xt, _ = bl.data.load("cifar_synthetic", "train", n=200)
    assert not torch.equal(x, xt)
    assert bl.catalog.DATASETS["cifar_synthetic"].shape == (3, 32, 32)


def test_resnet20_normalization_choices():
    x = torch.rand(2, 3, 32, 32)
    for choice, mean in (("imagenet", bl.nets.IMAGENET_MEAN), ("cifar", bl.nets.CIFAR_MEAN)):
        first = bl.nets.build("resnet20", normalize=choice)[0]
        torch.testing.assert_close(first(x)[:, 0], (x[:, 0] - mean[0]) / first.std[0, 0])
    assert isinstance(bl.nets.build("resnet20", normalize="none")[0], nn.Identity)
    with pytest.raises(BayesLRPError, match="normalize"):
        bl.nets.build("resnet20", normalize="zca")
