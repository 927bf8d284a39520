"""The paper's architectures as plain ``torch.nn`` modules (SPEC §2).

Every network is an ``nn.Sequential`` whose positions are the user-facing layer names
(``layer=5``). Each activation is its own module instance, so LRP can walk the module list.
The builder records how the network was made in ``net.bayeslrp_spec`` so an
:class:`~bayeslrp.ensemble.Ensemble` can rebuild it from a saved file.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .errors import BayesLRPError

LEAKY_SLOPE = 0.01
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
#: The statistics the original's CIFAR code (bayesian-torch's example) normalises with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``normalize`` choices of resnet20: per-channel (mean, std) of its first layer.
NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "cifar": (CIFAR_MEAN, CIFAR_STD)}


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` inside the model, so data and attacks stay in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ChannelPadShortcut(nn.Module):
    """Option-A ResNet shortcut: subsample by ``stride`` and zero-pad the new channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.pad = out_channels - in_channels
        if self.pad < 0 or self.pad % 2:
            raise ValueError("option-A shortcut needs out_channels - in_channels even and >= 0")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            half = self.pad // 2
            x = nn.functional.pad(x, (0, 0, 0, 0, half, half))
        return x


class BasicBlock(nn.Module):
    """CIFAR ResNet basic block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = ChannelPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(main + self.shortcut(x))


def _fc2(hidden: int = 512, in_shape=(1, 28, 28), n_classes: int = 10) -> nn.Sequential:
    n_in = int(torch.tensor(in_shape).prod())
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_in, hidden),
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.Linear(hidden, n_classes),
    )


def _conv(
    hidden: int = 512, channels: int = 32, in_shape=(1, 28, 28), n_classes: int = 10
) -> nn.Sequential:
    c_in, h, w = in_shape
    features = nn.Sequential(
        nn.Conv2d(c_in, channels, 5),
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.MaxPool2d(2),
        nn.Conv2d(channels, hidden, 5),
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.MaxPool2d(2, stride=1),
        nn.Flatten(),
    )
    with torch.no_grad():
        n_flat = features(torch.zeros(1, c_in, h, w)).shape[1]
    return nn.Sequential(*features, nn.Linear(n_flat, n_classes))


class GlobalAvgPool2d(nn.AdaptiveAvgPool2d):
    """``AdaptiveAvgPool2d(1)`` whose CUDA forward is a mean over H, W: the mean's backward is
    deterministic, adaptive pooling's CUDA backward is refused under
    ``torch.use_deterministic_algorithms`` (:mod:`bayeslrp.devices`). The CPU keeps torch's
    adaptive pooling (its bits are those of earlier runs)."""

    def __init__(self):
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            return x.mean((-2, -1), keepdim=True)
        return super().forward(x)


def _normalization(normalize: bool | str, c_in: int) -> nn.Module:
    """The first layer of resnet20: ``"imagenet"``, ``"cifar"`` or ``"none"`` (True: cifar,
    the meaning of the former boolean option; False: none)."""
    if isinstance(normalize, bool):
        normalize = "cifar" if normalize else "none"
    if normalize == "none":
        return nn.Identity()
    if normalize not in NORMALIZATIONS:
        raise TypeError(f"normalize must be one of {', '.join([*NORMALIZATIONS, 'none'])}; "
                        f"got {normalize!r}")
    mean, std = NORMALIZATIONS[normalize]
    if c_in > len(mean):
        raise TypeError(f"{normalize} statistics have {len(mean)} channels; images have {c_in}")
    return Normalize(mean[:c_in], std[:c_in])


def _resnet20(in_shape=(3, 32, 32), n_classes: int = 10,
              normalize: bool | str = "imagenet") -> nn.Sequential:
    c_in = in_shape[0]
    layers: list[nn.Module] = [_normalization(normalize, c_in)]
    layers += [nn.Conv2d(c_in, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    channels = 16
    for width, stride in ((16, 1), (32, 2), (64, 2)):
        for block in range(3):
            layers.append(BasicBlock(channels, width, stride if block == 0 else 1))
            channels = width
    layers += [GlobalAvgPool2d(), nn.Flatten(), nn.Linear(64, n_classes)]
    net = nn.Sequential(*layers)
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight)
    return net


_BUILDERS: dict[str, Callable[..., nn.Sequential]] = {
    "fc2": _fc2,
    "conv": _conv,
    "resnet20": _resnet20,
}

ARCHITECTURES = tuple(_BUILDERS)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_sizes(name: str, kwargs: dict) -> None:
    """One line for a width, class count or input shape no network can have."""
    from bayeslrp import catalog

    for key in ("hidden", "channels", "n_classes"):
        if key in kwargs and not _positive_int(kwargs[key]):
            raise BayesLRPError(f"{key} must be a positive integer; got {kwargs[key]!r}")
    shape = kwargs.get("in_shape")
    if shape is not None:
        if len(shape) != 3 or not all(_positive_int(v) for v in shape):
            raise BayesLRPError(f"in_shape must be three positive integers (C, H, W); got "
                                f"{list(shape)!r}")
        if name in catalog.ARCHS and not catalog.arch_fits(name, tuple(shape)):
            raise BayesLRPError(f"arch {name} does not fit images of shape {list(shape)}")
    size = catalog.parameter_count(name, tuple(shape or (1, 28, 28)), kwargs.get("hidden"),
                                   kwargs.get("channels"), kwargs.get("n_classes", 10))
    if size is not None and size > catalog.MAX_PARAMETERS:
        raise BayesLRPError(f"the {name} net would have {size:.3g} parameters "
                            f"({4 * size / 2**30:.3g} GiB), more than the "
                            f"{catalog.MAX_PARAMETERS:.3g} allowed; use a smaller width")


def build(name: str, seed: int | None = 0, **kwargs: Any) -> nn.Sequential:
    """Build one of the paper's networks.

    Parameters
    ----------
    name : {"fc2", "conv", "resnet20"}
        ``fc2``: two hidden fully connected layers (``hidden``, default 512).
        ``conv``: two convolutions (``channels`` = 32, ``hidden`` = 512) and a linear head.
        ``resnet20``: He et al.'s CIFAR ResNet-20 with option-A shortcuts; ``normalize``
        (``"imagenet"`` default, as the original's code; ``"cifar"``; ``"none"``) is its
        first layer, so images, attacks and clamps stay in [0, 1].
    seed : int or None
        Seed of the weight initialisation (``None``: torch's global generator).
    **kwargs
        Builder options: ``hidden``, ``channels``, ``in_shape`` (C, H, W), ``n_classes``,
        ``normalize`` (resnet20).

    Returns
    -------
    torch.nn.Sequential
        The network in eval mode, with ``bayeslrp_spec`` recording how to rebuild it.
    """
    if name not in _BUILDERS:
        raise BayesLRPError(f"unknown architecture {name!r}; choose one of {', '.join(_BUILDERS)}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()}
    _check_sizes(name, kwargs)
    try:
        if seed is None:
            net = _BUILDERS[name](**kwargs)
        else:
            with torch.random.fork_rng(devices=[]):
                # the CPU generator only: torch.manual_seed would also reseed every CUDA
                # device, which fork_rng(devices=[]) does not restore
                torch.default_generator.manual_seed(seed)
                net = _BUILDERS[name](**kwargs)
    except TypeError as exc:
        raise BayesLRPError(f"bad options for architecture {name!r}: {exc}") from None
    net.bayeslrp_spec = {"arch": name, "kwargs": {k: (list(v) if isinstance(v, tuple) else v)
                                                  for k, v in kwargs.items()}}
    return net.eval()


def build_from_spec(spec: dict) -> nn.Sequential:
    """Rebuild a network from its ``bayeslrp_spec`` (weights are not restored)."""
    return build(spec["arch"], seed=None, **spec.get("kwargs", {}))


def spec_of(net: nn.Module) -> dict:
    """The ``bayeslrp_spec`` of a network made by :func:`build`."""
    spec = getattr(net, "bayeslrp_spec", None)
    if spec is None:
        raise BayesLRPError("this network was not made by bayeslrp.nets.build; build it there")
    return spec


def learnable_layers(net: nn.Module) -> list[int]:
    """Positions of the learnable layers in the Sequential (the paper's layer indices).

    ``fc2`` → ``[1, 3, 5]``, ``conv`` → ``[0, 3, 7]``; for ``resnet20`` the first convolution,
    each residual block and the classifier. Any other network: the positions of its chain of
    modules as LRP walks it (:func:`bayeslrp.lrp.handlers.learnable_positions`; nested
    Sequentials opened, a custom ``forward`` traced; unfolded BatchNorms count).
    """
    from .lrp.handlers import learnable_positions, network_entries

    return learnable_positions(network_entries(net))
