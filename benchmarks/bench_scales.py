"""x2 against x4, and what --tta costs (issue 14): seconds per megapixel of output, one process.

Every method upscales the same LR photo (skimage's astronaut resized to --lr-size², so x2 gives
a 4x smaller output than x4), in interleaved rounds, median of `--runs` after a warm-up:

    span x2 / x4 (ncnn)            the released SPAN models through evaluate/peers.py, one pass
    linearsr xS 1-NFE              the engine with the shipped xS weights, fidelity preset
    linearsr xS perceptual         PRESETS["perceptual"], tags off
    linearsr xS 1-NFE --tta        the 8-transform self-ensemble (engine/tta.py)
    linearsr x4 1-NFE -> x2        `upscale --outscale 2` with only the x4 model: x4, then the
                                   antialiased resample (resize.py) — what native x2 saves

Weights: weights/linearsr-x2|x4.safetensors when installed, else random weights of the default
config at that scale (time does not depend on the values); the report says which.

    python benchmarks/bench_scales.py --runs 5 --json scales.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_peers_speed import load_lr  # noqa: E402
from benchmarks.timing_weights import timing_weights  # noqa: E402
from linearsr_cli.config import PRESETS, TileConfig  # noqa: E402
from linearsr_cli.engine.device import cpu_bf16, plan_device  # noqa: E402
from linearsr_cli.engine.resize import resample  # noqa: E402
from linearsr_cli.engine.upscaler import Upscaler  # noqa: E402
from linearsr_cli.evaluate.peers import PEER_SPECS, NcnnPeer  # noqa: E402


def build(tmp: Path, lr_size: int, threads: int) -> tuple[dict[str, tuple[Callable[[torch.Tensor], object], int]], dict]:
    """name -> (run(lr), output scale), and notes for the report."""
    methods: dict[str, tuple[Callable[[torch.Tensor], object], int]] = {}
    notes: dict = {}
    for scale in (2, 4):
        peer = NcnnPeer(PEER_SPECS["span", scale], tile=max(lr_size, 16), margin=0, threads=threads)
        if peer.available():
            methods[f"span x{scale} (ncnn)"] = (peer.upscale, scale)
    plan = plan_device("cpu", "auto")
    notes["plan"] = plan.describe()
    ups = {}
    for scale in (2, 4):
        path, note = timing_weights(tmp, scale)
        notes[f"x{scale} weights"] = note
        up = ups[scale] = Upscaler.from_weights(path, plan, TileConfig())
        fid, per = PRESETS["fidelity"], PRESETS["perceptual"]
        methods[f"linearsr x{scale} 1-NFE"] = (lambda lr, u=up, s=fid: u(lr, s), scale)
        methods[f"linearsr x{scale} perceptual"] = (lambda lr, u=up, s=per: u(lr, s), scale)
        methods[f"linearsr x{scale} 1-NFE --tta"] = (lambda lr, u=up, s=fid: u(lr, s, tta=True), scale)

    def x4_then_resample(lr: torch.Tensor) -> torch.Tensor:
        out = ups[4](lr, PRESETS["fidelity"])
        return resample(out, None, (lr.shape[1] * 2, lr.shape[2] * 2))[0]

    methods["linearsr x4 1-NFE -> x2"] = (x4_then_resample, 2)
    return methods, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lr-size", type=int, default=256)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch and ncnn threads")
    ap.add_argument("--json", help="write every timing here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lr = load_lr(args.lr_size)
    with tempfile.TemporaryDirectory() as tmp:
        methods, notes = build(Path(tmp), args.lr_size, args.threads)
        for run, _ in methods.values():  # warm-up
            run(load_lr(32))
            run(lr)
        wall: dict[str, list[float]] = {name: [] for name in methods}
        for r in range(args.runs):
            for name, (run, _) in methods.items():
                t0 = time.perf_counter()
                run(lr)
                wall[name].append(time.perf_counter() - t0)
            print(f"round {r + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in wall.items()), flush=True)
    rows = {}
    for name, (_, scale) in methods.items():
        sec = statistics.median(wall[name])
        mp = (args.lr_size * scale) ** 2 / 1e6
        rows[name] = {"scale": scale, "output_mp": mp, "seconds": sec, "s_per_mp": sec / mp}
    for scale in (2, 4):
        plain, tta = rows.get(f"linearsr x{scale} 1-NFE"), rows.get(f"linearsr x{scale} 1-NFE --tta")
        if plain and tta:
            tta["x_plain"] = tta["seconds"] / plain["seconds"]
    print(f"\nmachine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"{cpu_bf16().capability}, torch {torch.__version__}, {args.threads} threads; LR {args.lr_size}²; "
          f"median of {args.runs} interleaved rounds; {notes}")
    print(f"{'method':32s} {'out MP':>7s} {'s':>7s} {'s/MP':>7s}")
    for name, row in rows.items():
        extra = f"  ({row['x_plain']:.2f}x plain)" if "x_plain" in row else ""
        print(f"{name:32s} {row['output_mp']:7.3f} {row['seconds']:7.2f} {row['s_per_mp']:7.2f}{extra}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "notes": notes, "rows": rows,
                                               "capability": cpu_bf16().capability, "lr_size": args.lr_size,
                                               "runs": args.runs}, indent=1))


if __name__ == "__main__":
    main()
