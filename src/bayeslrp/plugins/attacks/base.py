"""The base of attack plug-ins: a config spec, its checks, and how the attack runs.

An attack (fgsm, pgd, topk, region, beta, …) is a subclass of :class:`AttackMethod` registered
in :data:`bayeslrp.plugins.attacks.ATTACK_METHODS`, under one name used by the config, the
library dispatcher (:func:`bayeslrp.attacks.run_attack`) and the CLI alike. It owns

* ``Spec``: its pydantic config model (a subclass of :class:`AttackSpecBase` with
  ``method: Literal["<name>"]``); the config's ``attacks`` entries are the union of the specs;
* :meth:`check`: semantic checks against the whole config (run by ``load_config``);
* :meth:`key_params`: what of the spec enters the attack artifact's key;
* :meth:`run`: ``(ensemble, x, y, spec, generator seed, explainer) → x_adv``.

Attacks on explanations set ``uses_explainer = True``: they receive the
:class:`~bayeslrp.explainers.Explainer` of the output-layer explanation they attack.
Attacks that set ``resumable = True`` take ``checkpoint=`` (a
:class:`~bayeslrp.attacks.checkpoint.ChunkCheckpoint` in the task's scratch directory): a
killed run resumes them from their last finished image chunk.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from bayeslrp.plugins.spec import Epsilon, Name, PosInt, StrictSpec

__all__ = ["AttackMethod", "AttackSpecBase"]


class AttackSpecBase(StrictSpec):
    """Keys every attack has."""

    name: Name | None = None
    eps: Epsilon = 0.2
    n_samples: PosInt | None = None
    transfer_from: Name | None = None

    @property
    def label(self) -> str:
        """The attack's name in tables and figures (``name``, else the method)."""
        return self.name or self.method  # type: ignore[attr-defined]

    @property
    def explained_rule(self) -> str | None:
        """The explainer an attack on explanations attacks (``rule``), else None."""
        return getattr(self, "rule", None)


class AttackMethod:
    """An attack; subclass, set ``name`` and ``Spec``, implement :meth:`run`, register it."""

    name: ClassVar[str]
    Spec: ClassVar[type[AttackSpecBase]]
    #: An attack on explanations: :meth:`run` gets the attacked explainer.
    uses_explainer: ClassVar[bool] = False
    #: :meth:`run` takes ``checkpoint=`` and saves its finished image chunks there.
    resumable: ClassVar[bool] = False
    #: Spec keys that do not change the attacked images (left out of the artifact key).
    unkeyed: ClassVar[frozenset[str]] = frozenset({"name", "transfer_from"})

    def check(self, spec: Any, config: Any) -> None:
        """Semantic checks against the whole config; raise ``ConfigIssue``."""

    def key_params(self, spec: Any, config: Any) -> dict[str, Any]:
        """The spec as it enters the artifact key (``n_samples`` is resolved by the grid)."""
        return spec.model_dump(mode="json", exclude=set(self.unkeyed))

    def mode(self, spec: Mapping[str, Any], bayesian: bool) -> str:
        """The ensemble attack mode recorded in the results (``""``: not applicable)."""
        return ""

    def cost(self, spec: Any, n_images: int, n_samples: int, flops: int) -> tuple[float, str]:
        """``(FLOPs, kind)`` of attacking ``n_images`` with ``n_samples`` samples."""
        steps = getattr(spec, "steps", 1) * getattr(spec, "restarts", 1)
        if self.uses_explainer:  # second-order graph through the explanation, per step
            return 25.0 * steps * n_images * n_samples * flops, "saliency"
        return 3.0 * steps * n_images * n_samples * flops, "attack"

    def run(self, ens, x, y, spec: Mapping[str, Any], *, seed: int, explainer=None,
            bounds: tuple[float, float] = (0.0, 1.0)):
        """Attack images ``x`` (labels ``y``) of the ensemble ``ens``.

        Parameters
        ----------
        ens : Ensemble
        x, y : Tensor
            Images ``[B, C, H, W]`` and true labels ``[B]``, on the model's device.
        spec : mapping
            :meth:`key_params` with ``n_samples`` resolved to the samples the attack uses.
        seed : int
            The attack's seed; derive every random stream from it
            (:func:`bayeslrp.mcmc.seeds.derive_seed`).
        explainer : Explainer, optional
            For ``uses_explainer`` attacks: the attacked explanation.
        bounds : (float, float)
            Pixel value range of the data.

        Returns
        -------
        Tensor
            The attacked images, same shape as ``x``.
        """
        raise NotImplementedError
