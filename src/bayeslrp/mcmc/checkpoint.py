"""Checkpoints of one HMC chain: safetensors + JSON, atomic, every file checksummed, no pickle.

Layout of a checkpoint directory::

    chain.json                     settings, counters, adaptation scalars, per-iteration
                                   diagnostics, the current state file and every sample file with
                                   its sha256 (written last, atomically: it is the commit point)
    state-<iteration>.safetensors  position, gradient, inverse mass, Welford moments, RNG state
    samples/<k>.safetensors        kept sample k (written once, never rewritten)

Each kept sample is its own file, so a checkpoint costs O(D) bytes whatever the number of samples.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..errors import BayesLRPError
from ..fileio import atomic_write_bytes, atomic_write_json, sha256_bytes
from .adaptation import DualAveraging, Welford
from .kernel import Point

FORMAT = "bayeslrp-hmc-chain"
VERSION = 1
INDEX_FILE = "chain.json"


@dataclass
class ChainState:
    """Everything needed to continue a chain exactly where it stopped."""

    iteration: int
    point: Point
    step_size: float
    inv_mass: torch.Tensor
    dual: DualAveraging
    welford: Welford
    generator: torch.Generator
    n_grad: int = 0
    wall_seconds: float = 0.0
    trace: dict = field(default_factory=lambda: {
        "accept_stat": [], "accepted": [], "divergent": [], "energy": [], "energy_error": [],
        "step_size": []})
    samples: list = field(default_factory=list)
    sample_records: list = field(default_factory=list)  # [{"file", "sha256"}] of saved samples


def _tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    return st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})


def _read_verified(path: Path, sha256: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BayesLRPError(f"{path} is missing; the HMC checkpoint is incomplete: delete the "
                            "checkpoint directory to start again")
    data = path.read_bytes()
    if sha256_bytes(data) != sha256:
        raise BayesLRPError(f"{path} is corrupt (sha256 mismatch): delete the checkpoint directory "
                            "to start again")
    try:
        return st_load(data)
    except (SafetensorError, ValueError) as exc:
        raise BayesLRPError(f"{path} cannot be read ({exc}): delete the checkpoint directory") from None


def save(directory: Path, state: ChainState, settings: dict) -> None:
    """Write the chain's state and every kept sample not saved yet (``state.samples``)."""
    directory.mkdir(parents=True, exist_ok=True)
    for k in range(len(state.sample_records), len(state.samples)):
        name = f"samples/{k:06d}.safetensors"
        data = _tensor_bytes({"q": state.samples[k]})
        atomic_write_bytes(directory / name, data)
        state.sample_records.append({"file": name, "sha256": sha256_bytes(data)})
    tensors = {"q": state.point.q, "grad": state.point.grad, "inv_mass": state.inv_mass,
               "welford_mean": state.welford.mean, "welford_m2": state.welford.m2,
               "rng_state": state.generator.get_state()}
    state_name = f"state-{state.iteration:08d}.safetensors"
    data = _tensor_bytes(tensors)
    atomic_write_bytes(directory / state_name, data)
    atomic_write_json(directory / INDEX_FILE, {
        "format": FORMAT, "version": VERSION, "settings": settings,
        "iteration": state.iteration, "potential": state.point.potential,
        "step_size": state.step_size, "dual_averaging": state.dual.state_dict(),
        "welford_n": state.welford.n, "n_grad": state.n_grad, "wall_seconds": state.wall_seconds,
        "trace": state.trace, "state_file": state_name, "state_sha256": sha256_bytes(data),
        "samples": state.sample_records,
    })
    for old in directory.glob("state-*.safetensors"):
        if old.name != state_name:
            old.unlink(missing_ok=True)


def exists(directory: Path) -> bool:
    return (directory / INDEX_FILE).is_file()


def load(directory: Path, settings: dict, device: torch.device) -> ChainState:
    """Read a chain's state, verifying checksums and that it was made with the same settings."""
    index_path = directory / INDEX_FILE
    try:
        index = json.loads(index_path.read_text())
        ok = index.get("format") == FORMAT and index.get("version") == VERSION
    except ValueError:
        ok = False
    if not ok:
        raise BayesLRPError(f"{index_path} is not a bayeslrp HMC checkpoint: delete it or choose "
                            "another checkpoint directory")
    if index["settings"] != settings:
        changed = sorted(k for k in set(settings) | set(index["settings"])
                         if settings.get(k) != index["settings"].get(k))
        raise BayesLRPError(f"the checkpoint in {directory} was made with different settings "
                            f"({', '.join(changed)}); use a new checkpoint directory or the same "
                            "settings")
    tensors = _read_verified(directory / index["state_file"], index["state_sha256"])
    generator = torch.Generator()
    generator.set_state(tensors["rng_state"])
    welford = Welford(tensors["welford_mean"].numel(), device=device)
    welford.n = int(index["welford_n"])
    welford.mean.copy_(tensors["welford_mean"])
    welford.m2.copy_(tensors["welford_m2"])
    dual = DualAveraging(1.0)
    dual.load_state_dict(index["dual_averaging"])
    samples = [_read_verified(directory / rec["file"], rec["sha256"])["q"].to(device)
               for rec in index["samples"]]
    point = Point(tensors["q"].to(device), float(index["potential"]), tensors["grad"].to(device))
    return ChainState(iteration=int(index["iteration"]), point=point,
                      step_size=float(index["step_size"]),
                      inv_mass=tensors["inv_mass"].to(device), dual=dual, welford=welford,
                      generator=generator, n_grad=int(index["n_grad"]),
                      wall_seconds=float(index["wall_seconds"]), trace=index["trace"],
                      samples=samples, sample_records=list(index["samples"]))
