"""The fidelity preset (1-NFE: the SPAN prior) against SPAN through ncnn, with the prior's convs
in NCHW and in channels_last, interleaved in one process (issue 20).

256x256 random LR -> 1024x1024, the shipped x4 weights (else random ones of the default config),
fp32 on the CPU, torch and ncnn on the same number of threads; one warm-up call each, then
--runs rounds of (NCHW, channels_last, ncnn); medians and ratios. It also counts how many 8-bit
output values differ between the two layouts (summation order only).

    python benchmarks/bench_prior_layout.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.timing_weights import timing_weights  # noqa: E402
from linearsr_cli.config import TileConfig, sampler_config  # noqa: E402
from linearsr_cli.engine.device import plan_device  # noqa: E402
from linearsr_cli.engine.upscaler import Upscaler  # noqa: E402
from linearsr_cli.evaluate.peers import PEER_SPECS, NcnnPeer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lr-size", type=int, default=256)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        weights, note = timing_weights(Path(tmp))
        up = Upscaler.from_weights(weights, plan_device("cpu", "fp32"), TileConfig())
    lr = torch.rand(3, args.lr_size, args.lr_size, generator=torch.Generator().manual_seed(0))
    sampler = sampler_config("fidelity")
    span = NcnnPeer(PEER_SPECS["span", 4], tile=args.lr_size, margin=0, threads=torch.get_num_threads())

    def layout(fmt: torch.memory_format) -> None:
        for prior in up.model.priors.values():
            prior.to(memory_format=fmt)

    layouts = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}
    outs = {}
    for name, fmt in layouts.items():
        layout(fmt)
        outs[name] = np.rint(up(lr, sampler).clamp(0, 1).numpy() * 255)
    span.upscale(lr.numpy())
    times: dict[str, list[float]] = {"NCHW": [], "channels_last": [], "SPAN ncnn": []}
    for _ in range(args.runs):
        for name, fmt in layouts.items():
            layout(fmt)
            start = time.perf_counter()
            up(lr, sampler)
            times[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        span.upscale(lr.numpy())
        times["SPAN ncnn"].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    differ = float((outs["NCHW"] != outs["channels_last"]).mean())
    print(f"{os.cpu_count()} cores, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; "
          f"LR {args.lr_size}^2 -> {4 * args.lr_size}^2; {note}; median of {args.runs}")
    print("| 1-NFE | seconds | / SPAN ncnn |")
    print("|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.3f} | {v / med['SPAN ncnn']:.2f} |")
    print(f"8-bit output values that differ NCHW vs channels_last: {differ:.2e}")


if __name__ == "__main__":
    main()
