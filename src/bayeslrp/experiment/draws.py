"""Which posterior samples the attack uses and which the explanations use (``explain_draws``).

``explain.explain_draws: same`` (default): attacks, predictions and explanations of a model all
use its first samples (attack: the first ``n`` of the attack's ``n_samples``, default all).

``explain.explain_draws: fresh`` (the "Attacking Bayes" control): on a Bayesian model the
attacks use samples ``[0, A)`` and the explanations and predictions (hence the LRP and softmax
robustness and the attack success) use the next ones, ``[A, A + n)`` for ``n`` in
``explain.n_samples``. ``A`` is the largest sample count of the attacks computed on the model;
an attack without ``n_samples`` then uses ``max(explain.n_samples)`` samples (so by default the
attack uses ``[0, N)`` and the explanation ``[N, 2N)``). The model must keep ``A + N`` samples:
for HMC that is the second half of its draws (of every chain), for VI new draws, for an
ensemble other members. Models with one network (det, adv, an own-sample control) use it as
always. Torch-free.
"""
from __future__ import annotations

from typing import Any

from bayeslrp.plugins.spec import ConfigIssue

__all__ = ["attack_samples", "check_fresh_draws", "draw_params", "explain_offset", "fresh",
           "explained_view"]


def fresh(config: Any, model: Any) -> bool:
    """Whether ``model``'s explanations use samples its attacks do not."""
    return config.explain.explain_draws == "fresh" and bool(model.bayesian)


def attack_samples(config: Any, model: Any, attack: Any) -> int:
    """The samples ``[0, n)`` an attack uses on ``model``."""
    default = max(config.explain.n_samples) if fresh(config, model) else model.sample_count
    return min(attack.n_samples or default, model.sample_count)


def explain_offset(config: Any, model: Any) -> int:
    """The first sample the explanations and predictions of ``model`` use (0 unless fresh)."""
    if not fresh(config, model):
        return 0
    used = [attack_samples(config, model, a) for a in config.attacks
            if a.transfer_from in (None, model.name)]
    return max(used, default=0)


def check_fresh_draws(config: Any) -> None:
    """Every Bayesian model keeps the samples ``explain_draws: fresh`` needs; else a
    ConfigIssue at ``explain.explain_draws`` that says how many."""
    if config.explain.explain_draws != "fresh":
        return
    need = max(config.explain.n_samples)
    for i, m in enumerate(config.models):
        if not m.bayesian:
            continue
        offset = explain_offset(config, m)
        if offset + need > m.sample_count:
            raise ConfigIssue(("explain", "explain_draws"), (
                f"fresh draws need {offset} attack samples + {need} explanation samples, but "
                f"model {m.name!r} keeps {m.sample_count}; raise models[{i}].n_samples to "
                f"{offset + need} or lower the attacks' / explain n_samples"))


def draw_params(config: Any, model: Any) -> dict[str, int]:
    """``{"draw_offset": A}`` for the key params of a fresh-draw explain / predict task, else
    ``{}`` (so the keys of ``explain_draws: same`` runs are those of earlier versions)."""
    return {"draw_offset": explain_offset(config, model)} if fresh(config, model) else {}


def explained_view(ens: Any, params: dict, n_max: int) -> Any:
    """The samples ``[A, A + n_max)`` of ``ens`` for a task with ``draw_offset`` A (as an
    Ensemble whose first samples they are), else ``ens`` itself."""
    offset = params.get("draw_offset")
    if offset is None:
        return ens
    offset = int(offset)
    if offset + n_max > ens.n_samples:
        from bayeslrp.errors import BayesLRPError

        raise BayesLRPError(f"fresh draws need samples {offset} to {offset + n_max - 1}; the "
                            f"model keeps {ens.n_samples}")
    return ens.select(list(range(offset, offset + n_max)))
