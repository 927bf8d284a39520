"""Reproduce the VI conv comparison of docs/results.md ("Bayesian inference").

Trains the paper's VI conv net on MNIST (Table III: C = 32, H = 512, 5 epochs, Adam peak lr
0.01, batch 128, prior N(0, 1), 100 draws) in one of the variants below, then prints one JSON
line with the per-epoch history, the final-point negative ELBO per point (2 Monte-Carlo passes
over the 60000 training images, common random numbers across variants) and the test accuracy
of the predictive mean of 1, 10 and 100 draws. About 45 min on one CPU core.

    python scripts/vi_conv_variants.py cosine_std1e-2 --save /tmp/vi_cos

``warm`` starts the means from a det conv trained here first (paper det settings).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import bayeslrp as bl

VARIANTS = {
    "paper": {},
    "cosine": {"lr_schedule": "cosine"},
    "cosine_std1e-2": {"lr_schedule": "cosine", "init_std": 1e-2},
    "std1e-2": {"init_std": 1e-2},
    "warm": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=None, help="first N training images")
    parser.add_argument("--n-test", type=int, default=None, help="first N test images")
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--save", default=None, help="save the Ensemble here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    x, y = bl.data.load("mnist", "train")
    xt, yt = bl.data.load("mnist", "test")
    x, y, xt, yt = x[:args.n_train], y[:args.n_train], xt[:args.n_test], yt[:args.n_test]
    net = bl.nets.build("conv", channels=32, hidden=512, seed=0)
    out: dict = {"variant": args.variant, "settings": VARIANTS[args.variant]}
    if args.variant == "warm":
        det = bl.train.deterministic(bl.nets.build("conv", channels=32, hidden=512, seed=0), x, y,
                                     epochs=args.epochs, lr=1e-3, batch_size=128, seed=0,
                                     progress=False)
        net.load_state_dict(det.sample_params(0))
        out["det_accuracy"] = det.accuracy(xt, yt)
    started = time.perf_counter()
    ens = bl.train.vi(net, x, y, epochs=args.epochs, lr=0.01, batch_size=128, prior_std=1.0,
                      n_samples=args.draws, seed=0, progress=False, **VARIANTS[args.variant])
    out["train_seconds"] = time.perf_counter() - started
    out["history"] = ens.meta["history"]
    if args.save:
        ens.save(args.save)
    out["final"] = bl.train.negative_elbo(ens, x, y, passes=2, seed=123)
    for n in sorted({1, min(10, args.draws), args.draws}):
        out[f"accuracy_{n}"] = ens.accuracy(xt, yt, n)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
