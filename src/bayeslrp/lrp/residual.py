"""The residual block of ``bayeslrp.nets`` (ResNet-20) for LRP (SPEC §4).

``BasicBlock``: the residual add splits relevance in proportion to the main-path and shortcut
summands; each path is then explained by its own layers.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .. import nets
from ..errors import BayesLRPError
from .layers import ACTIVATIONS, Activation, Dense, Node, Passthrough


class ChannelPadShortcut(Node):
    """Option-A shortcut: stride subsampling and zero channel padding (a selection)."""

    def __init__(self, module: nets.ChannelPadShortcut, position: int):
        self.module, self.first, self.last = module, position, position

    def forward(self, a, ctx):
        st, pad = self.module.stride, self.module.pad
        out = a[..., ::st, ::st] if st != 1 else a
        if pad:
            out = F.pad(out, (0, 0, 0, 0, pad // 2, pad // 2))
        return out, a.shape

    def relevance(self, r, record, ctx):
        st, pad = self.module.stride, self.module.pad
        c_in = record[2]
        sel = r[:, :, pad // 2: pad // 2 + c_in]
        if st == 1:
            return sel
        out = r.new_zeros(record)
        out[..., ::st, ::st] = sel
        return out


class Block(Node):
    """``BasicBlock``: ``relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, block: nets.BasicBlock, position: int, name: str | None = None):
        p = str(position) if name is None else name
        self.first = self.last = position
        self.conv1 = Dense(_check_conv(block.conv1, f"{p}.conv1"), f"{p}.conv1", position,
                           _check_bn(block.bn1, f"{p}.bn1"), f"{p}.bn1")
        self.act1 = Activation(_check_act(block.relu1, f"{p}.relu1"), position)
        self.conv2 = Dense(_check_conv(block.conv2, f"{p}.conv2"), f"{p}.conv2", position,
                           _check_bn(block.bn2, f"{p}.bn2"), f"{p}.bn2")
        self.act2 = Activation(_check_act(block.relu2, f"{p}.relu2"), position)
        sc = block.shortcut
        if isinstance(sc, nn.Identity):
            self.shortcut: Node = Passthrough(position)
        elif isinstance(sc, nets.ChannelPadShortcut):
            self.shortcut = ChannelPadShortcut(sc, position)
        else:
            raise BayesLRPError(f"unsupported module {type(sc).__name__} at position {p}.shortcut "
                                "for LRP; supported shortcuts: Identity, ChannelPadShortcut")

    def forward(self, a, ctx):
        z1, rec1 = self.conv1.forward(a, ctx)
        h1, _ = self.act1.forward(z1, ctx)
        main, rec2 = self.conv2.forward(h1, ctx)
        short, rec_sc = self.shortcut.forward(a, ctx)
        total = main + short
        out, _ = self.act2.forward(total, ctx)
        return out, (rec1, rec2, rec_sc, main, short)

    def relevance(self, r, record, ctx):
        rec1, rec2, rec_sc, main, short = record
        r_main, r_short = ctx.rule.proportional([main, short], r)
        r_a = self.conv1.relevance(self.conv2.relevance(r_main, rec2, ctx), rec1, ctx)
        return r_a + self.shortcut.relevance(r_short, rec_sc, ctx)


def _check_conv(m: nn.Module, where: str) -> nn.Conv2d:
    if not isinstance(m, nn.Conv2d):
        raise BayesLRPError(f"unsupported module {type(m).__name__} at position {where} for LRP")
    return m


def _check_bn(m: nn.Module, where: str) -> nn.BatchNorm2d | None:
    if isinstance(m, nn.Identity):
        return None
    if not isinstance(m, nn.BatchNorm2d):
        raise BayesLRPError(f"unsupported module {type(m).__name__} at position {where} for LRP")
    return m


def _check_act(m: nn.Module, where: str) -> nn.Module:
    if not isinstance(m, ACTIVATIONS):
        raise BayesLRPError(f"unsupported module {type(m).__name__} at position {where} for LRP")
    return m
