"""The config gate's look at a model's network before anything runs.

A built-in architecture is known from :mod:`bayeslrp.catalog` without torch. A registered
name or a factory ``"package.module:function"`` (YAML ``arch: {factory, kwargs}``) is built
once here, with a fixed seed: the factory must import, return an ``nn.Module``, take one
image of the data's shape (no gradients) to ``[1, classes]`` logits, and be explainable by
LRP (:func:`bayeslrp.lrp.check_network`); ``init_weights`` must load into it. Every failure is
a :class:`~bayeslrp.plugins.spec.ConfigIssue` at the key, so ``load_config`` (and the CLI, exit
2) stops before any stage. Results are cached per process.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from bayeslrp.errors import BayesLRPError, one_line
from bayeslrp.plugins.spec import ConfigIssue

__all__ = ["build_network", "check_arch_name", "check_model_arch", "learnable_layers", "load_weights",
           "network_flops", "weights_param"]

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


def _kwargs_text(kwargs: dict | None) -> str:
    return json.dumps(kwargs or {}, sort_keys=True)


def build_network(arch: str, kwargs: dict | None, seed: int | None):
    """The network of a registered name or a factory path (``bayeslrp_spec`` recorded)."""
    from bayeslrp import nets
    from bayeslrp.factories import build_factory

    if ":" not in arch:
        return nets.build(arch, seed=seed, **(kwargs or {}))
    net = build_factory(arch, kwargs, seed=seed)
    net.bayeslrp_spec = {"factory": arch, "kwargs": dict(kwargs or {})}
    return net


def _version(arch: str) -> int:
    """The registry's version for a registered name (a re-registered builder is rebuilt)."""
    if ":" in arch:
        return 0
    from bayeslrp import nets

    return nets.registry_version()


@lru_cache(maxsize=64)
def _layers(arch: str, kwargs_text: str, version: int) -> tuple[int, ...]:
    from bayeslrp import nets

    return tuple(nets.learnable_layers(build_network(arch, json.loads(kwargs_text), seed=0)))


def learnable_layers(arch: str, kwargs: dict | None) -> tuple[int, ...]:
    """Layer names of a registered or factory architecture (built once per process)."""
    return _layers(arch, _kwargs_text(kwargs), _version(arch))


@lru_cache(maxsize=64)
def _probe(arch: str, kwargs_text: str, shape: tuple, n_classes: int, version: int) -> int:
    """Build, check and count the FLOPs of one forward; raise BayesLRPError."""
    import torch

    from bayeslrp import lrp
    from bayeslrp.experiment.costs import count_flops

    net = build_network(arch, json.loads(kwargs_text), seed=0)
    lrp.check_network(net)  # first: it names an unsupported module, a forward would not
    _check_layer_names(arch, net)
    try:
        with torch.no_grad():
            dtype = next((p.dtype for p in net.parameters()), torch.float32)
            out = net(torch.zeros((1, *shape), dtype=dtype))
    except Exception as exc:  # the user's forward
        raise BayesLRPError(f"{arch} cannot take images of shape {list(shape)}: "
                            f"{type(exc).__name__}: {one_line(exc, 200)}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, n_classes):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise BayesLRPError(f"{arch} returns {got} for one image; the data have {n_classes} "
                            f"classes, so it must return [batch, {n_classes}] logits")
    return count_flops(net, shape)


def _check_layer_names(arch: str, net) -> None:
    """A registered ``learnable_layers`` must name learnable positions of LRP's chain."""
    from bayeslrp import nets
    from bayeslrp.lrp.handlers import learnable_positions, network_entries

    chain = learnable_positions(network_entries(net))
    names = nets.learnable_layers(net)
    if not names or not set(names) <= set(chain):
        raise BayesLRPError(f"{arch}'s learnable_layers {list(names)} are not learnable "
                            f"positions of its LRP chain {list(chain)}")


def network_flops(spec: Any, shape, n_classes: int) -> int:
    """FLOPs of one forward of a model spec's registered or factory network."""
    return _probe(spec.arch, _kwargs_text(spec.arch_kwargs), tuple(shape), int(n_classes),
                  _version(spec.arch))


def check_model_arch(spec: Any, data: Any) -> None:
    """Every check of a model's network the config gate makes (see the module docstring).

    Raises
    ------
    ConfigIssue
        At ``arch``, ``arch_kwargs`` or ``init_weights``.
    """
    from bayeslrp import catalog

    facts = data.facts
    if spec.arch not in catalog.ARCHS:
        check_arch_name(spec)
        try:
            json.dumps(spec.arch_kwargs or {}, allow_nan=False)
            network_flops(spec, data.image_shape, facts.n_classes)
        except (TypeError, ValueError) as exc:
            raise ConfigIssue(("arch_kwargs",), f"must be JSON values: {exc}") from None
        except BayesLRPError as exc:
            raise ConfigIssue(("arch",), str(exc)) from None
    if spec.init_weights is not None:
        try:
            load_weights(spec.init_weights, _network_of(spec, data))
        except BayesLRPError as exc:
            raise ConfigIssue(("init_weights",), str(exc)) from None


def check_arch_name(spec: Any) -> None:
    """Refuse (ConfigIssue at ``arch``) a name that is neither built-in, registered nor a
    factory path; torch is imported only for a non-built-in name."""
    from bayeslrp import catalog

    if spec.arch in catalog.ARCHS or spec.is_factory:
        return
    from bayeslrp import nets

    if spec.arch not in nets.registered():
        raise ConfigIssue(("arch",), f"unknown arch {spec.arch!r}; use one of "
                                     f"{', '.join([*catalog.ARCHS, *nets.registered()])}, "
                                     f"or {{factory: 'package.module:function', kwargs: {{...}}}}")


def _network_of(spec: Any, data: Any):
    from bayeslrp.experiment.stages.train import build_model_net

    return build_model_net(spec.model_dump(mode="json", exclude={"init_weights"}),
                           list(data.image_shape),
                           data.facts.n_classes, 0)


@lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    from bayeslrp.fileio import sha256_file

    return sha256_file(path)


def _weights_file(path: str) -> Path:
    file = Path(path).expanduser()
    if file.suffix not in WEIGHT_SUFFIXES:
        raise BayesLRPError(f"init_weights {path} must be a .safetensors file or a .pt/.pth "
                            f"state dict")
    if not file.is_file():
        raise BayesLRPError(f"init_weights {path} does not exist")
    return file.resolve()


def weights_param(path: str) -> dict[str, str]:
    """The key param of an ``init_weights`` file: its absolute path and sha256."""
    file = _weights_file(path)
    stat = file.stat()
    return {"path": str(file), "sha256": _sha256(str(file), stat.st_mtime_ns, stat.st_size)}


def read_weights(path: str, sha256: str | None = None) -> dict:
    """The state dict in ``path`` (safetensors, or ``torch.load(weights_only=True)``)."""
    import torch
    from safetensors.torch import load as st_load

    file = _weights_file(path)
    data = file.read_bytes()
    if sha256 is not None:
        from bayeslrp.fileio import sha256_bytes

        if sha256_bytes(data) != sha256:
            raise BayesLRPError(f"init_weights {file} changed since the config was read; "
                                f"run again")
    try:
        if file.suffix == ".safetensors":
            state = st_load(data)
        else:
            import io

            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and torch.load raise many kinds
        hint = ("" if file.suffix == ".safetensors" else
                " (read with torch.load(weights_only=True): save net.state_dict(), not the "
                "module)")
        raise BayesLRPError(f"init_weights {file} cannot be read{hint}: {type(exc).__name__}: "
                            f"{one_line(exc, 160)}") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise BayesLRPError(f"init_weights {file} is not a state dict (names to tensors)")
    return state


def load_weights(path: str, net, sha256: str | None = None):
    """Load the state dict in ``path`` into ``net`` (every name and shape must match)."""
    state = read_weights(path, sha256)
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if want != got:
        name = next(n for n in sorted(set(want) | set(got)) if want.get(n) != got.get(n))
        raise BayesLRPError(f"init_weights {path} does not fit the architecture: {name} is "
                            f"{list(got[name]) if name in got else 'missing'} in the file, "
                            f"{list(want[name]) if name in want else 'absent'} in the network")
    net.load_state_dict(state)
    return net
