"""The base of model-method plug-ins: a config spec, its checks, training, diagnostics.

A model method (det, adv, vi, hmc, …) is a subclass of :class:`ModelMethod` registered in
:data:`bayeslrp.plugins.models.MODEL_METHODS`. It owns

* ``Spec``: its pydantic config model (a subclass of :class:`ModelSpecBase` with
  ``method: Literal["<name>"]``); the config's ``models`` entries are the union of the specs;
* :meth:`resolve` / :meth:`check`: defaults that depend on the data, and every semantic check
  (run by ``load_config``, the only gate);
* :meth:`train`: data and a freshly built network → an :class:`~bayeslrp.ensemble.Ensemble`;
* :meth:`diagnostics`: the few numbers of the trained model shown in models.json.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from bayeslrp.plugins.spec import Name, PosInt, Seed, StrictSpec

__all__ = ["ModelMethod", "ModelSpecBase", "last_value"]


class ModelSpecBase(StrictSpec):
    """Keys every model has: its name, architecture and seed."""

    name: Name
    arch: str
    hidden: PosInt | None = None
    channels: PosInt | None = None
    seed: Seed | None = None

    @property
    def sample_count(self) -> int:
        """Number of stacked parameter samples ``S`` of the trained Ensemble."""
        return 1

    @property
    def bayesian(self) -> bool:
        """Explained and attacked as a posterior (mean over samples)."""
        return False


class ModelMethod:
    """A way to train a model; subclass, set ``name`` and ``Spec``, and register it."""

    name: ClassVar[str]
    Spec: ClassVar[type[ModelSpecBase]]
    #: The trained Ensemble is a posterior, explained and attacked as one.
    bayesian: ClassVar[bool] = False
    #: Spec keys that do not change the trained model (left out of the artifact key).
    unkeyed: ClassVar[frozenset[str]] = frozenset({"name", "seed"})

    def resolve(self, spec: Any, dataset: str) -> dict[str, Any]:
        """Defaults that depend on the dataset, as ``{key: value}`` updates of ``spec``.

        Raise :class:`~bayeslrp.plugins.spec.ConfigIssue` (path relative to the model) for a
        value that is required but has no default.
        """
        return {}

    def check(self, spec: Any, config: Any) -> None:
        """Semantic checks against the whole (resolved) config; raise ``ConfigIssue``."""

    def init_model(self, spec: Any) -> str | None:
        """The name of a model this one starts from (its artifact is a training input)."""
        return None

    def key_params(self, spec: Any) -> dict[str, Any]:
        """The spec as it enters the artifact key (training options at their defaults left
        out, see :mod:`bayeslrp.plugins.models.train_options`)."""
        from bayeslrp.plugins.models.train_options import drop_default_options

        return drop_default_options(spec.model_dump(mode="json", exclude=set(self.unkeyed)))

    def train(self, spec: Mapping[str, Any], net, x, y, *, init=None,
              common: Mapping[str, Any], scratch=None):
        """Train ``net`` on ``(x, y)`` and return an Ensemble.

        Parameters
        ----------
        spec : mapping
            The key parameters (:meth:`key_params`) of the model.
        net : torch.nn.Module
            The freshly initialised network.
        x, y : Tensor
            Training images and labels, on the training device.
        init : Ensemble, optional
            The trained model named by :meth:`init_model`.
        common : mapping
            ``seed``, ``progress`` and ``device`` for the training function.
        scratch : Path, optional
            A private directory for resumable work (checkpoints); kept when a run is killed.
        """
        raise NotImplementedError

    def cost(self, spec: Any, n_train: int, flops: int) -> tuple[float, str]:
        """``(FLOPs, kind)`` of training on ``n_train`` images, one forward = ``flops``."""
        epochs = getattr(spec, "epochs", None) or 1
        return 3.0 * epochs * n_train * flops, "train"

    def diagnostics(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Training diagnostics for models.json from the Ensemble's ``meta``."""
        return {}


def last_value(meta: Mapping[str, Any], key: str) -> float | None:
    """Last entry of ``meta["history"][key]``, or None."""
    values = (meta.get("history") or {}).get(key) or []
    return float(values[-1]) if values else None
