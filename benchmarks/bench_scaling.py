"""Time and peak memory of one 1-NFE forward pass against the number of tokens, for the
linear-attention model and its softmax twin (same parameters), with the fitted exponent.

Each (attention, size) point runs in a fresh subprocess, so its peak RSS is its own.

    python benchmarks/bench_scaling.py --sizes 256 512 1024 2048 --twin-max 1024 --runs 5
    python benchmarks/bench_scaling.py --dtype bf16 --json out.json

Sizes are HR output sides (the LR input is side / 4); tokens = (side / patch)^2.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import time


def _rss_kib() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() // 1024


def measure_point(attention: str, side: int, dtype: str, runs: int, threads: int, kernel: str) -> dict:
    """Run in the child: build the default-size model, time `runs` forwards after one warm-up,
    report the peak RSS growth over the resident set before the first forward."""
    import contextlib

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from linearsr_cli.config import ModelConfig
    from linearsr_cli.engine.device import tune_cpu_allocator
    from linearsr_cli.nn.dit import Denoiser

    tune_cpu_allocator()  # as the Upscaler does on the CPU
    torch.set_num_threads(threads)
    cfg = ModelConfig(attention=attention, num_experts=1)
    model = Denoiser(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 3, side // cfg.scale, side // cfg.scale, generator=gen)
    x = torch.randn(1, 3, side, side, generator=gen)
    t = torch.ones(1)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    # "math" materialises the N x N score matrix (textbook softmax attention); "sdpa" lets
    # PyTorch pick its fused kernel, which streams the scores (O(N) memory, still O(N^2) time).
    backend = sdpa_kernel(SDPBackend.MATH) if kernel == "math" else contextlib.nullcontext()
    base = _rss_kib()
    times = []
    with torch.inference_mode(), autocast, backend:
        model(x, t, lr)
        for _ in range(runs):
            start = time.perf_counter()
            model(x, t, lr)
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "attention": attention,
        "side": side,
        "tokens": (side // cfg.patch) ** 2,
        "dtype": dtype,
        "kernel": kernel if attention == "softmax" else "linear",
        "seconds": statistics.median(times),
        "all_seconds": times,
        "peak_mib": max(peak - base, 0) / 1024,
    }


def fit_exponent(points: list[dict]) -> float:
    """Least-squares slope of log(time) on log(tokens): time ~ tokens^k."""
    xs = [math.log(p["tokens"]) for p in points]
    ys = [math.log(p["seconds"]) for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--twin-max", type=int, default=1024, help="largest side for the softmax twin")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--twin-kernel", choices=["sdpa", "math"], default="math",
                    help="softmax twin kernel: math = explicit N x N scores, sdpa = PyTorch's fused kernel")
    ap.add_argument("--json", help="write all points here")
    ap.add_argument("--child", nargs=2, metavar=("ATTENTION", "SIDE"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        point = measure_point(args.child[0], int(args.child[1]), args.dtype, args.runs, args.threads,
                              args.twin_kernel)
        print(json.dumps(point))
        return

    results: dict[str, list[dict]] = {"linear": [], "softmax": []}
    for attention in ("linear", "softmax"):
        for side in args.sizes:
            if attention == "softmax" and side > args.twin_max:
                continue
            cmd = [sys.executable, __file__, "--child", attention, str(side), "--runs", str(args.runs),
                   "--dtype", args.dtype, "--threads", str(args.threads), "--twin-kernel", args.twin_kernel]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            point = json.loads(out.stdout.strip().splitlines()[-1])
            results[attention].append(point)
            print(f"{attention:8s} {side:5d}^2  tokens {point['tokens']:6d}  "
                  f"{point['seconds']:8.3f} s  peak +{point['peak_mib']:8.1f} MiB", flush=True)

    print()
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"dtype {args.dtype}, median of {args.runs} runs after a warm-up, one expert (default "
          f"ModelConfig), softmax kernel {args.twin_kernel}")
    print("| output | tokens | linear s | linear peak MiB | softmax s | softmax peak MiB | softmax / linear |")
    print("|---|---|---|---|---|---|---|")
    soft = {p["side"]: p for p in results["softmax"]}
    for p in results["linear"]:
        s = soft.get(p["side"])
        cells = [f"{p['side']}²", str(p["tokens"]), f"{p['seconds']:.3f}", f"{p['peak_mib']:.0f}"]
        cells += [f"{s['seconds']:.3f}", f"{s['peak_mib']:.0f}", f"{s['seconds'] / p['seconds']:.1f}×"] if s else ["—"] * 3
        print("| " + " | ".join(cells) + " |")
    for name, points in results.items():
        if len(points) >= 2:
            print(f"fitted exponent, time vs tokens, {name}: {fit_exponent(points):.2f}")
            big = [q for q in points if q["tokens"] >= 4096]
            if len(big) >= 2:
                print(f"fitted exponent over >= 4k tokens, {name}: {fit_exponent(big):.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
