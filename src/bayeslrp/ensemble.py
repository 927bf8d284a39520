"""The Ensemble: one architecture plus stacked parameters ``name -> Tensor[S, ...]``.

Deterministic and adversarially trained models have S = 1; VI and HMC models have one entry per
kept posterior sample. Everything downstream (attacks, LRP, metrics) takes an Ensemble and never
asks how it was trained. "Using n samples" means the first n.
"""
from __future__ import annotations

import copy
import json
import weakref
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn
from torch.func import functional_call, vmap

from . import nets
from .errors import BayesLRPError
from .ensemble_format import (EXTRAS_FILE, FORMAT_VERSION, META_FILE, PARAMS_FILE,
                              ModelFileError)
from .fileio import atomic_write_bytes, atomic_write_json, sha256_bytes

__all__ = ["DEFAULT_MEMORY_BUDGET", "Ensemble", "FORMAT_VERSION", "ModelFileError"]
DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of activations per forward chunk


class Ensemble:
    """An architecture and S stacked parameter sets.

    Parameters
    ----------
    spec : dict or None
        How to rebuild the architecture: ``{"arch": NAME, "kwargs": {...}}`` (see
        :func:`bayeslrp.nets.build`), ``{"factory": "pkg.mod:fn", "kwargs": {...}}``, or None
        with ``module``.
    params : dict of str to Tensor
        The module's ``state_dict`` entries (parameters and buffers), each with a leading sample
        dimension S.
    meta : dict, optional
        JSON-serialisable facts about how the ensemble was made (method, seeds, diagnostics).
    extras : dict of str to Tensor, optional
        Additional tensors saved alongside (e.g. VI's variational means and scales).
    module : nn.Module, optional
        The architecture itself (a copy is kept); ``spec`` may then be None (a saved copy
        then loads with ``module=`` or ``factory=``).
    """

    def __init__(self, spec: dict | None, params: dict[str, torch.Tensor],
                 meta: dict | None = None, extras: dict[str, torch.Tensor] | None = None, *,
                 module: nn.Module | None = None):
        self.spec = copy.deepcopy(spec)
        if module is not None:
            self.module = copy.deepcopy(module).eval()
        elif spec is None:
            raise BayesLRPError("an Ensemble needs an architecture spec or a module")
        else:
            self.module = nets.build_from_spec(self.spec)
        _check_fit(self.module, params, self._arch_name())
        self.params = dict(params)
        self.meta = dict(meta or {})
        self.extras = dict(extras or {})
        device = next(iter(self.params.values())).device
        self.module.to(device)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_module(cls, net: nn.Module, meta: dict | None = None, *,
                    factory: str | Callable[..., nn.Module] | None = None,
                    kwargs: dict | None = None) -> "Ensemble":
        """An S = 1 ensemble holding a copy of ``net``'s current weights.

        Parameters
        ----------
        net : nn.Module
            Any classifier (``[B, C, H, W]`` images to ``[B, classes]`` logits).
        meta : dict, optional
            JSON facts about how it was made.
        factory : str or callable, optional
            How to rebuild the architecture in another process: an import path
            ``"package.module:function"`` (or a module-level function) that
            ``factory(**kwargs)`` builds a network with ``net``'s parameter names and shapes.
            Default: what :func:`bayeslrp.nets.build` / a registered builder recorded, or
            none (then :meth:`load` needs ``module=`` or ``factory=``).
        kwargs : dict, optional
            The factory's keyword arguments (JSON values).
        """
        return cls.from_modules([net], meta=meta, factory=factory, kwargs=kwargs)

    @classmethod
    def from_modules(cls, modules: Sequence[nn.Module], meta: dict | None = None, *,
                     factory: str | Callable[..., nn.Module] | None = None,
                     kwargs: dict | None = None) -> "Ensemble":
        """An S = len(modules) ensemble; all modules must share one architecture (the same
        parameter and buffer names and shapes). ``factory``/``kwargs``: see :meth:`from_module`."""
        modules = list(modules)
        if not modules or not all(isinstance(m, nn.Module) for m in modules):
            raise BayesLRPError("an ensemble needs a list of one or more torch.nn.Module")
        states = [m.state_dict() for m in modules]
        if not states[0]:
            raise BayesLRPError(f"{type(modules[0]).__name__} has no parameters or buffers")
        shapes = _shapes(states[0])
        for j, state in enumerate(states[1:], start=1):
            if _shapes(state) != shapes:
                raise BayesLRPError(f"all modules of an ensemble must share one architecture: "
                                    f"module {j} differs from module 0 in "
                                    f"{_first_difference(shapes, _shapes(state))}")
        if any(nets.spec_of(m) != nets.spec_of(modules[0]) for m in modules[1:]):
            raise BayesLRPError("all modules of an ensemble must share one architecture spec")
        params = {name: torch.stack([s[name].detach().clone() for s in states])
                  for name in states[0]}
        if factory is not None:
            return cls(_factory_spec(factory, kwargs, modules[0]), params, meta=meta,
                       module=modules[0])
        if kwargs is not None:
            raise BayesLRPError("kwargs= is the factory's; pass factory= with it")
        return cls.from_params(modules[0], params, meta=meta)

    @classmethod
    def from_params(cls, net: nn.Module, params: dict[str, torch.Tensor],
                    meta: dict | None = None,
                    extras: dict[str, torch.Tensor] | None = None) -> "Ensemble":
        """An ensemble of ``net``'s architecture (and recorded spec) with stacked ``params``."""
        spec = nets.spec_of(net)
        built_in = spec is not None and spec.get("arch") in nets.ARCHITECTURES
        return cls(spec, params, meta=meta, extras=extras, module=None if built_in else net)

    # ------------------------------------------------------------------ basic facts
    @property
    def n_samples(self) -> int:
        """S, the number of stacked parameter sets."""
        return next(iter(self.params.values())).shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def __len__(self) -> int:
        return self.n_samples

    def _arch_name(self) -> str:
        if self.spec is None:
            return type(self.module).__name__
        return self.spec.get("arch") or self.spec["factory"]

    def _rebuilds(self) -> bool:
        """Whether copies rebuild the architecture from the spec (the built-in networks, as
        always) rather than copy the module (a user's: its factory is not called again)."""
        return self.spec is not None and self.spec.get("arch") in nets.ARCHITECTURES

    def _same_arch(self) -> dict:
        """Keywords that rebuild this ensemble's architecture."""
        return {} if self._rebuilds() else {"module": self.module}

    def __repr__(self) -> str:
        return f"Ensemble(arch={self._arch_name()!r}, S={self.n_samples}, method={self.meta.get('method')!r})"

    def resolve_n(self, n_samples: int | None) -> int:
        """Validate a requested sample count; ``None`` means all samples."""
        if n_samples is None:
            return self.n_samples
        if not 1 <= int(n_samples) <= self.n_samples:
            raise BayesLRPError(
                f"n_samples={n_samples} is not available: this ensemble has {self.n_samples}")
        return int(n_samples)

    def head(self, n_samples: int) -> "Ensemble":
        """The ensemble of the first ``n_samples`` samples (views, no copy)."""
        n = self.resolve_n(n_samples)
        return Ensemble(self.spec, {k: v[:n] for k, v in self.params.items()}, self.meta,
                        self.extras, **self._same_arch())

    def select(self, indices: Sequence[int]) -> "Ensemble":
        """The ensemble of the given sample indices (e.g. one posterior sample ``[j]``)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= self.n_samples:
            raise BayesLRPError(f"sample indices {list(indices)} out of range 0..{self.n_samples - 1}")
        return Ensemble(self.spec, {k: v[idx.to(v.device)] for k, v in self.params.items()},
                        self.meta, self.extras, **self._same_arch())

    def sample_params(self, j: int) -> dict[str, torch.Tensor]:
        """The state-dict of sample ``j``."""
        return {name: value[j] for name, value in self.params.items()}

    def sample_module(self, j: int) -> nn.Module:
        """A standalone copy of the architecture holding sample ``j``'s weights (eval mode)."""
        module = (nets.build_from_spec(self.spec) if self._rebuilds()
                  else copy.deepcopy(self.module)).to(self.device)
        module.load_state_dict(self.sample_params(j))
        return module.eval()

    def to(self, device: str | torch.device) -> "Ensemble":
        """A copy of the ensemble on ``device``."""
        moved = {k: v.to(device) for k, v in self.params.items()}
        extras = {k: v.to(device) for k, v in self.extras.items()}
        return Ensemble(self.spec, moved, self.meta, extras, **self._same_arch())

    # ------------------------------------------------------------------ forward passes
    def _activation_numel(self, x: torch.Tensor) -> int:
        """Sum of activation sizes of one image through the network (for chunking)."""
        key = tuple(x.shape[1:])
        cache = self.__dict__.setdefault("_act_cache", {})
        if key not in cache:
            total = 0

            def hook(_module, _inputs, output):
                nonlocal total
                if isinstance(output, torch.Tensor):
                    total += output[0].numel()

            handles = [m.register_forward_hook(hook) for m in self.module.modules()]
            try:
                with torch.no_grad():
                    dtype = next((p.dtype for p in self.module.parameters()), torch.float32)
                    self.module(torch.zeros((1, *key), device=self.device, dtype=dtype))
            finally:
                for handle in handles:
                    handle.remove()
            cache[key] = max(total, 1)
        return cache[key]

    def sample_chunks(self, n_samples: int, x: torch.Tensor,
                      memory_budget: int = DEFAULT_MEMORY_BUDGET) -> Iterator[slice]:
        """Slices of the sample axis so that one chunk's activations fit ``memory_budget``
        (raised on CUDA to a share of the device's memory, :func:`bayeslrp.devices.memory_budget`)."""
        from .devices import memory_budget as device_budget

        memory_budget = device_budget(self.device, memory_budget)
        per_sample = self._activation_numel(x) * x.shape[0] * 4
        step = max(1, min(n_samples, memory_budget // max(per_sample, 1)))
        # Equal chunks: a full chunk plus a small tail runs slower than two even ones.
        n_chunks = -(-n_samples // step)
        bounds = [i * n_samples // n_chunks for i in range(n_chunks + 1)]
        for start, stop in zip(bounds[:-1], bounds[1:]):
            yield slice(start, stop)

    def _forward_params(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Logits ``[s, B, C]`` of the stacked parameters ``params`` (:func:`forward_stacked`)."""
        return forward_stacked(self.module, params, x)

    def logits(self, x: torch.Tensor, n_samples: int | None = None,
               memory_budget: int = DEFAULT_MEMORY_BUDGET) -> torch.Tensor:
        """Logits of the first ``n_samples`` samples, ``[S, B, C]``; differentiable in ``x``.

        Vectorised over images and samples; samples are processed in chunks whose activations fit
        ``memory_budget`` bytes. ``x`` is moved to the ensemble's device (differentiably).
        """
        n = self.resolve_n(n_samples)
        x = x.to(self.device)
        outs = [self._forward_params({k: v[sl] for k, v in self.params.items()}, x)
                for sl in self.sample_chunks(n, x, memory_budget)]
        return torch.cat(outs, dim=0)

    def predict_proba(self, x: torch.Tensor, n_samples: int | None = None,
                      batch_size: int = 2048) -> torch.Tensor:
        """Predictive mean softmax over the first ``n_samples`` samples, ``[B, C]``.

        Computed without gradients, in image batches of at most ``batch_size`` (on the CPU also
        at most :func:`cpu_image_chunk` images) and sample chunks.
        """
        n = self.resolve_n(n_samples)
        if x.shape[0]:
            cap = cpu_image_chunk(self.device, self._activation_numel(x))
            batch_size = min(batch_size, cap) if cap else batch_size
        out = []
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                xb = x[start:start + batch_size].to(self.device)
                total = None
                for sl in self.sample_chunks(n, xb):
                    probs = self._forward_params({k: v[sl] for k, v in self.params.items()}, xb)
                    probs = probs.softmax(-1).sum(0)
                    total = probs if total is None else total + probs
                out.append(total / n)
        return torch.cat(out)

    def predict(self, x: torch.Tensor, n_samples: int | None = None) -> torch.Tensor:
        """Class of the predictive mean, ``[B]``."""
        return self.predict_proba(x, n_samples).argmax(-1)

    def accuracy(self, x: torch.Tensor, y: torch.Tensor, n_samples: int | None = None) -> float:
        """Test accuracy of the predictive mean."""
        return float((self.predict(x, n_samples).cpu() == y.cpu()).float().mean())

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Save to the directory ``path``: ``params.safetensors`` + ``ensemble.json`` (+ extras).

        The JSON (format 2, :mod:`bayeslrp.ensemble_format`) records how to rebuild the
        architecture (name or factory + kwargs; none for a module without one), the sample
        count, every tensor's shape, the metadata, the sha256 of every tensor file and a
        digest of itself. Each file is written atomically; the JSON last.
        """
        from .ensemble_format import write_record

        try:
            json.dumps(self.meta, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise BayesLRPError(f"the ensemble's meta is not JSON: {exc}") from None
        path = Path(path)
        files = {PARAMS_FILE: _tensor_bytes(self.params)}
        if self.extras:
            files[EXTRAS_FILE] = _tensor_bytes(self.extras)
        module_class = f"{type(self.module).__module__}.{type(self.module).__qualname__}"
        record = write_record(
            architecture=self.spec, module_class=module_class, n_samples=self.n_samples,
            params={k: list(v.shape) for k, v in self.params.items()}, meta=self.meta,
            files={name: sha256_bytes(data) for name, data in files.items()})
        path.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            atomic_write_bytes(path / name, data)
        atomic_write_json(path / META_FILE, record)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", *,
             module: nn.Module | None = None,
             factory: str | Callable[..., nn.Module] | None = None,
             kwargs: dict | None = None) -> "Ensemble":
        """Load an ensemble saved by :meth:`save`, verifying the JSON and every file first.

        The architecture is rebuilt from the saved name or factory; ``module=`` (a network of
        the same architecture) or ``factory=`` (+ ``kwargs``) supply it for a model saved
        without one, or replace the saved one. Nothing is unpickled.

        Raises
        ------
        bayeslrp.ensemble_format.ModelFileError
            Missing, corrupt or edited files, an unknown format.
        BayesLRPError
            No way to rebuild the architecture, or one the parameters do not fit.
        """
        from .ensemble_format import read_record

        path = Path(path)
        record = read_record(path)
        sums = record.sha256 if record.format_version == 1 else record.files
        tensors = {name: _read_tensors(path / name, digest, device) for name, digest in sums.items()}
        if PARAMS_FILE not in tensors:
            raise ModelFileError(f"{path}/{PARAMS_FILE} is missing from {META_FILE}")
        params = tensors[PARAMS_FILE]
        _check_record(path, record, params)
        spec = record.spec if record.format_version == 1 else record.architecture
        spec = None if spec is None else spec.model_dump(exclude_none=True)
        if factory is not None:
            if module is not None:
                raise BayesLRPError("pass module= or factory=, not both")
            spec = _factory_spec(factory, kwargs, None)
            module = nets.build_from_spec(spec)
        elif module is None and spec is None:
            raise BayesLRPError(f"{path} was saved without a way to rebuild its "
                                f"{record.module_class if record.format_version == 2 else ''} "
                                f"architecture; pass module= (a network of that architecture) "
                                f"or factory='package.module:function' to Ensemble.load")
        return cls(spec, params, meta=record.meta, extras=tensors.get(EXTRAS_FILE),
                   module=module)


def loops_over_samples(device: torch.device) -> bool:
    """Whether stacked samples are run one after another (CPU) rather than with ``vmap``."""
    return torch.device(device).type == "cpu"


# One sample's activations for an image chunk are kept near this size on the CPU: they then stay
# in the last-level cache between layers. Measured on conv-512 (docs/results.md, speed): 64-image
# chunks run the forward 1.3x and forward+backward 1.6x faster than 500-image ones; fc2 is
# unaffected (its activations are small).
CPU_CHUNK_BYTES = 40 * 2**20


def cpu_image_chunk(device: torch.device, activation_numel: int) -> int | None:
    """Largest image chunk whose one-sample float32 activations fit :data:`CPU_CHUNK_BYTES`
    when samples are looped (CPU); ``None`` (no limit) elsewhere."""
    if not loops_over_samples(device):
        return None
    return max(8, CPU_CHUNK_BYTES // (4 * max(activation_numel, 1)))


_CHANNELS_LAST_OK: "weakref.WeakKeyDictionary[nn.Module, bool]" = weakref.WeakKeyDictionary()


def _takes_channels_last(module: nn.Module) -> bool:
    """Whether ``module`` is a (nested) ``nn.Sequential`` of torch's own layers only: those accept
    channels-last activations (``nn.Flatten`` reshapes); a user's ``forward`` may ``view`` them.
    Decided once per module (attacks ask per sample and step)."""
    if module not in _CHANNELS_LAST_OK:
        _CHANNELS_LAST_OK[module] = isinstance(module, nn.Sequential) and all(
            isinstance(m, nn.Sequential) or type(m).__module__.startswith("torch.nn.")
            for m in module.modules())
    return _CHANNELS_LAST_OK[module]


def _sample_params(params: dict[str, torch.Tensor], j: int,
                   channels_last: bool) -> dict[str, torch.Tensor]:
    """Sample ``j``'s parameters; with ``channels_last``, 4-D ones (convolution kernels) in that
    layout, which makes the CPU convolutions, the activations and pooling after them run in
    oneDNN's NHWC kernels (1.5–2x faster than NCHW here; the values agree to float32 rounding)."""
    if not channels_last:
        return {k: v[j] for k, v in params.items()}
    return {k: v[j].contiguous(memory_format=torch.channels_last) if v.dim() == 5 else v[j]
            for k, v in params.items()}


def forward_stacked(module: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor,
                    per_sample_inputs: bool = False) -> torch.Tensor:
    """Outputs ``[s, B, …]`` of ``module`` under each of the ``s`` stacked parameter sets.

    ``per_sample_inputs``: ``x`` is ``[s, B, …]`` and sample ``j`` sees ``x[j]``; otherwise every
    sample sees the same ``x``. On the CPU a loop of ``functional_call`` over the samples (each
    sample's batch is one large matmul/convolution, 1.3–2x faster than ``vmap``'s batched kernels
    here), elsewhere ``vmap``.
    """
    first = next(iter(params.values()))
    if loops_over_samples(first.device):
        n = first.shape[0]
        # unbind, not x[j]: one backward node for all samples instead of n full-size zero grads
        inputs = x.unbind(0) if per_sample_inputs else (x,) * n
        channels_last = _takes_channels_last(module)
        return torch.stack([
            functional_call(module, _sample_params(params, j, channels_last), (inputs[j],))
            for j in range(n)])
    if per_sample_inputs:
        return vmap(lambda p, images: functional_call(module, p, (images,)))(params, x)
    return vmap(lambda p: functional_call(module, p, (x,)))(params)


def _tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    return st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})


def _read_tensors(file: Path, digest: str, device) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise ModelFileError(f"{file} is missing; the saved model is incomplete")
    data = file.read_bytes()
    if sha256_bytes(data) != digest:
        raise ModelFileError(f"{file} is corrupt: its sha256 does not match {META_FILE}")
    try:
        return {k: v.to(device) for k, v in st_load(data).items()}
    except (SafetensorError, ValueError) as exc:
        raise ModelFileError(f"{file} cannot be read: {exc}") from None


def _check_record(path: Path, record, params: dict[str, torch.Tensor]) -> None:
    """The JSON's sample count (and, format 2, every shape) against the tensors."""
    counts = {t.shape[0] for t in params.values()}
    if record.n_samples is not None and counts != {record.n_samples}:
        raise ModelFileError(f"{path / META_FILE} says {record.n_samples} samples; "
                             f"{PARAMS_FILE} holds {sorted(counts)}")
    if record.format_version == 2 and _shapes(params) != {k: tuple(v) for k, v in record.params.items()}:
        raise ModelFileError(f"{path / META_FILE} lists other parameters than {PARAMS_FILE}")


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _first_difference(want: dict, got: dict) -> str:
    for name in sorted(set(want) | set(got)):
        if want.get(name) != got.get(name):
            return (f"{name} ({'missing' if name not in got else list(got[name])} vs "
                    f"{'missing' if name not in want else list(want[name])})")
    return "nothing"


def _check_fit(module: nn.Module, params: dict[str, torch.Tensor], arch: str) -> None:
    """Parameters with one leading sample count whose names and shapes are the module's."""
    want = _shapes(module.state_dict())
    if set(params) != set(want):
        missing, unknown = set(want) - set(params), set(params) - set(want)
        raise BayesLRPError(f"parameters do not fit architecture {arch!r}: "
                            f"missing {sorted(missing)[:3]}, unknown {sorted(unknown)[:3]}")
    sizes = {t.shape[0] for t in params.values() if t.ndim}
    if len(sizes) != 1 or any(t.ndim == 0 for t in params.values()):
        raise BayesLRPError(f"parameters disagree on the sample count: {sorted(sizes)}")
    for name, shape in want.items():
        if tuple(params[name].shape[1:]) != shape:
            raise BayesLRPError(f"parameters do not fit architecture {arch!r}: {name} has "
                                f"shape {list(params[name].shape[1:])}, the architecture's "
                                f"is {list(shape)}")


def _factory_spec(factory, kwargs: dict | None, net: nn.Module | None) -> dict:
    """``{"factory": path, "kwargs": ...}``, checked: the factory imports, builds a module and
    (given ``net``) one with ``net``'s parameter names and shapes."""
    from .factories import build_factory, factory_path, json_kwargs

    spec = {"factory": factory_path(factory), "kwargs": json_kwargs(kwargs)}
    if net is not None:
        built = build_factory(spec["factory"], spec["kwargs"], seed=0)
        want, got = _shapes(net.state_dict()), _shapes(built.state_dict())
        if want != got:
            raise BayesLRPError(f"factory {spec['factory']} builds another architecture than "
                                f"the network given: {_first_difference(want, got)}")
    return spec
