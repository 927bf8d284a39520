"""Small synthetic results tables (the compare stage's ``results.parquet`` schema) for the
analysis tests: seeded, with ties, fractional k, a second architecture, an own-attack
posterior sample and a Bayesian baseline."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bayeslrp.analysis import RESULT_COLUMNS, RESULT_ORDER

#: ``(name, method, arch, n_samples, own_sample)`` of the default table.
MODELS = (("det", "det", "fc2", (1,), -1), ("adv", "adv", "fc2", (1,), -1),
          ("vi", "vi", "fc2", (2, 4), -1), ("vi.own1", "vi", "fc2", (1,), 1),
          ("cdet", "det", "conv", (1,), -1), ("chmc", "hmc", "conv", (3,), -1))
#: Every model of :data:`MODELS` against the det model of its architecture.
BASELINES = {"adv": "det", "vi": "det", "vi.own1": "det", "chmc": "cdet"}
#: Two deterministic models, neither named det, against a VI baseline.
OTHER_MODELS = (("base_a", "det", "fc2", (1,), -1), ("base_b", "det", "fc2", (1,), -1),
                ("post", "vi", "fc2", (2, 5), -1))
OTHER_BASELINES = {"base_a": "post", "base_b": "post"}


def results_table(models=MODELS, seed: int = 0, n_points: int = 14,
                  attacks=("fgsm", "pgd"), rules=("epsilon", "gamma"), layers=(1, 3),
                  ks=((20.0, 12), (12.5, 8)), pixels: int = 64) -> pd.DataFrame:
    """A results table with the columns :data:`RESULT_COLUMNS`, sorted as the compare stage
    sorts it; robustness values are multiples of 1/8 (ties)."""
    rng = np.random.default_rng(seed)
    points = np.sort(rng.choice(1000, n_points, replace=False)).astype(np.int64)
    labels = rng.integers(0, 10, n_points).astype(np.int64)
    frames = []
    for name, method, arch, counts, own in models:
        for attack in attacks:
            for rule in rules:
                for layer in layers:
                    for n in counts:
                        for k, k_pixels in ks:
                            frames.append(_rows(rng, name, method, arch, attack, rule, layer, n,
                                                k, k_pixels, own, points, labels))
    table = pd.concat(frames, ignore_index=True)[list(RESULT_COLUMNS)]
    return table.sort_values(RESULT_ORDER, kind="mergesort").reset_index(drop=True)


def _rows(rng, name, method, arch, attack, rule, layer, n, k, k_pixels, own, points, labels):
    size = len(points)
    pred_clean = np.where(rng.random(size) < 0.9, labels, (labels + 1) % 10)
    pred_adv = np.where(rng.random(size) < 0.5, pred_clean, (pred_clean + 3) % 10)
    shift = {"det": 0.0, "adv": 0.1, "vi": 0.2, "hmc": 0.25}[method]
    lrp = np.clip(np.round((rng.uniform(0.1, 0.7, size) + shift) * 8) / 8, 0, 1)
    return pd.DataFrame({
        "dataset": "synthetic", "model": name, "method": method, "arch": arch,
        "attack": attack, "attack_mode": "expected_gradient" if method in ("vi", "hmc") else "",
        "rule": rule, "explainer": rule, "layer": np.int64(layer), "n_samples": np.int64(n),
        "k": np.float64(k), "k_pixels": np.int64(k_pixels), "point": points, "label": labels,
        "pred_clean": pred_clean.astype(np.int64), "pred_adv": pred_adv.astype(np.int64),
        "success": (pred_clean == labels) & (pred_adv != labels),
        "lrp_robustness": lrp, "nnz": rng.integers(4, 65, size).astype(np.int64),
        "softmax_robustness": rng.uniform(0, 1, size), "source_model": name,
        "own_sample": np.int64(own)})
