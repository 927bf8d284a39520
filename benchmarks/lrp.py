"""Benchmark: Bayesian LRP (ε rule, every learnable layer) on real MNIST test images.

For each architecture it prints, measured in the same run:

- seconds of ``bl.lrp.explain`` (S posterior samples × N images, reduce="mean") per layer;
- the ratio to the FLOP bound: FLOPs of the affine layers (forward + relevance backward,
  2·MACs each) divided by the machine's float32 matmul FLOP/s (a large ``torch.matmul`` timed in
  the same run). Elementwise work (activations, pooling, the rule's division) is not counted
  in the bound, so 1.0 is unreachable;
- the speed-up over a naive baseline that explains one sample and one image at a time
  (run on a slice and scaled linearly), and over a loop over samples that is vectorised over
  images only;
- peak memory: the high-water mark of the process's resident set size while one explanation
  runs, above the RSS just before it (Linux: the peak mark is reset through
  ``/proc/self/clear_refs`` and read from ``VmHWM``; elsewhere ``ru_maxrss``). It covers
  activations, records and relevance temporaries, not the model parameters loaded before. The
  worst layer is reported. Each architecture runs in a fresh worker process.

Weights are untrained (seeded random initialisation per sample): timing does not depend on
training. Usage: ``python benchmarks/lrp.py [--arch fc2 conv] [--n-images N] [--samples S]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import bayeslrp as bl  # noqa: E402
from bayeslrp.lrp.targets import resolve_layer  # noqa: E402

DEFAULT_IMAGES = {"fc2": 500, "conv": 100}


def matmul_flops(n: int = 2048, repeats: int = 3) -> float:
    """Best float32 FLOP/s of an n×n @ n×n matmul (best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t0))
    return best


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs``); return the current RSS bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    now = _status_kib("VmRSS")
    return now * 1024 if now is not None else resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss() -> int:
    """Peak RSS bytes since the last reset (``VmHWM``; ``ru_maxrss`` where unavailable)."""
    hwm = _status_kib("VmHWM")
    return hwm * 1024 if hwm is not None else resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss * 1024


def affine_macs(net, x_shape, layer) -> int:
    """Multiply-accumulates of one (image, sample) through the affine layers up to the cut."""
    stop = resolve_layer(net, layer).stop
    macs = 0

    def hook(module, _inputs, out):
        nonlocal macs
        macs += out[0].numel() * module.weight[0].numel()  # outputs x (in_features | C·kh·kw)

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    try:
        with torch.no_grad():
            net[:stop + 1](torch.zeros(1, *x_shape))
    finally:
        for h in handles:
            h.remove()
    return macs


def make_ensemble(arch: str, samples: int) -> bl.Ensemble:
    nets = [bl.nets.build(arch, seed=j) for j in range(samples)]
    return bl.Ensemble.from_modules(nets, meta={"method": "random-init"})


def worker(arch: str, n_images: int, samples: int, naive_pairs: tuple[int, int],
           loop_samples: int) -> dict:
    x, _ = bl.data.load("mnist", "test")
    x = x[:n_images]
    ens = make_ensemble(arch, samples)
    layers = bl.nets.learnable_layers(ens.module)
    bl.lrp.explain(ens.head(2), x[:2])  # warm-up (allocator, kernels)
    result = {"arch": arch, "n_images": n_images, "samples": samples, "layers": {}}
    total_t = total_flops = total_bound = 0.0
    peak = 0
    rates = []
    for layer in layers:
        rate_before = matmul_flops()
        rss0 = reset_peak_rss()
        t0 = time.perf_counter()
        heat = bl.lrp.explain(ens, x, rule="epsilon", layer=layer)
        dt = time.perf_counter() - t0
        peak = max(peak, peak_rss() - rss0)
        rate = (rate_before + matmul_flops()) / 2  # the machine's speed around this run
        rates.append(rate)
        assert heat.shape == (n_images, 28, 28) and torch.isfinite(heat).all()
        flops = 4.0 * affine_macs(ens.module, x.shape[1:], layer) * samples * n_images
        result["layers"][layer] = {"seconds": dt, "flops": flops, "matmul_flops_per_s": rate,
                                   "bound_seconds": flops / rate,
                                   "ratio_to_bound": dt / (flops / rate)}
        total_t += dt
        total_flops += flops
        total_bound += flops / rate
    result["seconds"] = total_t
    result["flops"] = total_flops
    result["bound_seconds"] = total_bound
    result["ratio_to_bound"] = total_t / total_bound

    # naive: one sample, one image at a time (plain S=1 networks, class of the Bayesian mean)
    n_s, n_i = naive_pairs
    modules = [ens.sample_module(j) for j in range(n_s)]
    t0 = time.perf_counter()
    classes = ens.predict(x[:n_i])
    for layer in layers:
        target = classes if layer == layers[-1] else None
        for net in modules:
            for i in range(n_i):
                bl.lrp.explain(net, x[i:i + 1], layer=layer,
                               target=None if target is None else target[i:i + 1])
    naive = (time.perf_counter() - t0) * (samples * n_images) / (n_s * n_i)
    # vectorised over images, loop over samples
    t0 = time.perf_counter()
    classes = ens.predict(x)
    for layer in layers:
        for j in range(loop_samples):
            bl.lrp.explain(modules[j] if j < len(modules) else ens.sample_module(j), x,
                           layer=layer, target=classes if layer == layers[-1] else None)
    loop = (time.perf_counter() - t0) * samples / loop_samples
    result.update({
        "matmul_flops_per_s_min": min(rates), "matmul_flops_per_s_max": max(rates),
        "naive_seconds_scaled": naive, "naive_slice": [n_s, n_i],
        "speedup_vs_naive": naive / total_t,
        "loop_over_samples_seconds_scaled": loop, "loop_samples": loop_samples,
        "speedup_vs_sample_loop": loop / total_t,
        "peak_rss_growth_bytes": peak, "process_peak_rss_bytes": peak_rss(),
        "chunk_plan": bl.lrp.chunk_plan(ens, x, layer=layers[-1]),
        "threads": torch.get_num_threads(),
    })
    return result


def report(r: dict) -> None:
    gf = 1e9
    print(f"\n== {r['arch']}: S={r['samples']} samples x N={r['n_images']} MNIST test images, "
          f"epsilon rule, reduce=mean, {r['threads']} torch threads")
    print(f"matmul float32 (2048^2, measured around each layer's run): "
          f"{r['matmul_flops_per_s_min'] / gf:.1f} .. {r['matmul_flops_per_s_max'] / gf:.1f} GFLOP/s")
    for layer, v in r["layers"].items():
        print(f"  layer {layer:>2}: {v['seconds']:8.2f} s  {v['flops'] / gf:9.1f} GFLOP  "
              f"@{v['matmul_flops_per_s'] / gf:5.1f} GFLOP/s: bound {v['bound_seconds']:7.2f} s  "
          f"ratio {v['ratio_to_bound']:.2f}x")
    print(f"  all layers: {r['seconds']:.2f} s, FLOP bound {r['bound_seconds']:.2f} s -> "
          f"{r['ratio_to_bound']:.2f}x the bound")
    print(f"  naive (1 sample x 1 image per call, slice {r['naive_slice']}, scaled): "
          f"{r['naive_seconds_scaled']:.1f} s -> {r['speedup_vs_naive']:.1f}x faster")
    print(f"  loop over samples (images vectorised, {r['loop_samples']} samples, scaled): "
          f"{r['loop_over_samples_seconds_scaled']:.1f} s -> "
          f"{r['speedup_vs_sample_loop']:.2f}x faster")
    print(f"  peak memory of explain (RSS high-water above the RSS before it): "
          f"{r['peak_rss_growth_bytes'] / 2**30:.2f} GiB; chunks {r['chunk_plan']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["fc2", "conv"], choices=["fc2", "conv"])
    ap.add_argument("--n-images", type=int, default=None,
                    help="images per architecture (default: fc2 500, conv 100)")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--naive-samples", type=int, default=2)
    ap.add_argument("--naive-images", type=int, default=10)
    ap.add_argument("--loop-samples", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        (arch,) = args.arch
        r = worker(arch, args.n_images, args.samples, (args.naive_samples, args.naive_images),
                   args.loop_samples)
        print("RESULT " + json.dumps(r))
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}; weights: random initialisation (untrained)")
    results = []
    for arch in args.arch:
        n_images = args.n_images or DEFAULT_IMAGES[arch]
        cmd = [sys.executable, __file__, "--worker", "--arch", arch, "--n-images", str(n_images),
               "--samples", str(args.samples), "--naive-samples", str(args.naive_samples),
               "--naive-images", str(args.naive_images), "--loop-samples", str(args.loop_samples)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
        report(r)
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
