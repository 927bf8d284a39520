"""What every stage shares: the :class:`Stage` base, its context, inputs and output.

A stage is an object with a ``name`` and a ``version`` that

* **plans** its tasks (:meth:`Stage.plan`, called by :func:`~bayeslrp.experiment.grid.expand_grid`
  in stage order with a :class:`~bayeslrp.experiment.grid.Planner` holding the config and the
  tasks planned so far);
* **runs** one task as a pure function ``run(params, inputs, ctx) -> StageOutput``: ``params``
  is :attr:`Task.params` (everything that shapes the output, all of it in the artifact key),
  ``inputs`` maps each dependency role to an :class:`ArtifactRef`, ``ctx`` a
  :class:`StageContext` (what may differ between machines without changing the science);
* **publishes** what it owns into the run directory (:meth:`Stage.publish`: tables, models.json,
  heatmap files for figures) once every task is done.

Stage functions never read the config, the run directory or global state, and every random
draw comes from a ``torch.Generator`` seeded from ``params`` (:func:`stage_seed`). Every
artifact's ``meta`` carries ``facts`` (model method/arch/dataset, attack method/mode, rule,
layer), copied forward from the inputs, so the results table is labelled without the config.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment.store import Store
from bayeslrp.mcmc.seeds import derive_seed

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch

__all__ = ["ArtifactRef", "Stage", "StageContext", "StageOutput", "load_model", "load_split",
           "stage_seed", "generator", "SYNTHETIC_DATA_SEED", "MODEL_DIR"]

#: Synthetic data is one fixed dataset (its prototypes must be shared by train and test
#: splits); the config seed only chooses the attacked points, the training subset and the
#: models' randomness.
SYNTHETIC_DATA_SEED = 0
MODEL_DIR = "model"


@dataclass(frozen=True)
class StageContext:
    """Run-time settings that do not enter any artifact key.

    Attributes
    ----------
    device : str
        Where tensors are computed (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
    data_dir : str or None
        A user directory tried first for dataset files.
    progress : bool
        Let training functions draw their own progress bars.
    scratch : Path or None
        A private directory the stage may use for resumable work (HMC checkpoints); it
        survives a killed run and is removed after the artifact is stored.
    """

    device: str = "cpu"
    data_dir: str | None = None
    progress: bool = False
    scratch: Path | None = None


@dataclass(frozen=True)
class ArtifactRef:
    """Read access to one verified input artifact."""

    store: Store
    key: str

    @property
    def meta(self) -> dict[str, Any]:
        """The artifact's metadata (``facts`` included)."""
        return self.store.load_meta(self.key)

    @property
    def facts(self) -> dict[str, Any]:
        return dict(self.meta.get("facts", {}))

    @property
    def stage(self) -> str:
        """Name of the stage that made the artifact."""
        return self.store.load_record(self.key)["stage"]

    @property
    def directory(self) -> Path:
        return self.store.get_path(self.key)

    def tensors(self, name: str) -> dict[str, "torch.Tensor"]:
        return self.store.load_tensors(self.key, name)

    def table(self, name: str = "table.parquet") -> "pd.DataFrame":
        return self.store.load_table(self.key, name)


@dataclass
class StageOutput:
    """Files of an artifact (``name → bytes`` or a ``writer(directory)``) and its meta."""

    files: Mapping[str, bytes] | Callable[[Path], None]
    meta: dict[str, Any] = field(default_factory=dict)


class Stage:
    """A pipeline stage; subclass, set ``name``, implement :meth:`plan` and :meth:`run`."""

    name: ClassVar[str]
    #: Bump when the code changes the output: its artifacts and everything downstream get
    #: new keys.
    version: ClassVar[int] = 1
    #: Its numbers depend on the device type: the planner puts the type into its keys
    #: (:meth:`~bayeslrp.experiment.grid.Planner.device_params`) and the runner refuses to
    #: run it on another type.
    device_dependent: ClassVar[bool] = False

    def plan(self, planner) -> None:
        """Add this stage's tasks to ``planner`` (:meth:`Planner.add`)."""

    def run(self, params: dict, inputs: Mapping[str, ArtifactRef],
            ctx: StageContext) -> StageOutput:
        raise NotImplementedError

    def estimate(self, task, config) -> float:
        """Estimated seconds of ``task`` on this machine (:mod:`bayeslrp.experiment.costs`)."""
        from bayeslrp.experiment.costs import TASK_OVERHEAD_S

        return TASK_OVERHEAD_S.get(self.name, 0.01)

    def preflight(self, config) -> str | None:
        """Why ``config`` cannot run on this machine (e.g. missing data), or None."""
        return None

    def publish(self, parts, store: Store, run_dir: Path) -> dict[str, Path]:
        """Write what this stage owns into ``run_dir`` once every task is done."""
        return {}


def model_forward_flops(config, name: str) -> int:
    """FLOPs of one forward pass of the config's model ``name`` (``<parent>.own<j>`` too)."""
    from bayeslrp import catalog
    from bayeslrp.experiment.costs import forward_flops

    base = name.rsplit(".own", 1)[0] if name not in {m.name for m in config.models} else name
    spec = config.model(base)
    n_classes = config.data.facts.n_classes
    return forward_flops(spec.arch, {"hidden": spec.hidden, "channels": spec.channels},
                         config.data.image_shape, n_classes)


def model_samples(config, name: str) -> int:
    """Stacked samples ``S`` of the config's model ``name`` (1 for a selected sample)."""
    if name not in {m.name for m in config.models}:
        return 1
    return config.model(name).sample_count


def stage_seed(seed: int, *tags: object) -> int:
    """A 63-bit seed for one random stream of a stage, from the config seed and tags."""
    return derive_seed(int(seed), "experiment", *tags)


def generator(seed: int, *tags: object) -> "torch.Generator":
    """A CPU generator seeded with :func:`stage_seed`."""
    import torch

    return torch.Generator().manual_seed(stage_seed(seed, *tags))


def dataset_classes(dataset) -> int:
    """Number of classes of a data-reading stage's ``dataset`` param (a built-in name or a
    user's files, :func:`bayeslrp.data.user_facts.dataset_param`)."""
    from bayeslrp import catalog

    if isinstance(dataset, dict):
        return int(dataset["n_classes"])
    return catalog.DATASETS[dataset].n_classes


def dataset_name(dataset) -> str:
    """The name results and reports show for a ``dataset`` param (``user:<test file>`` for a
    user's files)."""
    if isinstance(dataset, dict):
        return f"user:{Path(dataset['test']).name}"
    return str(dataset)


def load_split(dataset, split: str, shape: list[int], ctx: StageContext):
    """Images and labels of one split of a dataset, checked against the expected shape."""
    from bayeslrp import catalog, data

    if isinstance(dataset, dict):
        from bayeslrp.data.user_facts import load_split as load_user

        x, y = load_user(dataset, split)
        dataset = dataset_name(dataset)
    elif dataset == "synthetic":
        return data.load("synthetic", split, shape=tuple(shape),
                         n_classes=catalog.DATASETS["synthetic"].n_classes,
                         seed=SYNTHETIC_DATA_SEED)
    else:
        x, y = data.load(dataset, split, data_dir=ctx.data_dir)
    if list(x.shape[1:]) != list(shape):
        raise BayesLRPError(f"{dataset} {split} images have shape {list(x.shape[1:])}, the "
                            f"config expects {list(shape)}")
    return x, y


def load_model(ref: ArtifactRef, ctx: StageContext):
    """The Ensemble of a model artifact (``train`` or ``select``), on the context's device."""
    import torch

    from bayeslrp.ensemble import Ensemble

    return Ensemble.load(ref.directory / MODEL_DIR, device=torch.device(ctx.device))


def is_bayesian(model_facts: Mapping[str, Any]) -> bool:
    """A BNN explained and attacked as one; a selected posterior sample counts as a det net."""
    if "own_sample" in model_facts:
        return False
    if "bayesian" in model_facts:
        return bool(model_facts["bayesian"])
    return model_facts["method"] in ("vi", "hmc")  # artifacts made before the flag existed
