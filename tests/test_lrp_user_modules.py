"""LRP on networks users write themselves (issue 13, item 4).

The networks are defined here, not in ``bayeslrp.nets``: a LeNet-like class with its own
``forward`` (traced with torch.fx: functional ReLU / pooling / flatten, BatchNorm1d and 2d
folded, ELU, GELU, SiLU, Dropout), and nested ``nn.Sequential`` networks with a standalone
BatchNorm at the input and after an activation, Tanh, Sigmoid, adaptive max and average
pooling, a Linear followed by a Linear. Every learnable layer is checked against the float64
matrix oracle (tests/lrp_reference.py; each oracle chain is written out by hand, independent of
torch.fx), conservation with ε → 0 on bias-free copies, and gradients through the heatmap.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bayeslrp as bl
from bayeslrp import BayesLRPError
from lrp_reference import chain_of, randomize_batchnorm, reference_lrp, zero_biases
from lrp_reference import one_torch_thread  # noqa: F401  (autouse fixture)

RULES = [("epsilon", {}), ("gamma", {}), ("alphabeta", {}),
         ("alphabeta", {"alpha": 2.0, "beta": 1.0})]
RULE_IDS = ["eps", "gamma", "ab10", "ab21"]


class LeNet(nn.Module):
    """A user's LeNet-like classifier with its own forward (12 x 12 single-channel images)."""

    def __init__(self, n_classes: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 4, 3)
        self.act2 = nn.ELU(0.7)
        self.fc1 = nn.Linear(16, 6)
        self.bn3 = nn.BatchNorm1d(6)
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(6, 5)
        self.fc3 = nn.Linear(5, n_classes)

    def forward(self, x):
        x = F.avg_pool2d(F.relu(self.bn1(self.conv1(x))), 2)   # 12 -> 6
        x = F.max_pool2d(self.act2(self.conv2(x)), 2)          # 6 -> 4 -> 2
        x = x.view(x.size(0), -1)
        x = self.drop(F.gelu(self.bn3(self.fc1(x))))
        return self.fc3(F.silu(self.fc2(x)))

    def oracle_chain(self):
        return [self.conv1, self.bn1, nn.ReLU(), nn.AvgPool2d(2), self.conv2, self.act2,
                nn.MaxPool2d(2), nn.Flatten(), self.fc1, self.bn3, nn.GELU(), self.drop,
                self.fc2, nn.SiLU(), self.fc3]


LENET_LAYERS = [0, 4, 8, 12, 14]


def nested_net() -> nn.Sequential:
    """Nested Sequentials; 2 x 9 x 9 images."""
    return nn.Sequential(
        nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 3, 3, padding=1), nn.Tanh()),   # 9
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sigmoid(),
                      nn.AdaptiveMaxPool2d(3)),                                      # 7 -> 3
        nn.Conv2d(4, 4, 2), nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d((1, 2)),          # 2 -> 1x2
        nn.Flatten(),
        nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.BatchNorm1d(6)),
        nn.Linear(6, 5), nn.Linear(5, 4),
    )


NESTED_LAYERS = [0, 1, 3, 7, 11, 13, 14, 15]


class Wrapper(nn.Module):
    """A user container around nested Sequentials, with a functional flatten (traced)."""

    def __init__(self):
        super().__init__()
        net = nested_net()
        self.features = nn.Sequential(*list(net)[:5])
        self.head = nn.Sequential(*list(net)[6:])

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))

    def oracle_chain(self):
        return [*self.features, nn.Flatten(), *self.head]


def _prepared(net, seed):
    torch.manual_seed(seed)
    for m in net.modules():  # small random weights and biases everywhere
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, std=0.6)
            nn.init.normal_(m.bias, std=0.3)
    return randomize_batchnorm(net, torch.Generator().manual_seed(seed + 100)).double().eval()


def _ensemble(nets):
    """An Ensemble of user modules: stacked state dicts and the architecture as a module."""
    states = [n.state_dict() for n in nets]
    params = {k: torch.stack([s[k] for s in states]) for k in states[0]}
    return bl.Ensemble(None, params, module=nets[0])


def _check(model, chains, x, rule, layer, kw, **opts):
    got = bl.lrp.explain(model, x, rule=rule, layer=layer, reduce=None, **kw, **opts)
    ref = reference_lrp(chains, x.numpy(), rule, layer, **kw, **opts)
    assert got.dtype == torch.float64 and got.shape == ref.shape
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5, rtol=1e-9)
    assert np.abs(ref).sum() > 0
    return got


@pytest.fixture(scope="module")
def lenet():
    nets = [_prepared(LeNet(), s) for s in range(3)]
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return _ensemble(nets), [n.oracle_chain() for n in nets], x, nets


@pytest.fixture(scope="module")
def nested():
    nets = [_prepared(nested_net(), s) for s in range(3)]
    x = torch.rand(2, 2, 9, 9, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    return _ensemble(nets), nets, x


def test_learnable_layers_of_user_networks(lenet, nested):
    assert bl.lrp.resolve_layer(lenet[0].module, None).layer == LENET_LAYERS[-1]
    for layer in LENET_LAYERS[:-1]:
        assert not bl.lrp.resolve_layer(lenet[0].module, layer).is_output
    with pytest.raises(BayesLRPError, match=r"choose one of \[0, 4, 8, 12, 14\]"):
        bl.lrp.resolve_layer(lenet[0].module, 2)
    with pytest.raises(BayesLRPError, match=r"\[0, 1, 3, 7, 11, 13, 14, 15\]"):
        bl.lrp.resolve_layer(nested[0].module, 2)
    # a module name names its position
    assert bl.lrp.resolve_layer(lenet[0].module, "fc2").layer == 12
    assert bl.lrp.resolve_layer(nested[0].module, "6.2").layer == 13


@pytest.mark.parametrize("rule,kw", RULES, ids=RULE_IDS)
@pytest.mark.parametrize("layer", LENET_LAYERS)
def test_traced_lenet_matches_reference(lenet, rule, kw, layer):
    ens, chains, x, _ = lenet
    _check(ens, chains, x, rule, layer, kw)


@pytest.mark.parametrize("rule,kw", RULES, ids=RULE_IDS)
@pytest.mark.parametrize("layer", NESTED_LAYERS)
def test_nested_sequential_matches_reference(nested, rule, kw, layer):
    ens, nets, x = nested
    _check(ens, nets, x, rule, layer, kw)


@pytest.mark.parametrize("layer", [0, 7, 13, None])
def test_traced_wrapper_matches_reference(layer):
    net = _prepared(Wrapper(), 3)
    x = torch.rand(3, 2, 9, 9, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    _check(net, [net.oracle_chain()], x, "epsilon", layer, {})


@pytest.mark.parametrize("opts", [{"inner": "all"}, {"seed": "one"}, {"surrogate_beta": 3.0},
                                  {"target_mode": "per_sample_argmax"}],
                         ids=["all", "one", "surrogate", "per-sample"])
def test_user_network_options_match_reference(lenet, opts):
    ens, chains, x, _ = lenet
    layer = None if "target_mode" in opts else 4
    _check(ens, chains, x, "epsilon", layer, {}, **opts)


def test_mean_and_std_over_samples(nested):
    ens, nets, x = nested
    mean, std = bl.lrp.explain_with_std(ens, x, rule="gamma", layer=11)
    ref = reference_lrp(nets, x.numpy(), "gamma", 11)
    np.testing.assert_allclose(mean.numpy(), ref.mean(0), atol=1e-5)
    np.testing.assert_allclose(std.numpy(), ref.std(0), atol=1e-5)


@pytest.mark.parametrize("make,shape", [(LeNet, (1, 12, 12)), (nested_net, (2, 9, 9))],
                         ids=["lenet", "nested"])
def test_conservation_bias_free(make, shape):
    """ε → 0 on a bias-free net (BatchNorm folded, pooling, BatchNorm affine): the input
    relevance sums to the explained logit."""
    net = zero_biases(_prepared(make(), 5))
    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    heat = bl.lrp.explain(net, x, rule="epsilon", epsilon=1e-12, stabilizer=1e-12)
    logits = net(x)
    np.testing.assert_allclose(heat.sum((1, 2)).numpy(), logits.max(-1).values.detach().numpy(),
                               rtol=1e-7)


def test_heatmap_is_differentiable_in_the_input(lenet):
    net = lenet[3][0]
    x = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(11),
                   dtype=torch.float64, requires_grad=True)
    fn = lambda t: bl.lrp.explain(net, t, rule="epsilon", layer=8, create_graph=True,  # noqa
                                  target=[2])
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.flat = nn.Flatten(2)
        self.attn = nn.MultiheadAttention(4, 1, batch_first=True)

    def forward(self, x):
        h = self.flat(x)
        return self.attn(h, h, h)[0].mean(1)


class Shift(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.fc(torch.flatten(x, 1)) + 1.0)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc(x) + x


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(torch.flatten(x, 1))
        return -self.fc(torch.flatten(x, 1))


@pytest.mark.parametrize("net,match", [
    (nn.Sequential(nn.Flatten(2), nn.MultiheadAttention(4, 1)),
     r"unsupported module MultiheadAttention at position 1 for LRP; supported: Linear, Conv2d"),
    (nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.MultiheadAttention(4, 1), nn.Linear(4, 2)),
     r"unsupported module MultiheadAttention at position 2 for LRP"),
    (nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 1), nn.Softmax(1)), nn.Flatten(),
                   nn.Linear(4, 2)),
     r"unsupported module Softmax at position 1 \('0.1'\)"),
    (Residual(), r"Residual.forward is not a chain"),
    (Branchy(), r"Branchy.forward cannot be traced by torch.fx"),
    (Attention(), r"unsupported module MultiheadAttention at position 1 \('attn'\)"),
    (Shift(), r"operation call_function add in Shift.forward at position 2 \('<add>'\)"),
], ids=["mha", "mha-inside", "nested-softmax", "residual", "control-flow", "mha-forward",
        "operation"])
def test_unsupported_networks_raise_one_line(net, match):
    x = torch.rand(2, 4, 1, 1)
    for call in (lambda: bl.lrp.explain(net, x), lambda: bl.lrp.check_network(net)):
        with pytest.raises(BayesLRPError, match=match) as info:
            call()
        assert "\n" not in str(info.value)


def test_modules_after_the_logits_are_not_explained():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.LogSoftmax(-1))
    x = torch.rand(2, 4, 1, 1)
    bl.lrp.check_network(net)
    assert torch.equal(bl.lrp.explain(net, x), bl.lrp.explain(net[:2], x))


def test_check_network_accepts_supported_networks(lenet):
    bl.lrp.check_network(lenet[3][0])
    bl.lrp.check_network(nested_net())
    bl.lrp.check_network(bl.nets.build("resnet20", in_shape=(3, 8, 8)))


def test_ensemble_of_user_modules_runs_every_sample(lenet):
    ens, _, x, nets = lenet
    want = torch.stack([n(x) for n in nets]).detach()
    torch.testing.assert_close(ens.logits(x), want)
    assert ens.head(2).n_samples == 2 and ens.select([2]).module is not None
    torch.testing.assert_close(ens.select([2]).logits(x)[0], want[2])
    with pytest.raises(BayesLRPError, match="cannot be saved"):
        ens.save("/nonexistent/never-written")


@pytest.mark.parametrize("net_fixture", ["lenet", "nested"])
def test_composite_on_user_networks_matches_reference(request, net_fixture):
    """ε-plus: z⁺ on convolutions (and standalone BatchNorm2d), ε on dense layers (and
    BatchNorm1d), at every learnable layer."""
    data = request.getfixturevalue(net_fixture)
    ens, chains, x = data[0], data[1], data[2]
    chain = chain_of(chains[0])
    learnable = bl.nets.learnable_layers(ens.module)
    rule = [("zplus", {}) if isinstance(chain[i], (nn.Conv2d, nn.BatchNorm2d))
            else ("epsilon", {"epsilon": 0.1}) for i in learnable]
    for n_affine, layer in enumerate(learnable, start=1):
        got = bl.explain(ens, x, "epsilon_plus", layer=layer, reduce=None)
        ref = reference_lrp(chains, x.numpy(), rule[:n_affine], layer)
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-5, rtol=1e-9)


def test_gradient_explainers_run_on_user_networks(lenet):
    ens, _, x, nets = lenet
    x1 = x[:1].clone().requires_grad_(True)
    target = int(nets[0](x1).argmax())
    (want,) = torch.autograd.grad(nets[0](x1)[0, target], x1)
    got = bl.explain(ens.select([0]), x[:1], "gradient", reduce=None)
    torch.testing.assert_close(got[0, 0], want[0].sum(0))
    assert bl.nets.learnable_layers(ens.module) == LENET_LAYERS


class Reshapes(nn.Module):
    """Every flatten spelling a traced forward may use."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        if self.how == "view":
            x = x.view(x.size(0), -1)
        elif self.how == "reshape":
            x = x.reshape(x.shape[0], 8)
        elif self.how == "minus-one":
            x = x.view(-1, 8)
        elif self.how == "method":
            x = x.flatten(1)
        else:
            x = torch.flatten(x, 1)
        return self.fc(x)


@pytest.mark.parametrize("how", ["view", "reshape", "minus-one", "method", "function"])
def test_flatten_spellings_in_a_forward(how):
    net = _prepared(Reshapes(how), 1)
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    chain = [net.conv, nn.ReLU(), nn.Flatten(), net.fc]
    _check(net, [chain], x, "epsilon", None, {})


class Double(nn.Module):
    def forward(self, x):
        return 2 * x


def test_a_registered_handler_explains_a_new_module():
    from bayeslrp.lrp.layers import Node

    class DoubleNode(Node):  # y = 2x: relevance passes through, like an activation
        def __init__(self, position):
            self.first = self.last = position

        def forward(self, a, ctx):
            return 2 * a, None

        def relevance(self, r, record, ctx):
            return r

    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), Double(), nn.ReLU(),
                        nn.Linear(5, 3)).double()
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    # unregistered, its forward is traced: the multiplication has no handler
    with pytest.raises(BayesLRPError, match=r"operation call_function mul in Double.forward "
                                            r"at position 2 \('2.<mul>'\)"):
        bl.lrp.explain(net, x)
    bl.lrp.register_handler(Double)(lambda entries, i: (DoubleNode(i), 1))
    got = bl.lrp.explain(net, x, rule="epsilon", epsilon=1e-12, reduce=None)
    # with ε → 0, the same as the network with the doubling folded into the first layer
    folded = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    with torch.no_grad():
        folded[1].weight.copy_(2 * net[1].weight)
        folded[1].bias.copy_(2 * net[1].bias)
        folded[3].load_state_dict(net[4].state_dict())
    want = bl.lrp.explain(folded, x, rule="epsilon", epsilon=1e-12, reduce=None)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
