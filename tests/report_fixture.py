"""A small but realistic fake run directory for the figure and report tests.

``write_fake_run`` writes what the experiment runner writes — ``results.parquet`` with the
results schema, ``heatmaps/*.safetensors``, ``models.json``, ``manifest.json`` and
``config.yaml`` — from seeded random numbers shaped like the paper's findings (deterministic
explanations fragile, Bayesian ones more robust and correlated with softmax robustness).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from safetensors.numpy import save_file

ARCH = "fc2"
LAYERS = (1, 3, 5)
_ACCURACY = {"det": 0.97, "adv": 0.95, "vi": 0.96, "hmc": 0.96}
_FLIP = {"det": {"fgsm": 0.85, "pgd": 0.95}, "adv": {"fgsm": 0.35, "pgd": 0.45}}
_LRP_BETA = {"det": (2.0, 5.0), "adv": (2.6, 4.4)}


def model_name(method: str, dataset: str, datasets) -> str:
    """Model names: the method, suffixed by the dataset when the run has several."""
    return method if len(datasets) == 1 else f"{method}_{dataset}"


def _digit_images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``[n, 1, size, size]`` stroke-like blobs in [0, 1] on a zero background."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    images = np.zeros((n, 1, size, size))
    for i in range(n):
        for _ in range(4):
            cy, cx = rng.uniform(0.3, 0.7, size=2)
            images[i, 0] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.06 ** 2))
    images = np.clip(images, 0, 1)
    images[images < 0.1] = 0.0
    return images


def _smooth_field(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Smooth signed random fields ``[n, size, size]``."""
    coarse = rng.normal(size=(n, 4, 4))
    return np.kron(coarse, np.ones((size // 4 + 1, size // 4 + 1)))[:, :size, :size]


def write_fake_run(run_dir, *, seed: int = 0, datasets=("mnist",),
                   methods=("det", "adv", "hmc"), attacks=("fgsm", "pgd"),
                   rules=("epsilon", "gamma", "alphabeta"), n_samples=(10, 50, 100),
                   n_points: int = 40, n_heatmap_points: int = 4,
                   heatmap_rules=("epsilon",), size: int = 28,
                   det_never_fails: bool = False, models=None,
                   baseline: str | None = "det", ks=None) -> Path:
    """Write a fake finished run into ``run_dir`` and return its path.

    Parameters
    ----------
    run_dir : path
        Target directory (created).
    seed : int
        Seed of every random number.
    datasets, methods, attacks, rules, n_samples
        The grid; models are ``fc2`` networks with learnable layers 1, 3, 5; Bayesian
        methods (``vi``, ``hmc``) get one row set per ``n_samples`` value.
    n_points : int
        Attacked test points per dataset (class-balanced labels).
    n_heatmap_points : int
        Points whose heatmaps are saved (the first ones), for the rules in ``heatmap_rules``,
        for every model at its largest sample count.
    size : int
        Image side (pixels P = size²).
    det_never_fails : bool
        Make every deterministic attack succeed (to exercise the Fig. 6 fallback); otherwise
        the first saved point is a successful attack on ``det`` and the second a failed
        attack on every model.
    models : sequence of (str, str), optional
        Explicit ``(name, method)`` models (one dataset), instead of one model per method
        named after it.
    baseline : str or None
        Name (without the dataset suffix) of the model every other one is compared with in
        ``differences.parquet`` / ``tests.parquet`` (the config's ``compare.baseline``);
        ``None`` or absent: no comparison tables are written.
    ks : sequence of (float, int, bool), optional
        Top-k rows ``(k, k_pixels, from a pixel count)`` instead of ``k = 20`` without a
        ``k_pixels`` column; every k gets the same robustness values. The config then has a
        ``metrics`` section (``k`` the percentages, ``k_pixels`` the counts).
    """
    rng = np.random.default_rng(seed)
    run = Path(run_dir)
    (run / "heatmaps").mkdir(parents=True, exist_ok=True)
    pixels = size * size
    top = int(0.2 * pixels)
    frames, entries = [], []
    for dataset in datasets:
        points = np.sort(rng.choice(10000, size=n_points, replace=False))
        labels = rng.permutation(np.arange(n_points) % 10)
        images = _digit_images(rng, n_heatmap_points, size)
        named = models or [(model_name(m, dataset, datasets), m) for m in methods]
        for name, method in named:
            counts = tuple(n_samples) if method in ("vi", "hmc") else (1,)
            correct = rng.random(n_points) < _ACCURACY[method]
            correct[:n_heatmap_points] = True
            if det_never_fails and method == "det":
                correct[:] = True
            pred_clean = np.where(correct, labels, (labels + rng.integers(1, 10, n_points)) % 10)
            entries.append(_model_entry(name, method, dataset, counts, correct.mean(), rng))
            for attack in attacks:
                for n in counts:
                    if method in _FLIP:
                        p_flip = _FLIP[method][attack]
                    else:
                        p_flip = 0.25 * (10 / n) ** 0.4
                    flipped = rng.random(n_points) < p_flip
                    if det_never_fails and method == "det":
                        flipped[:] = True
                    elif n_heatmap_points > 1:
                        # The first saved point is a successful attack on det, the second a
                        # failed one on every model: Fig. 6 must skip the first.
                        flipped[0] = method == "det"
                        flipped[1] = False
                    wrong = (labels + rng.integers(1, 10, n_points)) % 10
                    pred_adv = np.where(correct & ~flipped, labels,
                                        np.where(correct, wrong, pred_clean))
                    success = correct & (pred_adv != labels)
                    soft = np.where(success, rng.uniform(0.02, 0.5, n_points),
                                    rng.uniform(0.55, 1.0, n_points))
                    for rule in rules:
                        for layer in LAYERS:
                            if method in _LRP_BETA:
                                lrp = rng.beta(*_LRP_BETA[method], n_points)
                            else:
                                centre = 0.5 + 0.08 * np.log10(n / 10) + 0.05 * (layer == 1)
                                lrp = centre + 0.4 * (soft - 0.75) + rng.normal(0, 0.08,
                                                                                  n_points)
                            lrp = np.round(np.clip(lrp, 0, 1) * top) / top
                            nnz = (rng.integers(60, 500, n_points) if layer == LAYERS[0]
                                   else rng.integers(300, pixels + 1, n_points))
                            frames.append(pd.DataFrame({
                                "dataset": dataset, "model": name, "method": method,
                                "arch": ARCH, "attack": attack,
                                "attack_mode": "expected_gradient" if method in ("vi", "hmc")
                                else "",
                                "rule": rule, "layer": layer, "n_samples": n, "k": 20,
                                "point": points, "label": labels, "pred_clean": pred_clean,
                                "pred_adv": pred_adv, "success": success,
                                "lrp_robustness": lrp, "nnz": nnz,
                                "softmax_robustness": soft}))
                n_max = counts[-1]
                for rule in heatmap_rules:
                    if rule not in rules:
                        continue
                    for layer in LAYERS:
                        _write_heatmaps(run, rng, name, method, attack, rule, layer, n_max,
                                        images, points[:n_heatmap_points])
    results = pd.concat(frames, ignore_index=True)
    if ks:
        results = pd.concat([results.assign(k=float(k), k_pixels=np.int64(kp))
                             for k, kp, _ in ks], ignore_index=True)
    results.to_parquet(run / "results.parquet", index=False)
    names = [n for n, _ in models] if models else [m for m in methods]
    if baseline is not None and baseline in names:
        # the compare stage's tables, as a run with compare.baseline writes them
        from bayeslrp import analysis

        pairs = {model_name(m, d, datasets) if not models else m:
                 model_name(baseline, d, datasets) if not models else baseline
                 for d in datasets for m in names if m != baseline}
        diffs = analysis.paired_differences(results, pairs)
        diffs.to_parquet(run / "differences.parquet", index=False)
        analysis.mann_whitney_tests(diffs).to_parquet(run / "tests.parquet", index=False)
    (run / "models.json").write_text(json.dumps(entries, indent=2))
    (run / "manifest.json").write_text(json.dumps(
        _manifest(seed, [n for n, _ in models] if models else methods, attacks), indent=2))
    config = {"name": "fake", "seed": seed, "datasets": list(datasets),
              "points": n_points,
              "models": {name: {"method": m, "arch": ARCH, "dataset": d} for d in datasets
                         for name, m in (models or [(model_name(m, d, datasets), m)
                                                    for m in methods])},
              "attacks": {a: {"eps": 0.2} for a in attacks}, "rules": list(rules),
              "layers": list(LAYERS), "n_samples": list(n_samples), "k": 20,
              "note": "<script>alert('x')</script> & friends"}
    if ks:
        config["metrics"] = {"k": [float(k) for k, _, pixel in ks if not pixel],
                             "k_pixels": [int(kp) for _, kp, pixel in ks if pixel]}
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False,
                                                    allow_unicode=True))
    return run


def _write_heatmaps(run, rng, name, method, attack, rule, layer, n, images, points) -> None:
    b, _, size, _ = images.shape
    sign = rng.choice([-1.0, 1.0], size=images.shape)
    x_adv = np.clip(images + 0.2 * sign, 0, 1)
    field = _smooth_field(rng, b, size) + 0.5
    R = images[:, 0] * field * (10.0 ** (layer - 3))
    # Bayesian heatmaps change little under attack, deterministic ones a lot.
    keep = 0.9 if method in ("vi", "hmc") else 0.35
    field_adv = keep * field + (1 - keep) * (_smooth_field(rng, b, size) + 0.5)
    R_adv = x_adv[:, 0] * field_adv * (10.0 ** (layer - 3))
    tensors = {"R_clean": R.astype(np.float32), "R_adv": R_adv.astype(np.float32),
               "x": images.astype(np.float32), "x_adv": x_adv.astype(np.float32),
               "points": np.asarray(points, dtype=np.int64)}
    save_file(tensors, str(run / "heatmaps" / f"{name}__{attack}__{rule}__layer{layer}__n{n}"
                                               f".safetensors"))


def _model_entry(name, method, dataset, counts, accuracy, rng) -> dict:
    diagnostics: dict = {}
    if method == "hmc":
        diagnostics = {"acceptance": round(float(rng.uniform(0.7, 0.9)), 3), "divergences": 0,
                       "step_size": round(float(rng.uniform(1e-3, 5e-3)), 5),
                       "r_hat": {"max": 1.01}}
    elif method == "vi":
        diagnostics = {"elbo": round(float(rng.uniform(-900, -700)), 1)}
    return {"name": name, "method": method, "arch": ARCH, "dataset": dataset,
            "test_accuracy": round(float(0.95 + 0.04 * accuracy), 4),
            "n_samples": int(max(counts)), "diagnostics": diagnostics}


def _manifest(seed, methods, attacks) -> dict:
    """A manifest in the store's format: one finished run with per-task stage records."""
    stages = [{"label": "data", "stage": "data", "computed": True, "seconds": 0.8}]
    stages += [{"label": f"train[{m}]", "stage": "train", "computed": True, "seconds": 4.0 + i}
               for i, m in enumerate(methods)]
    stages += [{"label": f"attack[{m},{a}]", "stage": "attack", "computed": False,
                "seconds": 0.0} for m in methods for a in attacks]
    run = {"run": 0, "status": "finished", "started": "2025-01-01T00:00:00+00:00",
           "finished": "2025-01-01T00:01:00+00:00",
           "packages": {"bayeslrp": "0.1.0", "python": "3.11.2", "torch": "2.13.0"},
           "machine": {"machine": "x86_64", "cpu_count": 2, "torch_threads": 1, "cuda": None},
           "seeds": {"root": seed}, "extra": {"names": ["fixture"], "devices": ["cpu"]},
           "stages": stages}
    return {"format": 1, "artifacts": {}, "runs": [run]}