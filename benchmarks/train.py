"""fc2-512 training epoch time and full-test-set predict time vs the matmul FLOP bound.

The FLOP bound is the time the layer matmuls would take at the float32 matmul rate measured in
this same run (machine noise here is large, so only same-run ratios mean anything).
Run: ``.venv/bin/python benchmarks/train.py [--batches N]``.
"""
from __future__ import annotations

import argparse
import time

import torch

import bayeslrp as bl
from _common import best_time, machine, matmul_flops_per_second


def fc2_forward_flops(hidden: int = 512, n_in: int = 784, n_out: int = 10) -> int:
    """Multiply-add FLOPs (2 per MAC) of one image through fc2."""
    return 2 * (n_in * hidden + hidden * hidden + hidden * n_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=200,
                        help="training batches timed (an epoch is 469; the time is scaled)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the run and for the matmul baseline alike")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rate = matmul_flops_per_second()
    x_test, y_test = bl.data.load("mnist", "test")
    x_train, y_train = bl.data.load("mnist", "train")
    net = bl.nets.build("fc2", hidden=512)
    n_train = args.batches * 128
    # warm-up: the first batches of a process pay for allocator and kernel set-up
    bl.train.deterministic(net, x_train[:20 * 128], y_train[:20 * 128], epochs=1, progress=False)
    started = time.perf_counter()
    bl.train.deterministic(net, x_train[:n_train], y_train[:n_train], epochs=1, progress=False)
    epoch_seconds = (time.perf_counter() - started) * x_train.shape[0] / n_train
    # forward + backward (weight gradients, input gradients of layers 2-3) ≈ 3 × forward
    epoch_flops = 3 * fc2_forward_flops() * x_train.shape[0]

    ens = bl.Ensemble.from_module(net)
    predict_seconds = best_time(lambda: ens.predict_proba(x_test), repeats=3)
    predict_flops = fc2_forward_flops() * x_test.shape[0]

    print(f"machine: {machine()}; matmul rate {rate / 1e9:.1f} GFLOP/s")
    print(f"fc2-512 training epoch (60k, batch 128): {epoch_seconds:.2f} s "
          f"(scaled from {args.batches} batches); FLOP bound {epoch_flops / rate:.2f} s; "
          f"ratio {epoch_seconds / (epoch_flops / rate):.2f}x")
    print(f"fc2-512 predict 10k test images: {predict_seconds:.3f} s; FLOP bound "
          f"{predict_flops / rate:.3f} s; ratio {predict_seconds / (predict_flops / rate):.2f}x")


if __name__ == "__main__":
    main()
