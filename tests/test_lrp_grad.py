"""The differentiable path (create_graph=True) used by the saliency attacks."""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

import bayeslrp as bl
from lrp_reference import double_ensemble, randomize_batchnorm
from lrp_reference import one_torch_thread  # noqa: F401  (autouse fixture)


def _ens(arch, n=2, **kw):
    gen = torch.Generator().manual_seed(21)
    nets = [randomize_batchnorm(bl.nets.build(arch, seed=s, **kw), gen).double() for s in range(n)]
    return double_ensemble(nets)


def _x(shape, n=2, seed=22):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=gen, dtype=torch.float64).requires_grad_(True)


CASES = {
    "fc2": (dict(hidden=5, in_shape=(1, 3, 3)), (1, 3, 3)),
    "conv": (dict(channels=2, hidden=3, in_shape=(1, 16, 16)), (1, 16, 16)),
    "resnet20": (dict(in_shape=(3, 2, 2)), (3, 2, 2)),
}


@pytest.mark.parametrize("rule", ["epsilon", "gamma", "alphabeta"])
@pytest.mark.parametrize("arch", ["fc2", "conv"])
def test_gradcheck_with_softplus_surrogate(arch, rule):
    kw, shape = CASES[arch]
    ens = _ens(arch, **kw)
    x = _x(shape, n=1 if arch == "conv" else 2)
    for layer in bl.nets.learnable_layers(ens.module):
        def fn(inp, layer=layer):
            return bl.lrp.explain(ens, inp, rule=rule, layer=layer, create_graph=True,
                                  surrogate_beta=5.0)
        assert gradcheck(fn, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["fc2", "conv"])
def test_gradcheck_without_surrogate(arch):
    """The exact rules are piecewise smooth; away from kinks the gradient is exact too."""
    kw, shape = CASES[arch]
    ens = _ens(arch, **kw)
    x = _x(shape, n=1)
    for layer in bl.nets.learnable_layers(ens.module):
        assert gradcheck(lambda inp: bl.lrp.explain(ens, inp, layer=layer, create_graph=True),
                         (x,), eps=1e-7, atol=1e-5, rtol=1e-4)


def test_gradcheck_resnet_and_std():
    kw, shape = CASES["resnet20"]
    ens = _ens("resnet20", **kw)
    x = _x(shape, n=1)

    def fn(inp):
        mean, std = bl.lrp.explain_with_std(ens, inp, rule="epsilon", create_graph=True,
                                            surrogate_beta=10.0)
        return mean, std
    assert gradcheck(fn, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_create_graph_switch():
    ens = _ens("fc2", hidden=5, in_shape=(1, 3, 3))
    x = _x((1, 3, 3))
    plain = bl.lrp.explain(ens, x)
    assert not plain.requires_grad and plain.grad_fn is None
    diff = bl.lrp.explain(ens, x, create_graph=True)
    torch.testing.assert_close(diff.detach(), plain)
    (grad,) = torch.autograd.grad(diff.pow(2).sum(), x)
    assert grad.abs().sum() > 0
    # the surrogate changes the explanation and gives a different, still finite gradient
    smooth = bl.lrp.explain(ens, x, create_graph=True, surrogate_beta=2.0)
    (grad_s,) = torch.autograd.grad(smooth.pow(2).sum(), x)
    assert torch.isfinite(grad_s).all() and not torch.allclose(grad_s, grad)


def test_attack_call_signature_float32():
    """The call the saliency attacks make, on a float32 model: gradient flows, dtype kept."""
    nets = [bl.nets.build("conv", channels=2, hidden=3, in_shape=(1, 16, 16), seed=s)
            for s in range(3)]
    ens = bl.Ensemble.from_modules(nets)
    x = torch.rand(4, 1, 16, 16, requires_grad=True)
    heat = bl.lrp.explain(ens, x, rule="gamma", layer=3, n_samples=2, create_graph=True,
                          surrogate_beta=100.0)
    assert heat.shape == (4, 16, 16) and heat.dtype == torch.float32
    (grad,) = torch.autograd.grad(heat[:, :4, :4].sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
