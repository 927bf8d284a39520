"""The paper's architectures as plain ``torch.nn`` modules (SPEC §2).

Every network is an ``nn.Sequential`` whose positions are the user-facing layer names
(``layer=5``). Each activation is its own module instance, so LRP can walk the module list.
The builder records how the network was made in ``net.bayeslrp_spec`` so an
:class:`~bayeslrp.ensemble.Ensemble` can rebuild it from a saved file.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Sequence

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


#: Architectures added by :func:`register`: name -> (builder, learnable layers, factory path).
_REGISTERED: dict[str, tuple[Callable[..., nn.Module], tuple[int, ...] | None, str | None]] = {}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_VERSION = 0


def register(name: str, builder: Callable[..., nn.Module],
             learnable_layers: Sequence[int] | None = None, *, replace: bool = False) -> None:
    """Make ``builder`` an architecture of :func:`build` and of a YAML grid (``arch: NAME``).

    Parameters
    ----------
    name : str
        The architecture's name (letters, digits, ``_.-``; not a built-in one).
    builder : callable
        ``builder(**kwargs) -> nn.Module``. When it can be imported back by
        ``module:qualname`` (a module-level function), its path is recorded with the
        networks it builds, so a saved model loads in a process that has not registered it.
    learnable_layers : sequence of int, optional
        The layer names reported by :func:`learnable_layers` and explained by a grid's
        ``layers: all``: positions in LRP's chain of the network, a subset of what
        :func:`learnable_layers` reports without it (default: all of those).
    replace : bool
        Allow re-registering a name with another builder.
    """
    from .factories import factory_path

    if not isinstance(name, str) or not _NAME.match(name) or ":" in name:
        raise BayesLRPError(f"architecture name {name!r} must be letters, digits and _.- "
                            f"(starting with a letter)")
    if name in _BUILDERS:
        raise BayesLRPError(f"{name!r} is a built-in architecture; choose another name")
    if not callable(builder):
        raise BayesLRPError(f"the builder of architecture {name!r} is not callable")
    if name in _REGISTERED and not replace and _REGISTERED[name][0] is not builder:
        raise BayesLRPError(f"architecture {name!r} is already registered; pass replace=True")
    layers = None if learnable_layers is None else tuple(int(i) for i in learnable_layers)
    try:
        path = factory_path(builder)
    except BayesLRPError:
        path = None  # in-process only: a saved model then needs module= or factory= to load
    _REGISTERED[name] = (builder, layers, path)
    global _VERSION
    _VERSION += 1


def registry_version() -> int:
    """A counter bumped by every :func:`register` (keys caches of registered networks)."""
    return _VERSION


def registered() -> tuple[str, ...]:
    """Names of the architectures added by :func:`register`."""
    return tuple(_REGISTERED)


def build(name: str, seed: int | None = 0, **kwargs: Any) -> nn.Module:
    """Build one of the paper's networks (or a :func:`register`-ed architecture).

    Parameters
    ----------
    name : {"fc2", "conv", "resnet20"} or a registered name
        ``fc2``: two hidden fully connected layers (``hidden``, default 512).
        ``conv``: two convolutions (``channels`` = 32, ``hidden`` = 512) and a linear head.
        ``resnet20``: He et al.'s CIFAR ResNet-20 with option-A shortcuts; ``normalize``
        (``"imagenet"`` default, as the original's code; ``"cifar"``; ``"none"``) is its
        first layer, so images, attacks and clamps stay in [0, 1].
    seed : int or None
        Seed of the weight initialisation (``None``: torch's global generator).
    **kwargs
        Builder options: ``hidden``, ``channels``, ``in_shape`` (C, H, W), ``n_classes``,
        ``normalize`` (resnet20); a registered builder's own (JSON values).

    Returns
    -------
    torch.nn.Module
        The network in eval mode, with ``bayeslrp_spec`` recording how to rebuild it.
    """
    if name in _REGISTERED:
        return _build_registered(name, seed, kwargs)
    if name not in _BUILDERS:
        known = ", ".join([*_BUILDERS, *_REGISTERED])
        raise BayesLRPError(f"unknown architecture {name!r}; choose one of {known} (or "
                            f"register one with bayeslrp.nets.register)")
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


def _build_registered(name: str, seed: int | None, kwargs: dict) -> nn.Module:
    from .factories import call_builder, json_kwargs

    builder, _, path = _REGISTERED[name]
    kwargs = json_kwargs(kwargs, f"options of architecture {name!r}")
    net = call_builder(builder, kwargs, seed, f"architecture {name!r}")
    net.bayeslrp_spec = {"arch": name, "kwargs": kwargs, **({"factory": path} if path else {})}
    return net.eval()


def build_from_spec(spec: dict) -> nn.Module:
    """Rebuild a network from its ``bayeslrp_spec`` (weights are not restored).

    ``{"arch": NAME, "kwargs": ...}`` builds a built-in or registered architecture (a
    registered one not registered in this process falls back on its recorded ``factory``);
    ``{"factory": "pkg.mod:fn", "kwargs": ...}`` calls the factory.
    """
    from .factories import build_factory

    name, kwargs = spec.get("arch"), spec.get("kwargs", {})
    # A user's network is built under a fixed seed (its weights are replaced anyway) so that
    # loading one leaves torch's global generator alone; the built-in ones as they always were.
    if name in _BUILDERS:
        return build(name, seed=None, **kwargs)
    if name is not None and name in _REGISTERED:
        return build(name, seed=0, **kwargs)
    if spec.get("factory") is None:
        raise BayesLRPError(f"architecture {name!r} is not registered in this process; "
                            f"register it with bayeslrp.nets.register, or pass module=")
    net = build_factory(spec["factory"], kwargs, seed=0)
    net.bayeslrp_spec = dict(spec)
    return net


def spec_of(net: nn.Module) -> dict | None:
    """How ``net`` is rebuilt: its ``bayeslrp_spec`` (set by :func:`build`, a registered
    builder or :meth:`Ensemble.from_module` with a factory), or ``None``."""
    spec = getattr(net, "bayeslrp_spec", None)
    return None if spec is None else dict(spec)


def learnable_layers(net: nn.Module) -> list[int]:
    """Positions of the learnable layers in the Sequential (the paper's layer indices).

    ``fc2`` → ``[1, 3, 5]``, ``conv`` → ``[0, 3, 7]``; for ``resnet20`` the first convolution,
    each residual block and the classifier. Any other network: the positions of its chain of
    modules as LRP walks it (:func:`bayeslrp.lrp.handlers.learnable_positions`; nested
    Sequentials opened, a custom ``forward`` traced; unfolded BatchNorms count).
    """
    from .lrp.handlers import learnable_positions, network_entries

    name = (getattr(net, "bayeslrp_spec", None) or {}).get("arch")
    if name in _REGISTERED and _REGISTERED[name][1] is not None:
        return list(_REGISTERED[name][1])
    return learnable_positions(network_entries(net))
