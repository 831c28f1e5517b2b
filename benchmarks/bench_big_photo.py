"""Peak memory and time per megapixel of `linearsr upscale` on a camera-sized photo (issue 24).

Makes a 4000x3000 (12 MP) JPEG at quality 85 and a 1 MP one of the same kind (the bundled coffee
sample resized, with grain: bench_engine_photo.make_photo), then runs each through a fresh
`python -m linearsr_cli upscale PHOTO OUT --preset P` subprocess (x4, default settings otherwise)
and reports its peak RSS (os.wait4's rusage of that child alone) and seconds per input
megapixel. The 1 MP photo is the time-per-MP reference: a big photo should cost no more per
pixel than a small one.

    python benchmarks/bench_big_photo.py --runs 3                       # fidelity, both sizes
    python benchmarks/bench_big_photo.py --preset perceptual --runs 1 --sizes "12 MP"
    python benchmarks/bench_big_photo.py --outscale 3 --runs 1 --sizes "12 MP"   # x4, then the banded resample
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_engine_photo import make_photo, run_once  # noqa: E402
from benchmarks.timing_weights import timing_weights  # noqa: E402

Image.MAX_IMAGE_PIXELS = None  # the 192 MP output is ours, not a decompression bomb
SIZES = {"12 MP": (4000, 3000), "1 MP": (1155, 866)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--preset", default="fidelity")
    parser.add_argument("--sizes", default=",".join(SIZES), help="which of: " + ", ".join(SIZES))
    parser.add_argument("--outscale", type=float, default=None, help="--outscale F instead of the native x4")
    parser.add_argument("--extra", default="", help="extra upscale options, e.g. '--dtype fp32'")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        weights, weights_note = timing_weights(tmp_path)
        for name in args.sizes.split(","):
            width, height = SIZES[name.strip()]
            photo = tmp_path / f"photo_{width}x{height}.jpg"
            make_photo(photo, width, height, quality=85)
            cmd = [sys.executable, "-m", "linearsr_cli", "upscale", str(photo), str(tmp_path / "out"),
                   "--weights", str(weights), "--preset", args.preset, "--overwrite", "--quiet", *args.extra.split()]
            if args.outscale:
                cmd += ["--outscale", str(args.outscale)]
            factor = args.outscale or 4
            size = (round(factor * width), round(factor * height))
            times, peaks = [], []
            for i in range(args.runs):
                seconds, rss, code = run_once(cmd)
                if code != 0:
                    raise SystemExit(f"{name} run {i} failed with exit code {code}")
                print(f"{name} run {i}: {seconds:.1f} s, peak RSS {rss:.2f} GiB", flush=True)
                with Image.open(tmp_path / "out" / photo.name) as out:
                    assert out.size == size, out.size
                times.append(seconds)
                peaks.append(rss)
            megapixels = width * height / 1e6
            rows.append((name, width, height, size, statistics.median(times) / megapixels, max(peaks), len(times)))
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"weights: {weights_note}; preset {args.preset}, x{args.outscale or 4} {args.extra}".rstrip())
    print("| input | output | s per input MP (median) | peak RSS (max of runs) |")
    print("|---|---|---|---|")
    for name, width, height, size, per_mp, peak, runs in rows:
        print(f"| {name} {width}x{height} JPEG q85 | {size[0]}x{size[1]} | {per_mp:.2f} s ({runs} runs) | "
              f"{peak:.2f} GiB |")
    if len(rows) == 2:
        print(f"time per MP, 12 MP / 1 MP: {rows[0][4] / rows[1][4]:.2f}x")


if __name__ == "__main__":
    main()
