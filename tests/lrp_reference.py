"""Matrix-form reference LRP: a test oracle independent of ``bayeslrp.lrp``.

Written straight from the equations (SPEC §4, Montavon et al. 2019) in float64 numpy, one image
and one posterior sample at a time. Every layer is an explicit dense matrix acting on the
flattened activation (C·H·W order): a convolution is unrolled index by index into its
``[O·H'·W', C·H·W]`` matrix, BatchNorm is folded by scaling the matrix rows, pooling and
shortcuts are selection / averaging matrices. Relevance is then propagated with the explicit
contribution matrix ``Z[k, j] = M[k, j] · a_j``.

Only the network's weights (read from torch modules) and layer hyper-parameters are taken from
torch; no torch computation is used.
"""
from __future__ import annotations

import math

import numpy as np
from torch import nn

from bayeslrp import nets


# ----------------------------------------------------------------------------- matrices
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv_matrix(weight, in_shape, stride, padding, dilation):
    """Dense matrix of a 2-d convolution (no bias) and its output shape."""
    o, c, kh, kw = weight.shape
    _, h, w = in_shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    m = np.zeros((o, ho, wo, c, h, w))
    for oi in range(ho):
        for oj in range(wo):
            for ki in range(kh):
                for kj in range(kw):
                    ii, jj = oi * sh - ph + ki * dh, oj * sw - pw + kj * dw
                    if 0 <= ii < h and 0 <= jj < w:
                        m[:, oi, oj, :, ii, jj] += weight[:, :, ki, kj]
    return m.reshape(o * ho * wo, c * h * w), (o, ho, wo)


def avgpool_matrix(in_shape, module):
    """Averaging matrix of AvgPool2d (no padding) or AdaptiveAvgPool2d."""
    c, h, w = in_shape
    if isinstance(module, nn.AdaptiveAvgPool2d):
        ho, wo = _pair(module.output_size)
        rows = [(int(np.floor(i * h / ho)), int(np.ceil((i + 1) * h / ho))) for i in range(ho)]
        cols = [(int(np.floor(j * w / wo)), int(np.ceil((j + 1) * w / wo))) for j in range(wo)]
    else:
        (kh, kw), (sh, sw) = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
        assert _pair(module.padding) == (0, 0)
        ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
        rows = [(i * sh, i * sh + kh) for i in range(ho)]
        cols = [(j * sw, j * sw + kw) for j in range(wo)]
    m = np.zeros((c, ho, wo, c, h, w))
    for ch in range(c):
        for i, (r0, r1) in enumerate(rows):
            for j, (c0, c1) in enumerate(cols):
                m[ch, i, j, ch, r0:r1, c0:c1] = 1.0 / ((r1 - r0) * (c1 - c0))
    return m.reshape(c * ho * wo, c * h * w), (c, ho, wo)


def maxpool_matrix(a, in_shape, module):
    """0/1 matrix sending each pooling window's winner (first maximum) to its output."""
    c, h, w = in_shape
    (kh, kw) = _pair(module.kernel_size)
    (sh, sw) = _pair(module.stride if module.stride is not None else module.kernel_size)
    (ph, pw), (dh, dw) = _pair(module.padding), _pair(module.dilation)
    assert not module.ceil_mode
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    img = a.reshape(c, h, w)
    m = np.zeros((c, ho, wo, c, h, w))
    for ch in range(c):
        for i in range(ho):
            for j in range(wo):
                best, where = -np.inf, None
                for ki in range(kh):
                    for kj in range(kw):
                        ii, jj = i * sh - ph + ki * dh, j * sw - pw + kj * dw
                        if 0 <= ii < h and 0 <= jj < w and img[ch, ii, jj] > best:
                            best, where = img[ch, ii, jj], (ii, jj)
                m[ch, i, j, ch, where[0], where[1]] = 1.0
    return m.reshape(c * ho * wo, c * h * w), (c, ho, wo)


def _adaptive_windows(n, o):
    return [(int(np.floor(i * n / o)), int(np.ceil((i + 1) * n / o))) for i in range(o)]


def adaptive_maxpool_matrix(a, in_shape, module):
    """0/1 matrix of AdaptiveMaxPool2d: each adaptive window's first maximum."""
    c, h, w = in_shape
    ho, wo = _pair(module.output_size)
    img = a.reshape(c, h, w)
    m = np.zeros((c, ho, wo, c, h, w))
    for ch in range(c):
        for i, (r0, r1) in enumerate(_adaptive_windows(h, ho)):
            for j, (c0, c1) in enumerate(_adaptive_windows(w, wo)):
                win = img[ch, r0:r1, c0:c1]
                ii, jj = np.unravel_index(int(np.argmax(win)), win.shape)
                m[ch, i, j, ch, r0 + ii, c0 + jj] = 1.0
    return m.reshape(c * ho * wo, c * h * w), (c, ho, wo)


def shortcut_matrix(in_shape, stride, pad):
    """Option-A shortcut: subsample by ``stride``, zero-pad ``pad/2`` channels on each side."""
    c, h, w = in_shape
    ho, wo = (h + stride - 1) // stride, (w + stride - 1) // stride
    m = np.zeros((c + pad, ho, wo, c, h, w))
    for ch in range(c):
        for i in range(ho):
            for j in range(wo):
                m[ch + pad // 2, i, j, ch, i * stride, j * stride] = 1.0
    return m.reshape((c + pad) * ho * wo, c * h * w), (c + pad, ho, wo)


def _folded(conv, bn, in_shape):
    """(matrix, bias vector, out shape) of conv [+ BatchNorm in eval mode]."""
    wt = conv.weight.detach().double().numpy()
    m, out = conv_matrix(wt, in_shape, conv.stride, conv.padding, conv.dilation)
    per_channel = np.prod(out[1:])
    b = (conv.bias.detach().double().numpy() if conv.bias is not None else np.zeros(out[0]))
    if bn is not None:
        scale = 1.0 / np.sqrt(bn.running_var.double().numpy() + bn.eps)
        if bn.affine:
            scale = scale * bn.weight.detach().double().numpy()
        shift = -bn.running_mean.double().numpy() * scale
        if bn.affine:
            shift = shift + bn.bias.detach().double().numpy()
        b = b * scale + shift
        m = m * np.repeat(scale, per_channel)[:, None]
    return m, np.repeat(b, per_channel), out


# ----------------------------------------------------------------------------- rules
def sign0(z):
    return np.where(z >= 0, 1.0, -1.0)


def rule_relevance(rule, m, b, a, r, opts):
    """Relevance of the inputs ``a`` of ``z = M a + b`` from the equations."""
    if rule == "epsilon":
        contrib = m * a[None, :]                # Z[k, j] = a_j w_jk
        z = contrib.sum(1) + b
        return contrib.T @ (r / (z + opts["epsilon"] * sign0(z)))
    if rule == "gamma":
        g = opts["gamma"]
        mg, bg = m + g * np.maximum(m, 0), b + g * np.maximum(b, 0)
        contrib = mg * a[None, :]
        z = contrib.sum(1) + bg
        return contrib.T @ (r / (z + opts["stabilizer"] * sign0(z)))
    if rule == "zplus":
        return rule_relevance("alphabeta", m, b, a, r, {**opts, "alpha": 1.0, "beta": 0.0})
    if rule == "zbox":
        lo, hi = opts["low"], opts["high"]
        contrib = m * a[None, :] - np.maximum(m, 0) * lo - np.minimum(m, 0) * hi
        z = contrib.sum(1)
        return contrib.T @ (r / (z + opts["stabilizer"] * sign0(z)))
    if rule == "alphabeta":
        contrib = m * a[None, :]
        pos, neg = np.maximum(contrib, 0), np.minimum(contrib, 0)
        zp = pos.sum(1) + np.maximum(b, 0)
        zn = neg.sum(1) + np.minimum(b, 0)
        d = opts["stabilizer"]
        return (opts["alpha"] * pos.T @ (r / (zp + d))
                - opts["beta"] * neg.T @ (r / (zn - d)))
    raise ValueError(rule)


def proportional(parts, r, delta):
    total = sum(parts)
    return [p * r / (total + delta * sign0(total)) for p in parts]


# ----------------------------------------------------------------------------- network
def _erf(z):
    return np.vectorize(math.erf)(z)


def _smooth(module, z):
    """ELU, GELU (exact or tanh), SiLU, Tanh, Sigmoid, Softplus from their formulas."""
    if isinstance(module, nn.Softplus):
        return np.logaddexp(0.0, module.beta * z) / module.beta
    if isinstance(module, nn.ELU):
        return np.where(z > 0, z, module.alpha * np.expm1(np.minimum(z, 0)))
    if isinstance(module, nn.GELU):
        if module.approximate == "tanh":
            return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))
        return 0.5 * z * (1 + _erf(z / np.sqrt(2)))
    if isinstance(module, nn.SiLU):
        return z / (1 + np.exp(-z))
    if isinstance(module, nn.Tanh):
        return np.tanh(z)
    if isinstance(module, nn.Sigmoid):
        return 1 / (1 + np.exp(-z))
    raise TypeError(type(module))


def _activation(module, z, beta):
    if not isinstance(module, (nn.ReLU, nn.LeakyReLU)):
        return _smooth(module, z)
    slope = module.negative_slope if isinstance(module, nn.LeakyReLU) else 0.0
    if beta is not None:
        soft = np.logaddexp(0.0, beta * z) / beta
        return slope * z + (1 - slope) * soft
    return np.where(z > 0, z, slope * z)


_ACTS = (nn.ReLU, nn.LeakyReLU, nn.Softplus, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_SKIP = (nn.Identity, nn.Dropout, nn.Dropout2d)


def chain_of(net):
    """The modules of ``net`` in order, nested ``nn.Sequential`` containers opened."""
    if isinstance(net, (nn.Sequential, list, tuple)):
        return [m for child in net for m in chain_of(child)]
    return [net]


def _folds(net, i):
    """Whether the BatchNorm at ``i`` follows its Linear (1d) / Conv2d (2d)."""
    return i > 0 and (isinstance(net[i], nn.BatchNorm1d) and isinstance(net[i - 1], nn.Linear)
                      or isinstance(net[i], nn.BatchNorm2d) and isinstance(net[i - 1], nn.Conv2d))


def learnable(net):
    return [i for i, m in enumerate(net)
            if isinstance(m, (nn.Linear, nn.Conv2d, nets.BasicBlock))
            or isinstance(m, _BN) and not _folds(net, i)]


def cut_position(net, layer):
    """(last position run, output?) for learnable layer ``layer`` (None = logits)."""
    learn = learnable(net)
    if layer is None or layer == learn[-1]:
        return learn[-1], True
    if isinstance(net[layer], nets.BasicBlock):
        return layer, False
    end = layer + 1 if layer + 1 < len(net) and _folds(net, layer + 1) else layer
    j = end + 1
    while j < len(net) and isinstance(net[j], _SKIP):
        j += 1
    if j < len(net) and isinstance(net[j], _ACTS):
        return j, False
    return end, False


def _bn_affine(bn):
    scale = 1.0 / np.sqrt(bn.running_var.double().numpy() + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.detach().double().numpy()
    shift = -bn.running_mean.double().numpy() * scale
    if bn.affine:
        shift = shift + bn.bias.detach().double().numpy()
    return scale, shift


def forward(net, x, stop, beta=None, cache=None):
    """Run positions ``0..stop`` on one flat image; returns (output, steps, output shape).

    ``cache`` (a dict) keeps the weight matrices between images of one network.
    """
    cache = {} if cache is None else cache

    def folded(conv, bn, in_shape):
        key = (id(conv), in_shape)
        if key not in cache:
            cache[key] = _folded(conv, bn, in_shape)
        return cache[key]

    a, shape = x.reshape(-1).astype(np.float64), tuple(x.shape)
    steps = []
    i = 0
    while i <= stop:
        mod = net[i]
        if isinstance(mod, nn.Conv2d):
            bn = net[i + 1] if i + 1 < len(net) and isinstance(net[i + 1], nn.BatchNorm2d) else None
            m, b, shape = folded(mod, bn, shape)
            z = m @ a + b
            steps.append(("affine", m, b, a))
            a = z
            i += 2 if bn is not None else 1
            continue
        if isinstance(mod, nn.Linear):
            m = mod.weight.detach().double().numpy()
            b = (mod.bias.detach().double().numpy() if mod.bias is not None
                 else np.zeros(m.shape[0]))
            if i + 1 < len(net) and _folds(net, i + 1):
                scale, shift = _bn_affine(net[i + 1])
                m, b = m * scale[:, None], b * scale + shift
                i += 1
            steps.append(("affine", m, b, a))
            a, shape = m @ a + b, (m.shape[0],)
        elif isinstance(mod, _BN):  # not folded: a diagonal affine layer
            scale, shift = _bn_affine(mod)
            per = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            m, b = np.diag(np.repeat(scale, per)), np.repeat(shift, per)
            steps.append(("affine", m, b, a))
            a = m @ a + b
        elif isinstance(mod, nn.AdaptiveMaxPool2d):
            m, shape = adaptive_maxpool_matrix(a, shape, mod)
            steps.append(("select", m))
            a = m @ a
        elif isinstance(mod, _ACTS):
            a = _activation(mod, a, beta)
        elif isinstance(mod, (nn.Flatten, *_SKIP)):
            pass
        elif isinstance(mod, nets.Normalize):
            mean = np.repeat(mod.mean.double().numpy().reshape(-1), np.prod(shape[1:]))
            std = np.repeat(mod.std.double().numpy().reshape(-1), np.prod(shape[1:]))
            a = (a - mean) / std
        elif isinstance(mod, nn.MaxPool2d):
            m, shape = maxpool_matrix(a, shape, mod)
            steps.append(("select", m))
            a = m @ a
        elif isinstance(mod, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            m, shape = avgpool_matrix(shape, mod)
            steps.append(("avg", m, a))
            a = m @ a
        elif isinstance(mod, nets.BasicBlock):
            m1, b1, s1 = folded(mod.conv1, mod.bn1, shape)
            h1 = _activation(mod.relu1, m1 @ a + b1, beta)
            m2, b2, s2 = folded(mod.conv2, mod.bn2, s1)
            main = m2 @ h1 + b2
            if isinstance(mod.shortcut, nets.ChannelPadShortcut):
                key = (id(mod.shortcut), shape)
                if key not in cache:
                    cache[key] = shortcut_matrix(shape, mod.shortcut.stride, mod.shortcut.pad)[0]
                msc = cache[key]
            else:
                msc = np.eye(a.size)
            short = msc @ a
            steps.append(("block", (m1, b1, a), (m2, b2, h1), msc, main, short))
            a, shape = _activation(mod.relu2, main + short, beta), s2
        else:
            raise TypeError(type(mod))
        i += 1
    return a, steps, shape


def backward(steps, r, rule, opts):
    """``rule``: a rule name, or a composite — one ``(name, options)`` per affine step in
    forward order (networks without residual blocks)."""
    per_layer = isinstance(rule, (list, tuple))
    n_affine = sum(step[0] == "affine" for step in steps)
    for step in reversed(steps):
        kind = step[0]
        if kind == "affine":
            _, m, b, a = step
            n_affine -= 1
            if per_layer:
                name, extra = rule[n_affine]
                r = rule_relevance(name, m, b, a, r, {**opts, **extra})
            else:
                r = rule_relevance(rule, m, b, a, r, opts)
        elif kind == "select":
            r = step[1].T @ r
        elif kind == "avg":
            _, m, a = step
            contrib = m * a[None, :]
            z = contrib.sum(1)
            r = contrib.T @ (r / (z + opts["stabilizer"] * sign0(z)))
        elif kind == "block":
            _, (m1, b1, a), (m2, b2, h1), msc, main, short = step
            r_main, r_short = proportional([main, short], r, opts["stabilizer"])
            r_h1 = rule_relevance(rule, m2, b2, h1, r_main, opts)
            r = rule_relevance(rule, m1, b1, a, r_h1, opts) + msc.T @ r_short
    return r


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def reference_lrp(modules, x, rule="epsilon", layer=None, *, epsilon=0.1, gamma=0.1, alpha=1.0,
                  beta=0.0, stabilizer=1e-6, seed="logit", target_mode="predictive",
                  inner="max", target=None, surrogate_beta=None):
    """Heatmaps ``[S, B, H, W]`` of S sample networks (float64 numpy).

    ``modules``: one ``nn.Sequential`` (nested ones are opened) or list of modules per
    posterior sample. ``x``: ``[B, C, H, W]`` array.
    Options mean what they mean for :func:`bayeslrp.lrp.explain`.
    """
    opts = dict(epsilon=epsilon, gamma=gamma, alpha=alpha, beta=beta, stabilizer=stabilizer)
    modules = [chain_of(net) for net in modules]
    x = np.asarray(x, dtype=np.float64)
    n_img = x.shape[0]
    stop, is_output = cut_position(modules[0], layer)
    # classes for the output layer: always from the true (non-surrogate) network
    full_stop, _ = cut_position(modules[0], None)
    caches = [{} for _ in modules]
    logits = np.array([[forward(net, x[b], full_stop, cache=caches[s])[0] for b in range(n_img)]
                       for s, net in enumerate(modules)])
    if target is not None:
        chosen = np.broadcast_to(np.asarray(target), (len(modules), n_img))
    elif target_mode == "per_sample_argmax":
        chosen = logits.argmax(-1)
    else:
        mean = np.mean([[_softmax(l) for l in row] for row in logits], axis=0)
        chosen = np.broadcast_to(mean.argmax(-1), (len(modules), n_img))
    out = np.zeros((len(modules), n_img, x.shape[2], x.shape[3]))
    for s, net in enumerate(modules):
        for b in range(n_img):
            h, steps, shape = forward(net, x[b], stop, surrogate_beta, cache=caches[s])
            r = np.zeros_like(h)
            if is_output or inner == "max":
                if is_output:
                    k = int(chosen[s, b])
                    mask = np.zeros_like(h)
                    mask[k] = 1.0
                elif len(shape) == 1:
                    k = int(np.argmax(h)) if target is None else int(np.asarray(target)[b])
                    mask = np.zeros_like(h)
                    mask[k] = 1.0
                else:
                    hc = h.reshape(shape)
                    k = (int(np.argmax(hc.sum(axis=(1, 2)))) if target is None
                         else int(np.asarray(target)[b]))
                    mask = np.zeros(shape)
                    mask[k] = 1.0
                    mask = mask.reshape(-1)
                r = mask * (h if seed == "logit" else 1.0)
            else:
                r = h.copy() if seed == "logit" else np.ones_like(h)
            rin = backward(steps, r, rule, opts)
            out[s, b] = rin.reshape(x.shape[1:]).sum(0)
    return out


# ----------------------------------------------------------------------------- test fixtures
def randomize_batchnorm(net, gen, shift=0.2):
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    import torch
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(shift * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.bias.copy_(shift * torch.randn(m.num_features, generator=gen))
    return net


def zero_biases(net):
    """Remove every bias (Linear/Conv bias, BatchNorm shift and running mean)."""
    import torch
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.zero_()
                m.bias.zero_()
    return net


def double_ensemble(modules):
    """A float64 Ensemble of ``modules`` (which must come from ``bayeslrp.nets.build``)."""
    from bayeslrp import Ensemble
    ens = Ensemble.from_modules(modules)
    params = {k: (v.double() if v.is_floating_point() else v) for k, v in ens.params.items()}
    return Ensemble(ens.spec, params)


def _one_torch_thread():
    """Run a test with one torch thread, restoring the previous setting afterwards.

    These tests use tiny tensors; on a loaded machine a second OpenMP thread makes each small
    operation wait for a free core, which slowed this suite down about tenfold.
    """
    import torch
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


try:
    import pytest as _pytest

    one_torch_thread = _pytest.fixture(autouse=True)(_one_torch_thread)
except ImportError:  # pragma: no cover - the oracle itself does not need pytest
    pass
