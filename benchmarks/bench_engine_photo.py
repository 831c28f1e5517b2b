"""Wall time and peak memory of `linearsr upscale` on a 2000x1500 photo at x4 (issue 2).

Each run is a fresh `python -m linearsr_cli upscale PHOTO OUT` subprocess with the default
settings (auto device/dtype, auto tiling, fidelity preset); its peak RSS comes from
os.wait4's rusage of that child alone. Default ModelConfig() size; the installed weights if
there are any, else a random-weights file of the default config (speed and memory do not
depend on the weight values).

    python benchmarks/bench_engine_photo.py --runs 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.timing_weights import timing_weights  # noqa: E402


def make_photo(path: Path, width: int, height: int, quality: int = 92) -> None:
    """A photo-sized JPEG: the bundled coffee sample resized, with film grain."""
    base = Image.open(REPO / "samples" / "coffee.png").convert("RGB").resize((width, height), Image.LANCZOS)
    rng = np.random.default_rng(0)
    arr = np.asarray(base, dtype=np.float32) + rng.normal(0, 4, (height, width, 3))
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=quality)


def run_once(cmd: list[str]) -> tuple[float, float, int]:
    """(seconds, peak RSS in GiB, exit code) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    return seconds, usage.ru_maxrss / 2**20, os.waitstatus_to_exitcode(status)  # ru_maxrss is KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--width", type=int, default=2000)
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--extra", default="", help="extra upscale options, e.g. '--dtype fp32 --tags off'")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        photo = tmp_path / "photo.jpg"
        make_photo(photo, args.width, args.height)
        weights, weights_note = timing_weights(tmp_path)
        cmd = [sys.executable, "-m", "linearsr_cli", "upscale", str(photo), str(tmp_path / "out"),
               "--weights", str(weights), "--overwrite", "--quiet", *args.extra.split()]
        results = []
        for i in range(args.runs):
            seconds, rss, code = run_once(cmd)
            if code != 0:
                raise SystemExit(f"run {i} failed with exit code {code}")
            out = Image.open(tmp_path / "out" / "photo.jpg")
            assert out.size == (4 * args.width, 4 * args.height), out.size
            results.append((seconds, rss))
            print(f"run {i}: {seconds:.1f} s, peak RSS {rss:.2f} GiB", flush=True)
        times = [r[0] for r in results]
        rss = [r[1] for r in results]
        print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")
        print(f"weights: {weights_note}")
        print(f"command: {' '.join(cmd[2:])}")
        print(f"| {args.width}x{args.height} -> {4 * args.width}x{4 * args.height} | "
              f"{statistics.median(times):.1f} s (median of {len(times)}; min {min(times):.1f}, max {max(times):.1f}) | "
              f"{max(rss):.2f} GiB (max of runs) |")


if __name__ == "__main__":
    main()
