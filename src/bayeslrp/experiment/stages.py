"""The pipeline stages: one pure function per stage, registered in :data:`STAGE_FUNCTIONS`.

A stage function has the signature ``fn(params, inputs, ctx) -> StageOutput``:

* ``params`` is :attr:`Task.params <bayeslrp.experiment.grid.Task>` (everything that shapes
  the output, all of it part of the artifact key);
* ``inputs`` maps each dependency role of the task to an :class:`ArtifactRef` (a verified
  artifact of the store);
* ``ctx`` is a :class:`StageContext` with what may differ between machines without changing
  the science (device, data directory, a scratch directory for resumable work).

The function returns the files of its artifact and a small JSON ``meta`` dict; the runner
writes them atomically under the task's key. Stage functions never read the config, the run
directory or global state, and every random draw comes from a ``torch.Generator`` seeded from
``params`` (:func:`stage_seed`), so the same params and inputs give the same bytes.

Every artifact's ``meta`` carries ``facts``: the descriptive fields downstream stages and the
results table need (model method/arch/dataset, attack method/mode, rule, layer). They are
copied forward from the inputs, so the ``compare`` stage can label every row of the results
table without seeing the config.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bayeslrp.errors import BayesLRPError
from bayeslrp.experiment.config import VI_KEY_LEGACY_VALUES
from bayeslrp.experiment.store import Store, table_to_bytes, tensors_to_bytes
from bayeslrp.mcmc.seeds import derive_seed

__all__ = [
    "ArtifactRef", "STAGE_FUNCTIONS", "StageContext", "StageOutput", "cumulative_probs",
    "explain_cumulative", "stage_seed",
    "run_data", "run_train", "run_select", "run_attack", "run_predict", "run_explain",
    "run_metrics", "run_compare",
]

#: Synthetic data is one fixed dataset (its prototypes must be shared by train and test
#: splits); the config seed only chooses the attacked points, the training subset and the
#: models' randomness.
SYNTHETIC_DATA_SEED = 0
N_CLASSES = 10
SALIENCY = ("topk", "region", "beta")
# Bytes of per-sample heatmaps [S, b, H, W] held at once by the explain stage.
EXPLAIN_CHUNK_BYTES = 1 << 27
PREDICT_CHUNK_IMAGES = 1024

DATA_FILE = "data.safetensors"
MODEL_DIR = "model"
IMAGES_FILE = "images.safetensors"
PROBS_FILE = "probs.safetensors"
HEATMAPS_FILE = "heatmaps.safetensors"
TABLE_FILE = "table.parquet"
RESULTS_FILE = "results.parquet"
DIFFERENCES_FILE = "differences.parquet"
TESTS_FILE = "tests.parquet"
SPEARMAN_FILE = "spearman.parquet"


# --------------------------------------------------------------------------- plumbing


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
    def directory(self) -> Path:
        return self.store.get_path(self.key)

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        return self.store.load_tensors(self.key, name)

    def table(self, name: str = TABLE_FILE) -> pd.DataFrame:
        return self.store.load_table(self.key, name)


@dataclass
class StageOutput:
    """Files of an artifact (``name → bytes`` or a ``writer(directory)``) and its meta."""

    files: Mapping[str, bytes] | Callable[[Path], None]
    meta: dict[str, Any] = field(default_factory=dict)


def stage_seed(seed: int, *tags: object) -> int:
    """A 63-bit seed for one random stream of a stage, from the config seed and tags."""
    return derive_seed(int(seed), "experiment", *tags)


def _generator(seed: int, *tags: object) -> torch.Generator:
    return torch.Generator().manual_seed(stage_seed(seed, *tags))


def _device(ctx: StageContext) -> torch.device:
    return torch.device(ctx.device)


def _load_split(dataset: str, split: str, shape: list[int], ctx: StageContext):
    from bayeslrp import data

    if dataset == "synthetic":
        return data.load("synthetic", split, shape=tuple(shape), n_classes=N_CLASSES,
                         seed=SYNTHETIC_DATA_SEED)
    x, y = data.load(dataset, split, data_dir=ctx.data_dir)
    if list(x.shape[1:]) != list(shape):
        raise BayesLRPError(f"{dataset} {split} images have shape {list(x.shape[1:])}, the "
                            f"config expects {list(shape)}")
    return x, y


def _load_model(ref: ArtifactRef, ctx: StageContext):
    from bayeslrp.ensemble import Ensemble

    return Ensemble.load(ref.directory / MODEL_DIR, device=_device(ctx))


def _images(ref: ArtifactRef) -> torch.Tensor:
    """Images of a ``data`` or ``attack`` artifact (both store them as ``x``)."""
    name = DATA_FILE if ref.store.load_record(ref.key)["stage"] == "data" else IMAGES_FILE
    return ref.tensors(name)["x"]


def _is_bayesian(model_facts: Mapping[str, Any]) -> bool:
    """A BNN explained and attacked as one; a selected posterior sample counts as a det net."""
    return model_facts["method"] in ("vi", "hmc") and "own_sample" not in model_facts


def _image_facts(ref: ArtifactRef) -> dict[str, Any]:
    """``{"source": "clean"}`` for the data, the attack's facts for attacked images."""
    facts = ref.facts
    return facts.get("attack", {"source": "clean"})


# --------------------------------------------------------------------------- data


def run_data(params: dict, inputs: Mapping[str, ArtifactRef], ctx: StageContext) -> StageOutput:
    """The attacked test points: a balanced seeded subset of the test split.

    Params: ``dataset``, ``n_points``, ``shape``, ``seed``. Output ``data.safetensors`` with
    ``x [n, C, H, W]``, ``y [n]`` and ``points [n]`` (test-set indices, sorted).
    """
    from bayeslrp import data

    x, y = _load_split(params["dataset"], "test", params["shape"], ctx)
    points = data.balanced_subset(y, int(params["n_points"]), seed=stage_seed(params["seed"],
                                                                               "points"),
                                  n_classes=N_CLASSES)
    tensors = {"x": x[points].contiguous(), "y": y[points].contiguous(), "points": points}
    return StageOutput({DATA_FILE: tensors_to_bytes(tensors)},
                       {"facts": {"dataset": params["dataset"]}, "n_points": int(points.numel()),
                        "n_test": int(y.numel())})


# --------------------------------------------------------------------------- train


def _train_subset(x: torch.Tensor, y: torch.Tensor, n_train: int | None, seed: int):
    if n_train is None or n_train >= x.shape[0]:
        return x, y
    idx = torch.randperm(x.shape[0], generator=_generator(seed, "n_train"))[:n_train]
    idx = idx.sort().values
    return x[idx], y[idx]


def _adv_mode(model: dict) -> str:
    if model["adv_attack"] == "pgd":
        if model["adv_mix"]:
            raise BayesLRPError("adversarial training with adv_attack: pgd and adv_mix: true is "
                                "not implemented; use adv_mix: false")
        return "pgd"
    return "mix" if model["adv_mix"] else "fgsm"


def _diagnostics(method: str, meta: dict) -> dict[str, Any]:
    """The few training diagnostics shown in models.json and the report."""
    hist = meta.get("history") or {}

    def last(key: str):
        values = hist.get(key) or []
        return float(values[-1]) if values else None

    if method in ("det", "adv"):
        return {"final_loss": last("loss"), "final_train_accuracy": last("train_accuracy")}
    if method == "vi":
        nll, kl = last("nll"), last("kl_per_point")
        return {"elbo_per_point": None if nll is None or kl is None else -(nll + kl),
                "nll_per_point": nll, "kl_per_point": kl}
    steps = meta.get("step_size") or []
    return {"acceptance": meta.get("acceptance_rate"), "divergences": meta.get("divergences"),
            "step_size": float(np.mean(steps)) if steps else None,
            **({"rhat_max": meta["diagnostics"].get("rhat_max")}
               if isinstance(meta.get("diagnostics"), dict) and "rhat_max" in meta["diagnostics"]
               else {})}


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj


def run_train(params: dict, inputs: Mapping[str, ArtifactRef], ctx: StageContext) -> StageOutput:
    """Train one model and save it as an Ensemble (``model/`` in the artifact).

    Params: ``dataset``, ``n_train`` (a seeded random subset of the training split, or all),
    ``shape``, ``model`` (the model's config without its name), ``seed``. Input ``init``
    (optional): the det model an HMC chain starts from. The test accuracy of the predictive
    mean over all samples on the full test split goes into the meta.
    """
    from bayeslrp import nets, train
    from bayeslrp.train.hmc import hmc as train_hmc
    from bayeslrp.train.vi import vi as train_vi

    spec, seed = params["model"], int(params["seed"])
    method, arch = spec["method"], spec["arch"]
    device = _device(ctx)
    x, y = _load_split(params["dataset"], "train", params["shape"], ctx)
    x, y = _train_subset(x, y, params["n_train"], seed)
    kwargs: dict[str, Any] = {"in_shape": list(params["shape"]), "n_classes": N_CLASSES}
    if spec.get("hidden") is not None:
        kwargs["hidden"] = spec["hidden"]
    if spec.get("channels") is not None:
        kwargs["channels"] = spec["channels"]
    net = nets.build(arch, seed=stage_seed(seed, "init"), **kwargs)
    x, y = x.to(device), y.to(device)
    common = {"seed": seed, "progress": ctx.progress, "device": device}
    if method == "det":
        ens = train.deterministic(net, x, y, epochs=spec["epochs"], lr=spec["lr"],
                                  batch_size=spec["batch_size"], **common)
    elif method == "adv":
        extra = ({"pgd_steps_": spec["adv_steps"], "pgd_alpha": spec["adv_alpha"]}
                 if spec["adv_attack"] == "pgd" else {})
        ens = train.adversarial(net, x, y, eps=spec["adv_eps"], mode=_adv_mode(spec),
                                epochs=spec["epochs"], lr=spec["lr"],
                                batch_size=spec["batch_size"], **extra, **common)
    elif method == "vi":
        ens = train_vi(net, x, y, epochs=spec["epochs"], lr=spec["lr"],
                       prior_std=spec["prior_std"], n_samples=spec["n_samples"],
                       batch_size=spec["batch_size"],
                       init_std=spec.get("init_std", VI_KEY_LEGACY_VALUES["init_std"]),
                       lr_schedule=spec.get("lr_schedule", VI_KEY_LEGACY_VALUES["lr_schedule"]),
                       **common)
    elif method == "hmc":
        init = _load_model(inputs["init"], ctx) if "init" in inputs else None
        per_chain = (spec["n_samples"] if spec["mode"] == "blocks"
                     else spec["n_samples"] // spec["chains"])
        checkpoint = None if ctx.scratch is None else ctx.scratch / "hmc"
        ens = train_hmc(net, x, y, n_samples=per_chain, warmup=spec["warmup"],
                        steps=spec["steps"], step_size=spec["step_size"],
                        prior_std=spec["prior_std"], mode=spec["mode"], subset=spec["subset"],
                        block_size=spec["block_size"] or 4000, chains=spec["chains"],
                        init=spec["init"], init_params=init,
                        mass="diag" if spec["adapt_mass"] else "identity",
                        target_accept=spec["target_accept"], checkpoint_dir=checkpoint,
                        **common)
    else:  # pragma: no cover - the config schema admits no other method
        raise BayesLRPError(f"unknown training method {method!r}")
    if ens.n_samples != spec.get("n_samples", 1):
        raise BayesLRPError(f"{method} training returned {ens.n_samples} samples, the config "
                            f"asks for {spec.get('n_samples', 1)}")
    x_test, y_test = _load_split(params["dataset"], "test", params["shape"], ctx)
    accuracy = ens.accuracy(x_test.to(device), y_test.to(device))
    ens = ens.to("cpu")
    facts = {"method": method, "arch": arch, "dataset": params["dataset"],
             "n_samples": ens.n_samples}
    meta = {"facts": {"model": facts}, "test_accuracy": accuracy, "n_test": int(y_test.numel()),
            "n_train": int(x.shape[0]),
            "diagnostics": _json_safe(_diagnostics(method, ens.meta))}
    return StageOutput(lambda directory: ens.save(directory / MODEL_DIR), meta)


# --------------------------------------------------------------------------- select


def run_select(params: dict, inputs: Mapping[str, ArtifactRef],
               ctx: StageContext) -> StageOutput:
    """One posterior sample of a Bayesian model as an S = 1 model (``ens.select([j])``).

    Params: ``sample`` (j), ``dataset`` and ``shape`` (for the sample's test accuracy). Input
    ``model``: the trained Bayesian model. The output is a model artifact like ``train``'s;
    its facts keep the parent's method and add ``own_sample: j``, so that later stages attack
    and explain it as a deterministic net.
    """
    j = int(params["sample"])
    parent = inputs["model"]
    ens = _load_model(parent, ctx)
    if not 0 <= j < ens.n_samples:
        raise BayesLRPError(f"sample {j} does not exist; the model keeps {ens.n_samples}")
    ens = ens.select([j])
    x_test, y_test = _load_split(params["dataset"], "test", params["shape"], ctx)
    accuracy = ens.accuracy(x_test.to(ens.device), y_test.to(ens.device))
    facts = {**parent.facts["model"], "n_samples": 1, "own_sample": j}
    meta = {"facts": {"model": facts}, "test_accuracy": accuracy, "n_test": int(y_test.numel()),
            "n_train": parent.meta.get("n_train"),
            "diagnostics": {"parent_test_accuracy": parent.meta.get("test_accuracy")}}
    return StageOutput(lambda directory: ens.to("cpu").save(directory / MODEL_DIR), meta)


# --------------------------------------------------------------------------- attack


def _lrp_options(explain: Mapping[str, Any], model_bayesian: bool) -> dict[str, Any]:
    """Keyword arguments of :func:`bayeslrp.lrp.explain` for the output layer."""
    opts: dict[str, Any] = dict(explain.get("rule_args", {}))
    if "output_seed" in explain:
        opts["seed"] = explain["output_seed"]
    if "inner_seed" in explain:
        opts["inner"] = explain["inner_seed"]
    bayes = explain.get("bayes", "mean")
    if bayes == "avg_prediction":
        raise BayesLRPError("explain.bayes: avg_prediction is not implemented by "
                            "bayeslrp.lrp.explain; use mean or per_sample_argmax")
    if model_bayesian:
        opts["target_mode"] = "per_sample_argmax" if bayes == "per_sample_argmax" else "predictive"
    return opts


def run_attack(params: dict, inputs: Mapping[str, ArtifactRef],
               ctx: StageContext) -> StageOutput:
    """Attack the data points of ``data`` on the model ``model``.

    Params: ``attack`` (method and settings; ``n_samples`` already resolved to the samples
    the attack uses), ``seed``, and for saliency attacks ``explain`` (how the attacked
    output-layer explanation is formed). Output ``images.safetensors`` with ``x`` (the
    adversarial images, in the order of the data points).
    """
    from bayeslrp import attacks

    spec, seed = params["attack"], int(params["seed"])
    device = _device(ctx)
    ens = _load_model(inputs["model"], ctx)
    d = inputs["data"].tensors(DATA_FILE)
    x, y = d["x"].to(device), d["y"].to(device)
    method, n = spec["method"], int(spec["n_samples"])
    model_facts = inputs["model"].facts["model"]
    bayesian = _is_bayesian(model_facts)
    if method == "fgsm":
        x_adv = attacks.fgsm(ens, x, y, eps=spec["eps"], n_samples=n, mode=spec["mode"])
    elif method == "pgd":
        targeted = None
        if spec["targeted"]:
            shift = torch.randint(1, N_CLASSES, (y.shape[0],), generator=_generator(
                seed, "pgd-target"))
            targeted = (y.cpu() + shift).remainder(N_CLASSES).to(device)
        x_adv = attacks.pgd(ens, x, y, eps=spec["eps"], steps=spec["steps"],
                            alpha=spec["alpha"], n_samples=n, mode=spec["mode"],
                            restarts=spec["restarts"], targeted=targeted,
                            seed=stage_seed(seed, "pgd-start"))
    elif method in SALIENCY:
        from bayeslrp import lrp

        opts = _lrp_options(params["explain"], bayesian)
        # The rule goes in as an object: its parameters (alpha, beta, gamma) would collide
        # with the attacks' own keywords of the same names.
        rule = lrp.make_rule(spec["rule"], **params["explain"].get("rule_args", {}))
        for name in params["explain"].get("rule_args", {}):
            opts.pop(name, None)
        if "seed" in opts:  # the explanation's relevance seed, not a random seed
            opts["lrp_seed"] = opts.pop("seed")
        if method == "topk":
            x_adv = attacks.topk(ens, x, None, eps=spec["eps"], k=spec["k"], alpha=spec["alpha"],
                                 steps=spec["steps"], rule=rule, layer=None, n_samples=n,
                                 **opts)
        elif method == "region":
            x_adv = attacks.region(ens, x, None, eps=spec["eps"], k=spec["k"],
                                   alpha=spec["alpha"], steps=spec["steps"], rule=rule,
                                   layer=None, n_samples=n, seed=stage_seed(seed, "region"),
                                   **opts)
        else:
            other = attacks.random_other_indices(x.shape[0], stage_seed(seed, "beta-target"))
            x_adv = attacks.manipulate(ens, x, x[other.to(device)], eps=spec["eps"],
                                       gamma=spec["gamma"], lr=spec["lr"], steps=spec["steps"],
                                       beta=spec["beta"], rule=rule, layer=None, n_samples=n,
                                       **opts)
    else:  # pragma: no cover
        raise BayesLRPError(f"unknown attack method {method!r}")
    mode = spec.get("mode", "") if (bayesian and method in ("fgsm", "pgd")) else ""
    facts = {"model": model_facts,
             "attack": {"source": "attack", "method": method, "mode": mode, "n_samples": n}}
    return StageOutput({IMAGES_FILE: tensors_to_bytes({"x": x_adv.detach()})}, {"facts": facts})


# --------------------------------------------------------------------------- predict


def cumulative_probs(ens, x: torch.Tensor, n_list: list[int]) -> torch.Tensor:
    """Predictive mean softmax over the first ``n`` samples for every ``n``: ``[len, B, C]``.

    One pass over the largest ``n``; the per-sample softmax is accumulated in float64 so the
    mean of the first ``n`` samples is exact up to rounding, whatever ``n``.
    """
    n_max = max(n_list)
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], PREDICT_CHUNK_IMAGES):
            xb = x[start:start + PREDICT_CHUNK_IMAGES].to(ens.device)
            probs = ens.logits(xb, n_max).softmax(-1).to(torch.float64)  # [S, b, C]
            csum = probs.cumsum(0)
            out.append(torch.stack([csum[n - 1] / n for n in n_list]))
    return torch.cat(out, dim=1).cpu()


def run_predict(params: dict, inputs: Mapping[str, ArtifactRef],
                ctx: StageContext) -> StageOutput:
    """Predictive probabilities of ``images`` for every sample count.

    Output ``probs.safetensors``: ``probs [len(n), B, C]`` (float64), ``n_samples [len(n)]``.
    """
    ens = _load_model(inputs["model"], ctx)
    n_list = [int(n) for n in params["n_samples"]]
    probs = cumulative_probs(ens, _images(inputs["images"]), n_list)
    facts = {"model": inputs["model"].facts["model"], "images": _image_facts(inputs["images"])}
    return StageOutput({PROBS_FILE: tensors_to_bytes(
        {"probs": probs, "n_samples": torch.tensor(n_list, dtype=torch.int64)})},
        {"facts": facts})


# --------------------------------------------------------------------------- explain


def _is_output_layer(ens, layer: int) -> bool:
    from bayeslrp import nets

    return int(layer) == nets.learnable_layers(ens.module)[-1]


def explain_cumulative(ens, x: torch.Tensor, *, rule: str, layer: int, n_list: list[int],
                       options: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over the first ``n`` samples of the per-sample heatmaps, for every ``n``.

    The per-sample heatmaps of the largest ``n`` are computed once (in image chunks, so at
    most :data:`EXPLAIN_CHUNK_BYTES` of them are held at a time) and averaged over their first
    ``n`` samples. At the output layer with ``target_mode="predictive"`` every sample explains
    the class of the predictive mean over the samples used; the class of the first ``n``
    samples can differ from that of all of them, so the images where it does are explained
    again with ``n`` samples and that class.

    Returns
    -------
    (Tensor, Tensor)
        ``mean, std`` of shape ``[len(n_list), B, H, W]`` (float32, CPU); ``std`` is the
        population standard deviation over the samples.
    """
    from bayeslrp import lrp

    opts = dict(options)
    n_max = max(n_list)
    predictive = _is_output_layer(ens, layer) and opts.get("target_mode",
                                                           "predictive") == "predictive"
    if predictive:
        opts.pop("target_mode", None)
    h, w = x.shape[-2:]
    chunk = max(1, EXPLAIN_CHUNK_BYTES // (n_max * h * w * 4))
    means, stds = [], []
    for start in range(0, x.shape[0], chunk):
        xb = x[start:start + chunk].to(ens.device)
        classes = None
        if predictive:
            classes = cumulative_probs(ens, xb, n_list).argmax(-1).to(ens.device)  # [len, b]
            opts["target"] = classes[-1]
        Rs = lrp.explain(ens, xb, rule=rule, layer=layer, n_samples=n_max, reduce=None, **opts)
        mean = torch.stack([Rs[:n].mean(0) for n in n_list])
        std = torch.stack([Rs[:n].std(0, correction=0) for n in n_list])
        del Rs
        if classes is not None:
            for i, n in enumerate(n_list[:-1]):
                redo = (classes[i] != classes[-1]).nonzero().flatten()
                if redo.numel():
                    opts["target"] = classes[i][redo]
                    Rn = lrp.explain(ens, xb[redo], rule=rule, layer=layer, n_samples=n,
                                     reduce=None, **opts)
                    mean[i, redo] = Rn.mean(0)
                    std[i, redo] = Rn.std(0, correction=0)
        means.append(mean.float().cpu())
        stds.append(std.float().cpu())
    return torch.cat(means, dim=1), torch.cat(stds, dim=1)


def run_explain(params: dict, inputs: Mapping[str, ArtifactRef],
                ctx: StageContext) -> StageOutput:
    """LRP heatmaps of ``images`` at one layer under one rule, for every sample count.

    Params: ``rule``, ``rule_args``, ``layer``, ``n_samples``, and ``output_seed`` (output
    layer) or ``inner_seed`` (inner layer), ``bayes`` (Bayesian models). Output
    ``heatmaps.safetensors``: ``mean`` and ``std`` ``[len(n), B, H, W]``, ``n_samples``.
    """
    ens = _load_model(inputs["model"], ctx)
    opts = _lrp_options(params, _is_bayesian(inputs["model"].facts["model"]))
    n_list = [int(n) for n in params["n_samples"]]
    mean, std = explain_cumulative(ens, _images(inputs["images"]), rule=params["rule"],
                                   layer=int(params["layer"]), n_list=n_list, options=opts)
    facts = {"model": inputs["model"].facts["model"], "images": _image_facts(inputs["images"]),
             "rule": params["rule"], "layer": int(params["layer"])}
    tensors = {"mean": mean, "std": std, "n_samples": torch.tensor(n_list, dtype=torch.int64)}
    return StageOutput({HEATMAPS_FILE: tensors_to_bytes(tensors)}, {"facts": facts})


# --------------------------------------------------------------------------- metrics


def _percent_int(k: float) -> int:
    if float(k) != int(k):
        raise BayesLRPError(f"metrics.k must be whole percentages for the results table; got {k}")
    return int(k)


def run_metrics(params: dict, inputs: Mapping[str, ArtifactRef],
                ctx: StageContext) -> StageOutput:
    """Per-image robustness table of one model × attack × rule × layer.

    One row per sample count × k × image: ``n_samples, k, point, label, pred_clean,
    pred_adv, success, lrp_robustness, nnz, softmax_robustness``.
    """
    from bayeslrp import metrics

    d = inputs["data"].tensors(DATA_FILE)
    clean, adv = inputs["clean"].tensors(HEATMAPS_FILE), inputs["adv"].tensors(HEATMAPS_FILE)
    p_clean = inputs["p_clean"].tensors(PROBS_FILE)["probs"]
    p_adv = inputs["p_adv"].tensors(PROBS_FILE)["probs"]
    n_list = [int(n) for n in params["n_samples"]]
    for name, t in (("clean", clean), ("adv", adv)):
        if t["n_samples"].tolist() != n_list:
            raise BayesLRPError(f"the {name} explanations hold sample counts "
                                f"{t['n_samples'].tolist()}, expected {n_list}; rerun")
    y, points = d["y"], d["points"]
    frames = []
    for i, n in enumerate(n_list):
        pred_c, pred_a = p_clean[i].argmax(-1), p_adv[i].argmax(-1)
        soft = metrics.softmax_robustness(p_clean[i], p_adv[i])
        success = metrics.attack_success(y, pred_c, pred_a)
        for k in params["k"]:
            res = metrics.lrp_robustness_details(clean["mean"][i], adv["mean"][i], k=k,
                                                 mode=params["topk_mode"], ties=params["ties"])
            frames.append(pd.DataFrame({
                "n_samples": np.full(points.numel(), n, dtype=np.int64),
                "k": np.full(points.numel(), _percent_int(k), dtype=np.int64),
                "point": points.numpy().astype(np.int64),
                "label": y.numpy().astype(np.int64),
                "pred_clean": pred_c.numpy().astype(np.int64),
                "pred_adv": pred_a.numpy().astype(np.int64),
                "success": success.numpy().astype(bool),
                "lrp_robustness": res.robustness.double().numpy(),
                "nnz": res.nnz.numpy().astype(np.int64),
                "softmax_robustness": soft.double().numpy(),
            }))
    table = pd.concat(frames, ignore_index=True)
    adv_facts = inputs["adv"].facts
    facts = {"model": adv_facts["model"], "attack": adv_facts["images"],
             "rule": adv_facts["rule"], "layer": adv_facts["layer"]}
    return StageOutput({TABLE_FILE: table_to_bytes(table)}, {"facts": facts})


# --------------------------------------------------------------------------- compare


#: Columns of ``results.parquet`` in order (schema in docs/experiments.md).
RESULT_COLUMNS = ("dataset", "model", "method", "arch", "attack", "attack_mode", "rule",
                  "layer", "n_samples", "k", "point", "label", "pred_clean", "pred_adv",
                  "success", "lrp_robustness", "nnz", "softmax_robustness", "source_model",
                  "own_sample")
RESULT_ORDER = ["dataset", "model", "attack", "rule", "layer", "n_samples", "k", "point"]
GROUP = ["dataset", "attack", "rule", "layer", "k"]


def _results_table(params: dict, inputs: Mapping[str, ArtifactRef]) -> pd.DataFrame:
    frames = []
    for entry in params["tables"]:
        ref = inputs[entry["label"]]
        facts = ref.facts
        df = ref.table()
        model = facts["model"]
        df.insert(0, "dataset", model["dataset"])
        df.insert(1, "model", entry["model"])
        df.insert(2, "method", model["method"])
        df.insert(3, "arch", model["arch"])
        df.insert(4, "attack", entry["attack"])
        df.insert(5, "attack_mode", facts["attack"].get("mode", ""))
        df.insert(6, "rule", entry["rule"])
        df.insert(7, "layer", np.int64(entry["layer"]))
        # the model whose attack made x̃ (transfer control) and the posterior sample used as
        # a deterministic net (own-attack control; -1: none)
        df["source_model"] = entry.get("source_model", entry["model"])
        df["own_sample"] = np.int64(model.get("own_sample", -1))
        frames.append(df)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in RESULT_COLUMNS})
    table = pd.concat(frames, ignore_index=True)[list(RESULT_COLUMNS)]
    table["layer"] = table["layer"].astype(np.int64)
    return table.sort_values(RESULT_ORDER, kind="mergesort").reset_index(drop=True)


def _differences(results: pd.DataFrame, pairs: list) -> pd.DataFrame:
    """Per-image ``model − baseline`` differences of LRP and softmax robustness."""
    cols = GROUP + ["point"]
    frames = []
    for model, baseline in pairs:
        mine = results[results["model"] == model]
        base = results[results["model"] == baseline]
        base = base[cols + ["lrp_robustness", "softmax_robustness", "n_samples"]]
        if base["n_samples"].nunique() > 1:  # a Bayesian baseline: compare at its largest n
            base = base[base["n_samples"] == base["n_samples"].max()]
        base = base.drop(columns="n_samples").rename(columns={
            "lrp_robustness": "baseline_robustness",
            "softmax_robustness": "baseline_softmax_robustness"})
        merged = mine.merge(base, on=cols, how="inner", validate="many_to_one")
        merged = merged.assign(baseline=baseline,
                               diff=merged["lrp_robustness"] - merged["baseline_robustness"],
                               softmax_diff=merged["softmax_robustness"]
                               - merged["baseline_softmax_robustness"])
        frames.append(merged[["dataset", "model", "method", "arch", "baseline", "attack",
                              "attack_mode", "rule", "layer", "n_samples", "k", "point",
                              "lrp_robustness", "baseline_robustness", "diff",
                              "softmax_robustness", "baseline_softmax_robustness",
                              "softmax_diff"]])
    columns = ["dataset", "model", "method", "arch", "baseline", "attack", "attack_mode",
               "rule", "layer", "n_samples", "k", "point", "lrp_robustness",
               "baseline_robustness", "diff", "softmax_robustness",
               "baseline_softmax_robustness", "softmax_diff"]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["dataset", "model", "attack", "rule", "layer", "n_samples", "k",
                            "point"], kind="mergesort").reset_index(drop=True)


def _tests(diffs: pd.DataFrame, own: set | frozenset = frozenset()) -> pd.DataFrame:
    """One-sided Mann-Whitney tests with stars.

    ``baseline<model``: the baseline's LRP robustness is stochastically lower than the
    model's (the Bay − Det and Adv − Det comparisons). ``adv<bayes``: the adversarially
    trained model's LRP robustness is stochastically lower than that of a Bayesian model with
    the same baseline, on the same images (paper 000, §VII-H). The models in ``own`` (posterior
    samples used as deterministic nets) are not Bayesian models there.
    """
    from bayeslrp import stats

    rows = []
    keys = ["dataset", "baseline", "model", "method", "attack", "rule", "layer", "n_samples", "k"]
    for key, g in diffs.groupby(keys, sort=True):
        mw = stats.mann_whitney(g["baseline_robustness"], g["lrp_robustness"], "less")
        rec = dict(zip(keys, key))
        rows.append({**rec, "test": "baseline<model", "other": rec["baseline"],
                     "other_n_samples": 1, "n_images": int(len(g)),
                     "median_diff": float(g["diff"].median()),
                     "median_other_diff": 0.0, "u": mw.u, "pvalue": mw.pvalue,
                     "stars": mw.stars})
    adv = diffs[diffs["method"] == "adv"]
    bay = diffs[diffs["method"].isin(["vi", "hmc"]) & ~diffs["model"].isin(sorted(own))]
    for key, b in bay.groupby(keys, sort=True):
        rec = dict(zip(keys, key))
        for adv_model, a in adv[(adv["dataset"] == rec["dataset"])
                                & (adv["baseline"] == rec["baseline"])
                                & (adv["attack"] == rec["attack"])
                                & (adv["rule"] == rec["rule"])
                                & (adv["layer"] == rec["layer"])
                                & (adv["k"] == rec["k"])].groupby("model", sort=True):
            mw = stats.mann_whitney(a["lrp_robustness"], b["lrp_robustness"], "less")
            rows.append({**rec, "test": "adv<bayes", "other": adv_model, "other_n_samples": 1,
                         "n_images": int(len(b)), "median_diff": float(b["diff"].median()),
                         "median_other_diff": float(a["diff"].median()), "u": mw.u,
                         "pvalue": mw.pvalue, "stars": mw.stars})
    columns = keys + ["test", "other", "other_n_samples", "n_images", "median_diff",
                      "median_other_diff", "u", "pvalue", "stars"]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    out = pd.DataFrame(rows)[columns]
    return out.sort_values(["dataset", "model", "test", "other", "attack", "rule", "layer",
                            "n_samples", "k"], kind="mergesort").reset_index(drop=True)


def _spearman(results: pd.DataFrame) -> pd.DataFrame:
    from bayeslrp import stats

    keys = ["dataset", "model", "method", "arch", "attack", "rule", "layer", "n_samples", "k"]
    rows = []
    for key, g in results.groupby(keys, sort=True):
        res = stats.spearman(g["lrp_robustness"], g["softmax_robustness"])
        rows.append({**dict(zip(keys, key)), "rho": res.rho, "pvalue": res.pvalue, "n": res.n})
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in keys + ["rho", "pvalue", "n"]})
    return pd.DataFrame(rows)


def run_compare(params: dict, inputs: Mapping[str, ArtifactRef],
                ctx: StageContext) -> StageOutput:
    """Assemble the results table and compare every model with its baseline.

    Params: ``pairs`` (``[model, baseline]``) and ``tables`` (label, model, attack, rule,
    layer of every metrics table, whose artifacts are the inputs by label). Outputs:
    ``results.parquet`` (the run's results table, sorted), ``differences.parquet``
    (per-image model − baseline), ``tests.parquet`` (Mann-Whitney with stars),
    ``spearman.parquet`` (LRP vs softmax robustness).
    """
    results = _results_table(params, inputs)
    diffs = _differences(results, [tuple(p) for p in params["pairs"]])
    files = {RESULTS_FILE: table_to_bytes(results.reset_index(drop=True)),
             DIFFERENCES_FILE: table_to_bytes(diffs),
             TESTS_FILE: table_to_bytes(_tests(
                 diffs, set(results.loc[results["own_sample"] >= 0, "model"]))),
             SPEARMAN_FILE: table_to_bytes(_spearman(results))}
    return StageOutput(files, {"rows": int(len(results))})


#: Stage name → stage function.
STAGE_FUNCTIONS: dict[str, Callable[[dict, Mapping[str, ArtifactRef], StageContext],
                                    StageOutput]] = {
    "data": run_data, "train": run_train, "select": run_select, "attack": run_attack,
    "predict": run_predict,
    "explain": run_explain, "metrics": run_metrics, "compare": run_compare,
}


def remove_scratch(path: Path | None) -> None:
    """Delete a stage's scratch directory once its artifact is stored."""
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
