"""The Ensemble: one architecture plus stacked parameters ``name -> Tensor[S, ...]``.

Deterministic and adversarially trained models have S = 1; VI and HMC models have one entry per
kept posterior sample. Everything downstream (attacks, LRP, metrics) takes an Ensemble and never
asks how it was trained. "Using n samples" means the first n.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Iterator, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn
from torch.func import functional_call, vmap

from . import nets
from .errors import BayesLRPError
from .fileio import atomic_write_bytes, atomic_write_json, sha256_bytes

FORMAT_VERSION = 1
PARAMS_FILE = "params.safetensors"
EXTRAS_FILE = "extras.safetensors"
META_FILE = "ensemble.json"
DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of activations per forward chunk


class Ensemble:
    """An architecture and S stacked parameter sets.

    Parameters
    ----------
    spec : dict
        How to rebuild the architecture (``{"arch": ..., "kwargs": {...}}``, see
        :func:`bayeslrp.nets.build`).
    params : dict of str to Tensor
        The module's ``state_dict`` entries (parameters and buffers), each with a leading sample
        dimension S.
    meta : dict, optional
        JSON-serialisable facts about how the ensemble was made (method, seeds, diagnostics).
    extras : dict of str to Tensor, optional
        Additional tensors saved alongside (e.g. VI's variational means and scales).
    module : nn.Module, optional
        The architecture itself, for a network not made by :func:`bayeslrp.nets.build`
        (``spec`` then None; such an ensemble is used in memory and cannot be saved yet).
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
        expected = set(self.module.state_dict())
        if set(params) != expected:
            missing, unknown = expected - set(params), set(params) - expected
            raise BayesLRPError(
                f"parameters do not fit architecture {self._arch_name()!r}: "
                f"missing {sorted(missing)[:3]}, unknown {sorted(unknown)[:3]}")
        sizes = {t.shape[0] for t in params.values()}
        if len(sizes) != 1:
            raise BayesLRPError(f"parameters disagree on the sample count: {sorted(sizes)}")
        self.params = dict(params)
        self.meta = dict(meta or {})
        self.extras = dict(extras or {})
        device = next(iter(self.params.values())).device
        self.module.to(device)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_module(cls, net: nn.Module, meta: dict | None = None) -> "Ensemble":
        """An S = 1 ensemble holding a copy of ``net``'s current weights."""
        return cls.from_modules([net], meta=meta)

    @classmethod
    def from_modules(cls, modules: Sequence[nn.Module], meta: dict | None = None) -> "Ensemble":
        """An S = len(modules) ensemble; all modules must share one architecture."""
        if not modules:
            raise BayesLRPError("an ensemble needs at least one module")
        spec = nets.spec_of(modules[0])
        for other in modules[1:]:
            if nets.spec_of(other) != spec:
                raise BayesLRPError("all modules of an ensemble must share one architecture spec")
        states = [m.state_dict() for m in modules]
        params = {name: torch.stack([s[name].detach().clone() for s in states])
                  for name in states[0]}
        return cls(spec, params, meta=meta)

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
        return type(self.module).__name__ if self.spec is None else self.spec["arch"]

    def _same_arch(self) -> dict:
        """Keywords that rebuild this ensemble's architecture (the module when no spec)."""
        return {"module": self.module} if self.spec is None else {}

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
        module = (copy.deepcopy(self.module) if self.spec is None
                  else nets.build_from_spec(self.spec)).to(self.device)
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
        """Logits ``[s, B, C]`` of the stacked parameters ``params`` (vectorised with vmap)."""
        def one(p):
            return functional_call(self.module, p, (x,))
        return vmap(one)(params)

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

        Computed without gradients, in image batches of ``batch_size`` and sample chunks.
        """
        n = self.resolve_n(n_samples)
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

        The JSON records the architecture spec, sample count, metadata and the sha256 of every
        tensor file. Each file is written atomically; the JSON last.
        """
        if self.spec is None:
            raise BayesLRPError(f"this ensemble of a {self._arch_name()} was made from a module "
                                "without an architecture spec; it cannot be saved")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        files = {PARAMS_FILE: _tensor_bytes(self.params)}
        if self.extras:
            files[EXTRAS_FILE] = _tensor_bytes(self.extras)
        for name, data in files.items():
            atomic_write_bytes(path / name, data)
        atomic_write_json(path / META_FILE, {
            "format_version": FORMAT_VERSION,
            "spec": self.spec,
            "n_samples": self.n_samples,
            "meta": self.meta,
            "sha256": {name: sha256_bytes(data) for name, data in files.items()},
        })
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "Ensemble":
        """Load an ensemble saved by :meth:`save`, verifying every checksum first (no pickle)."""
        path = Path(path)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise BayesLRPError(f"{path} is not a saved model: {META_FILE} is missing")
        try:
            record = json.loads(meta_path.read_text())
            spec, sums = record["spec"], record["sha256"]
        except (ValueError, KeyError, TypeError):
            raise BayesLRPError(f"{meta_path} is corrupt (not a bayeslrp model description)") from None
        tensors = {}
        for name in sums:
            file = path / name
            if not file.is_file():
                raise BayesLRPError(f"{file} is missing; the saved model is incomplete")
            data = file.read_bytes()
            if sha256_bytes(data) != sums[name]:
                raise BayesLRPError(f"{file} is corrupt: its sha256 does not match {META_FILE}")
            try:
                tensors[name] = {k: v.to(device) for k, v in st_load(data).items()}
            except (SafetensorError, ValueError) as exc:
                raise BayesLRPError(f"{file} cannot be read: {exc}") from None
        if PARAMS_FILE not in tensors:
            raise BayesLRPError(f"{path}/{PARAMS_FILE} is missing from {META_FILE}")
        return cls(spec, tensors[PARAMS_FILE], meta=record.get("meta"),
                   extras=tensors.get(EXTRAS_FILE))


def _tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    return st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
