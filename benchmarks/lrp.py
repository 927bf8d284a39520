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
training. Usage: ``python benchmarks/lrp.py [--arch fc2 conv] [--n-images N] [--samples S]
[--threads T]``; the default (500 images, S = 100, both architectures, one thread) takes about
five minutes on a 2-core machine.
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

DEFAULT_IMAGES = {"fc2": 500, "conv": 500}


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


def _naive(ens, modules, x, layer, is_output) -> tuple[float, float]:
    """(seconds for the explained classes, seconds of the calls) to explain ``x`` one sample
    and one image per call (plain S = 1 networks)."""
    t0 = time.perf_counter()
    classes = ens.predict(x) if is_output else None  # the class of the Bayesian mean
    t1 = time.perf_counter()
    for net in modules:
        for i in range(x.shape[0]):
            bl.lrp.explain(net, x[i:i + 1], layer=layer,
                           target=None if classes is None else classes[i:i + 1])
    return t1 - t0, time.perf_counter() - t1


def _sample_loop(ens, modules, x, layer, is_output) -> tuple[float, float]:
    """(seconds for the classes, seconds of the calls): one sample per call, all images."""
    t0 = time.perf_counter()
    classes = ens.predict(x) if is_output else None
    t1 = time.perf_counter()
    for net in modules:
        bl.lrp.explain(net, x, layer=layer, target=classes)
    return t1 - t0, time.perf_counter() - t1


def worker(arch: str, n_images: int, samples: int, naive_pairs: tuple[int, int],
           loop_samples: int) -> dict:
    """Every measurement of one architecture; baselines are timed right around each layer's
    vectorised run so that load changes on a shared machine affect both sides alike."""
    x, _ = bl.data.load("mnist", "test")
    x = x[:n_images]
    ens = make_ensemble(arch, samples)
    layers = bl.nets.learnable_layers(ens.module)
    n_s, n_i = naive_pairs
    naive_modules = [ens.sample_module(j) for j in range(n_s)]
    loop_modules = [ens.sample_module(j) for j in range(loop_samples)]
    rss_base = reset_peak_rss()  # data and model loaded, no LRP work done yet
    bl.lrp.explain(ens.head(2), x[:2])  # warm-up (kernels)
    result = {"arch": arch, "n_images": n_images, "samples": samples, "layers": {},
              "naive_slice": [n_s, n_i], "loop_samples": loop_samples}
    totals = dict(seconds=0.0, flops=0.0, bound_seconds=0.0, naive_seconds_scaled=0.0,
                  loop_over_samples_seconds_scaled=0.0)
    peak, rates = 0, []
    for layer in layers:
        is_output = layer == layers[-1]
        naive_before = _naive(ens, naive_modules, x[:n_i], layer, is_output)
        rate_before = matmul_flops()
        reset_peak_rss()
        t0 = time.perf_counter()
        heat = bl.lrp.explain(ens, x, rule="epsilon", layer=layer)
        dt = time.perf_counter() - t0
        peak = max(peak, peak_rss() - rss_base)
        rate = (rate_before + matmul_flops()) / 2  # the machine's speed around this run
        naive_after = _naive(ens, naive_modules, x[:n_i], layer, is_output)
        naive = ((naive_before[0] + naive_after[0]) / 2 * n_images / n_i
                 + (naive_before[1] + naive_after[1]) / 2 * samples * n_images / (n_s * n_i))
        loop_classes, loop_calls = _sample_loop(ens, loop_modules, x, layer, is_output)
        loop = loop_classes + loop_calls * samples / loop_samples
        rates.append(rate)
        assert heat.shape == (n_images, 28, 28) and torch.isfinite(heat).all()
        flops = 4.0 * affine_macs(ens.module, x.shape[1:], layer) * samples * n_images
        row = {"seconds": dt, "flops": flops, "matmul_flops_per_s": rate,
               "bound_seconds": flops / rate, "naive_seconds_scaled": naive,
               "loop_over_samples_seconds_scaled": loop}
        for key in totals:
            totals[key] += row[key]
        row.update(ratio_to_bound=dt / row["bound_seconds"], speedup_vs_naive=naive / dt,
                   speedup_vs_sample_loop=loop / dt)
        result["layers"][layer] = row
    result.update(totals)
    result.update({
        "ratio_to_bound": totals["seconds"] / totals["bound_seconds"],
        "speedup_vs_naive": totals["naive_seconds_scaled"] / totals["seconds"],
        "speedup_vs_sample_loop": totals["loop_over_samples_seconds_scaled"] / totals["seconds"],
        "matmul_flops_per_s_min": min(rates), "matmul_flops_per_s_max": max(rates),
        "peak_rss_above_base_bytes": peak,
        "chunk_plan": bl.lrp.chunk_plan(ens, x, layer=layers[-1]),
        "threads": torch.get_num_threads(),
    })
    return result


def report(r: dict) -> None:
    gf = 1e9
    print(f"\n== {r['arch']}: S={r['samples']} samples x N={r['n_images']} MNIST test images, "
          f"epsilon rule, reduce=mean, {r['threads']} torch threads")
    print(f"matmul float32 (2048^2, measured around each layer's run): "
          f"{r['matmul_flops_per_s_min'] / gf:.1f} .. "
          f"{r['matmul_flops_per_s_max'] / gf:.1f} GFLOP/s")
    print(f"  layer   seconds    GFLOP  bound s  x bound   naive s  x naive  loop s  x loop")
    for layer, v in r["layers"].items():
        print(f"  {layer:>5} {v['seconds']:9.2f} {v['flops'] / gf:8.1f} {v['bound_seconds']:8.2f} "
              f"{v['ratio_to_bound']:8.2f} {v['naive_seconds_scaled']:9.1f} "
              f"{v['speedup_vs_naive']:8.1f} {v['loop_over_samples_seconds_scaled']:7.1f} "
              f"{v['speedup_vs_sample_loop']:7.2f}")
    print(f"    all {r['seconds']:9.2f} {r['flops'] / gf:8.1f} {r['bound_seconds']:8.2f} "
          f"{r['ratio_to_bound']:8.2f} {r['naive_seconds_scaled']:9.1f} "
          f"{r['speedup_vs_naive']:8.1f} {r['loop_over_samples_seconds_scaled']:7.1f} "
          f"{r['speedup_vs_sample_loop']:7.2f}")
    print(f"  naive = 1 sample x 1 image per call (slice {r['naive_slice'][0]} samples x "
          f"{r['naive_slice'][1]} images, timed before and after, scaled); loop = 1 sample per "
          f"call, all images ({r['loop_samples']} samples, scaled)")
    print(f"  peak memory (RSS high-water during explain above the RSS before any LRP work): "
          f"{r['peak_rss_above_base_bytes'] / 2**30:.2f} GiB; chunks {r['chunk_plan']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["fc2", "conv"], choices=["fc2", "conv"])
    ap.add_argument("--n-images", type=int, default=None,
                    help="images per architecture (default 500)")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--naive-samples", type=int, default=2)
    ap.add_argument("--naive-images", type=int, default=10)
    ap.add_argument("--loop-samples", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for every timing, the FLOP bound included (default 1: "
                         "on a shared machine a second thread makes small operations wait for "
                         "a free core; 0 = torch's choice)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
        report(r)
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
