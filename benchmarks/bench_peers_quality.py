"""Quality and speed of the peers (and LinearSR when weights are given) on the CPU.

Quality: `linearsr eval` (run_eval) on photographs bundled with scikit-image, x4, with the
MATLAB-bicubic LR and with the seeded realistic degradation: PSNR/SSIM on Y (4-pixel border),
NIQE, BRISQUE, means over the images.
Speed: wall and process CPU seconds of one upscale of a 256x256 LR input (-> 1024x1024), the
median of --repeats runs after one warm-up run.

    python benchmarks/bench_peers_quality.py [--weights W] [--out benchmarks/results/peers.json]
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
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data

from linearsr_cli.config import PRESETS, SamplerConfig
from linearsr_cli.evaluate.peers import PEER_NAMES, make_peer
from linearsr_cli.evaluate.run import EvalConfig, format_table, run_eval
from linearsr_cli.nn.dit import bicubic_upsample

IMAGES = ("astronaut", "chelsea", "coffee", "rocket")


def write_images(folder: Path) -> None:
    for name in IMAGES:
        rgb = getattr(data, name)()
        cv2.imwrite(str(folder / f"{name}.png"), np.ascontiguousarray(rgb[..., ::-1]))


def timed(fn, repeats: int) -> dict[str, float]:
    """Median wall and CPU (all threads of this process) seconds over `repeats`, after a warm-up."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "repeats": repeats}


def speed(weights: Path | None, size: int, repeats: int) -> dict[str, dict[str, float]]:
    lr = np.random.default_rng(0).random((3, size, size), dtype=np.float32)
    out: dict[str, dict[str, float]] = {}
    out["bicubic"] = timed(lambda: bicubic_upsample(torch.from_numpy(lr)[None], 4), repeats)
    for name in PEER_NAMES:
        peer = make_peer(name)
        if peer.available():
            out[name] = timed(lambda p=peer: p.upscale(lr), repeats)
            print(f"speed {name}: {out[name]}", flush=True)
    if weights is not None:
        from linearsr_cli.config import TileConfig
        from linearsr_cli.engine.device import plan_device
        from linearsr_cli.engine.upscaler import Upscaler

        up = Upscaler.from_weights(weights, plan_device("cpu", "auto"), TileConfig())
        lr_t = torch.from_numpy(lr)
        for label, sampler in (("linearsr-1", SamplerConfig(steps=1)), ("linearsr-ms", PRESETS["perceptual"])):
            out[label] = timed(lambda s=sampler: up(lr_t, s), repeats)
            print(f"speed {label}: {out[label]}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None, help="LinearSR weights to include")
    ap.add_argument("--size", type=int, default=256, help="LR side for the speed test")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/peers_quality.json"))
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()

    methods = ("bicubic", *PEER_NAMES) + (("linearsr-1", "linearsr-ms") if args.weights else ())
    result: dict[str, object] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "images": [f"skimage.data.{n}" for n in IMAGES],
    }
    if not args.skip_quality:
        quality = {}
        with tempfile.TemporaryDirectory() as tmp:
            write_images(Path(tmp))
            for degradation in ("bicubic", "realistic"):
                cfg = EvalConfig(hr_dir=Path(tmp), weights=args.weights, methods=methods,
                                 degradation=degradation, device="cpu", tags="auto")
                report = run_eval(cfg)
                print(f"\n== x4, {degradation} LR ==\n{format_table(report)}", flush=True)
                quality[degradation] = report.to_dict()
        result["quality"] = quality
    if not args.skip_speed:
        result["speed_256"] = speed(args.weights, args.size, args.repeats)
        print(f"\n== one upscale of a {args.size}x{args.size} LR image (median of {args.repeats}) ==")
        for name, t in result["speed_256"].items():  # type: ignore[union-attr]
            print(f"{name:12s} wall {t['wall_s']:8.3f} s   cpu {t['cpu_s']:8.3f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
