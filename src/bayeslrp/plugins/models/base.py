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
from typing import Annotated, Any, ClassVar

from pydantic import StringConstraints, model_validator

from bayeslrp.plugins.spec import ConfigIssue, Name, PosInt, Seed, StrictSpec

__all__ = ["ModelMethod", "ModelSpecBase", "last_value"]


class ModelSpecBase(StrictSpec):
    """Keys every model has: its name, architecture and seed.

    ``arch`` is a built-in or registered (:func:`bayeslrp.nets.register`) name, or a
    factory import path ``"package.module:function"`` called with ``arch_kwargs``; the YAML
    spelling ``arch: {factory: PATH, kwargs: {...}}`` is read as those two keys.
    ``init_weights`` is a ``.safetensors`` file or a ``.pt`` state dict the network is loaded
    from before training (its sha256 enters the artifact key).
    """

    name: Name
    arch: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    arch_kwargs: dict[str, Any] | None = None
    hidden: PosInt | None = None
    channels: PosInt | None = None
    init_weights: Annotated[str, StringConstraints(min_length=1)] | None = None
    seed: Seed | None = None

    @model_validator(mode="before")
    @classmethod
    def _factory_mapping(cls, data: Any) -> Any:
        arch = data.get("arch") if isinstance(data, dict) else None
        if not isinstance(arch, dict):
            return data
        unknown = set(arch) - {"factory", "kwargs"}
        if unknown or "factory" not in arch:
            raise ConfigIssue(("arch",), f"must be a name or {{factory: 'package.module:"
                                         f"function', kwargs: {{...}}}}; got keys "
                                         f"{sorted(arch)}")
        if "arch_kwargs" in data:
            raise ConfigIssue(("arch_kwargs",), "give the kwargs inside arch: {factory, kwargs}")
        kwargs = arch.get("kwargs")
        return {**data, "arch": arch["factory"], "arch_kwargs": {} if kwargs is None else kwargs}

    @property
    def is_factory(self) -> bool:
        """Whether ``arch`` is a factory import path (not a name)."""
        return ":" in self.arch

    @property
    def learnable_layers(self) -> tuple[int, ...]:
        """The architecture's layer names (built-in: the catalog; else its built network)."""
        from bayeslrp import catalog

        if self.arch in catalog.ARCHS:
            return catalog.learnable_layers(self.arch)
        from bayeslrp.experiment.arch_probe import learnable_layers

        return learnable_layers(self.arch, self.arch_kwargs)

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
    #: :meth:`train` also gets ``test_split=(x_test, y_test)`` and ``init_meta`` (the meta of
    #: the :meth:`init_model` artifact: its ``test_accuracy``, …).
    uses_test_split: ClassVar[bool] = False

    def resolve(self, spec: Any, dataset: str) -> dict[str, Any]:
        """Defaults that depend on the dataset, as ``{key: value}`` updates of ``spec``.

        Raise :class:`~bayeslrp.plugins.spec.ConfigIssue` (path relative to the model) for a
        value that is required but has no default.
        """
        return {}

    def check(self, spec: Any, config: Any) -> None:
        """Semantic checks against the whole (resolved) config; raise ``ConfigIssue``."""

    def init_model(self, spec: Any) -> str | None:
        """The name of a model this one depends on — starts from, or (det's
        ``match_accuracy``) matches; its artifact is the training input ``init``."""
        return None

    def weight_reference(self, spec: Any, init):
        """The Ensemble the samples' weight distances are measured to (models.json
        ``posterior``): the ``init`` model this one starts from, by default."""
        return init

    def key_params(self, spec: Any) -> dict[str, Any]:
        """The spec as it enters the artifact key (training options at their defaults left
        out, see :mod:`bayeslrp.plugins.models.train_options`)."""
        from bayeslrp.plugins.models.train_options import drop_default_options

        params = drop_default_options(spec.model_dump(mode="json", exclude=set(self.unkeyed)))
        for key in ("arch_kwargs", "init_weights"):  # absent from the keys made before them
            if params.get(key) is None:
                params.pop(key, None)
        if spec.init_weights is not None:
            from bayeslrp.experiment.arch_probe import weights_param

            params["init_weights"] = weights_param(spec.init_weights)
        return params

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

    def test_passes(self, spec: Any, n_train: int) -> float:
        """Passes over the test split during training (det's ``match_accuracy`` checks), for
        the plan's estimate; at most, since training may stop early."""
        return 0.0

    def diagnostics(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Training diagnostics for models.json from the Ensemble's ``meta``."""
        return {}


def last_value(meta: Mapping[str, Any], key: str) -> float | None:
    """Last entry of ``meta["history"][key]``, or None."""
    values = (meta.get("history") or {}).get(key) or []
    return float(values[-1]) if values else None
