"""The CPU paths of the attacks: gradients accumulated one sample at a time, cache-sized chunks,
channels-last convolutions — checked against the one-graph gradient (float64) and the vmap path."""
from __future__ import annotations

import math

import pytest
import torch

import bayeslrp as bl
from bayeslrp.attacks.gradient import loss_per_image
from bayeslrp.attacks.input_gradient import summed_sample_gradient
from bayeslrp.ensemble import cpu_image_chunk, forward_stacked


def _ensemble(arch, n, dtype=torch.float64, **kw):
    nets = [bl.nets.build(arch, seed=s, **kw).to(dtype) for s in range(n)]
    return bl.Ensemble.from_modules(nets)


def _one_graph_gradient(ens, x, y, n, mode):
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_per_image(ens, xr, y, n, mode).sum(), xr)
    return grad


@pytest.mark.parametrize("mode", ["expected_gradient", "predictive"])
@pytest.mark.parametrize("arch,kw", [("fc2", {"hidden": 16, "in_shape": (1, 6, 6)}),
                                     ("conv", {"channels": 3, "hidden": 8,
                                               "in_shape": (1, 16, 16)})])
def test_accumulated_gradient_equals_the_one_graph_gradient(mode, arch, kw):
    ens = _ensemble(arch, 5, **kw)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(7, *kw["in_shape"], generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (7,), generator=gen)
    expected = _one_graph_gradient(ens, x, y, 5, mode)
    got = summed_sample_gradient(ens, x, y, 5, mode)
    # float64, only the summation order differs
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-14)


def test_predictive_gradient_survives_probabilities_that_underflow():
    """Logits scaled so that every p_y is below float32's smallest normal number: the log-space
    accumulation still gives the exact gradient direction (the p-space formula gives 0/0)."""
    nets = [bl.nets.build("fc2", seed=s, hidden=8, in_shape=(1, 3, 3)) for s in range(4)]
    for net in nets:
        with torch.no_grad():
            net[-1].weight.mul_(4000.0)
            net[-1].bias.zero_()
    ens32 = bl.Ensemble.from_modules(nets)
    ens64 = bl.Ensemble.from_modules([n.double() for n in nets])
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 3, 3, generator=gen)
    best_log_p = ens32.logits(x).log_softmax(-1).max(0).values  # [B, C], best over samples
    y = best_log_p.argmin(-1)  # a class every sample finds very unlikely: p_y < 1e-38
    assert float(best_log_p.gather(-1, y[:, None]).max()) < -90
    got = summed_sample_gradient(ens32, x, y, 4, "predictive")
    expected = _one_graph_gradient(ens64, x.double(), y, 4, "predictive")
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected, rtol=1e-3, atol=1e-6)


def test_cpu_and_vmap_forward_agree_on_a_conv_ensemble(monkeypatch):
    """The channels-last per-sample loop and vmap compute the same logits (float32 rounding)."""
    ens = _ensemble("conv", 3, dtype=torch.float32, channels=4, hidden=16, in_shape=(1, 28, 28))
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    looped = forward_stacked(ens.module, ens.params, x)
    import bayeslrp.ensemble as ensemble_module
    monkeypatch.setattr(ensemble_module, "loops_over_samples", lambda device: False)
    vmapped = forward_stacked(ens.module, ens.params, x)
    torch.testing.assert_close(looped, vmapped, rtol=1e-5, atol=1e-5)


def test_pgd_points_do_not_depend_on_the_path(monkeypatch):
    """PGD by the CPU sample loop and by the one-graph vmap path reach the same points."""
    ens = _ensemble("fc2", 4, hidden=16, in_shape=(1, 5, 5))
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(9, 1, 5, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (9,), generator=gen)
    kwargs = dict(eps=0.1, steps=5, alpha=0.02, seed=4)
    looped = {m: bl.attacks.pgd(ens, x, y, mode=m, **kwargs) for m in bl.attacks.gradient.MODES}
    import bayeslrp.ensemble as ensemble_module
    import bayeslrp.attacks.gradient as gradient_module
    monkeypatch.setattr(ensemble_module, "loops_over_samples", lambda device: False)
    monkeypatch.setattr(gradient_module, "loops_over_samples", lambda device: False)
    for mode, points in looped.items():
        torch.testing.assert_close(bl.attacks.pgd(ens, x, y, mode=mode, **kwargs), points,
                                   rtol=0, atol=1e-12)


def test_cpu_image_chunk_keeps_one_samples_activations_cache_sized():
    from bayeslrp.ensemble import CPU_CHUNK_BYTES
    assert cpu_image_chunk(torch.device("cpu"), 1000) == CPU_CHUNK_BYTES // 4000
    assert cpu_image_chunk(torch.device("cpu"), 10**9) == 8  # never below 8 images
    assert cpu_image_chunk(torch.device("meta"), 1000) is None
    assert math.isclose(CPU_CHUNK_BYTES / 2**20, 40)
