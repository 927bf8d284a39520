"""Real-MNIST checks of VI and HMC (minutes on a CPU; run with ``pytest -m slow``)."""
from __future__ import annotations

import pytest
import torch

import bayeslrp as bl
from bayeslrp.train.hmc import hmc
from bayeslrp.train.vi import vi

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mnist():
    x, y = bl.data.load("mnist", "train")
    xt, yt = bl.data.load("mnist", "test")
    return x, y, xt[:2000], yt[:2000]


def test_vi_fc2_one_epoch_beats_90_percent(mnist):
    x, y, xt, yt = mnist
    torch.set_num_threads(1)
    ens = vi(bl.nets.build("fc2", hidden=64), x, y, epochs=1, lr=0.01, n_samples=20,
             progress=False)
    acc = ens.accuracy(xt, yt)
    final = bl.train.negative_elbo(ens, x, y)
    print(f"VI fc2 H=64, 1 epoch: 20-sample test accuracy {acc:.4f}; "
          f"ELBO terms {ens.meta['history']}; final point {final}")
    assert acc > 0.90
    # the epoch mean carries the large KL of the σ₀ = 1e-3 start; the end point is a better fit
    history = ens.meta["history"]
    assert final["kl_per_point"] < history["kl_per_point"][-1]
    assert final["neg_elbo"] < history["loss"][-1]
    assert 0.0 < final["nll"] < 1.0


def test_hmc_fc2_on_a_subset_is_sane(mnist):
    x, y, xt, yt = mnist
    torch.set_num_threads(1)
    ens = hmc(bl.nets.build("fc2", hidden=32), x, y, n_samples=40, warmup=40, steps=10,
              step_size=0.5, mode="subset", subset=2000, map_epochs=10, progress=False)
    meta = ens.meta
    acc = ens.accuracy(xt, yt)
    print(f"HMC fc2 H=32, 2000 points: accuracy {acc:.4f}, acceptance "
          f"{meta['acceptance_rate']:.3f}, divergences {meta['divergences']}, "
          f"step size {meta['step_size']}, {meta['wall_seconds']:.0f} s")
    assert 0.6 <= meta["acceptance_rate"] <= 0.98
    assert meta["divergences"] <= 2
    assert acc > 0.80
