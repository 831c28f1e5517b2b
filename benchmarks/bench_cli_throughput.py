"""Throughput of the whole CLI on a folder of photos: images/s and output megapixels/s (issue 7).

Each run is a fresh `python -m linearsr_cli upscale DIR OUT --json` subprocess with the default
settings (auto device -> CPU, auto dtype -> bf16 autocast, auto tiling, fidelity preset, tags on:
the tagger and the text encoder are loaded once per run), writing into an empty OUT folder, so
every run pays the full cost: interpreter start, imports, model and tagger loads, decode, tags,
network, encode, atomic writes. `--json` only swaps the progress bar for one JSON line per file,
which gives the per-image seconds (steady state, without the start-up).

The folder: the validation photos (data/photos/val/*.png) downscaled so the long side is
`--lr-side` pixels (LR inputs; outputs are x4), or samples/*.png when the photos are absent.
LinearSR uses weights/linearsr-x4.safetensors when it exists, else a random-weights file of the
default ModelConfig passed with --weights (speed does not depend on the values).

    python benchmarks/bench_cli_throughput.py --runs 5
    python benchmarks/bench_cli_throughput.py --runs 1 --lr-side 96 --extra "--tags off"   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.timing_weights import timing_weights  # noqa: E402


def make_folder(dest: Path, lr_side: int) -> list[tuple[int, int]]:
    """Write the LR photos into `dest`; returns their (width, height)."""
    sources = sorted((REPO / "data" / "photos" / "val").glob("*.png")) or sorted((REPO / "samples").glob("*.png"))
    if not sources:
        raise SystemExit("no photos: neither data/photos/val/*.png nor samples/*.png exist")
    dest.mkdir(parents=True)
    sizes = []
    for src in sources:
        img = Image.open(src).convert("RGB")
        factor = lr_side / max(img.size)
        size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
        img.resize(size, Image.LANCZOS).save(dest / f"{src.stem}.png")
        sizes.append(size)
    return sizes



def run_once(cmd: list[str]) -> tuple[float, float, list[dict]]:
    """(wall seconds, peak RSS GiB, per-file JSON records) of one CLI subprocess."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    stdout = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {code}")
    records = [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]
    return seconds, usage.ru_maxrss / 2**20, records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lr-side", type=int, default=512, help="long side of the LR inputs")
    ap.add_argument("--extra", default="", help="extra upscale options, e.g. '--tags off'")
    ap.add_argument("--json", help="write every run here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sizes = make_folder(tmp_path / "in", args.lr_side)
        weights, weights_note = timing_weights(tmp_path)
        weight_opts = ["--weights", str(weights)]
        out_mp = sum(w * h for w, h in sizes) * 16 / 1e6  # x4 output
        runs = []
        for i in range(args.runs):
            out = tmp_path / f"out{i}"
            cmd = [sys.executable, "-m", "linearsr_cli", "upscale", str(tmp_path / "in"), str(out), "--json",
                   *weight_opts, *args.extra.split()]
            seconds, rss, records = run_once(cmd)
            ok = [r for r in records if r.get("status") == "ok"]
            if len(ok) != len(sizes):
                raise SystemExit(f"run {i + 1}: {len(ok)} of {len(sizes)} images ok: {records}")
            # Per-file seconds cover read, tags, network, encode and write; the tagger and the
            # encoder load lazily inside the first image that needs each of them.
            in_images = sum(r["seconds"] for r in ok)
            runs.append({"seconds": seconds, "peak_rss_gib": rss, "image_seconds": in_images, "records": ok})
            print(f"run {i + 1}/{args.runs}: {seconds:.2f} s wall ({in_images:.2f} s in images, "
                  f"{seconds - in_images:.2f} s start-up + model load), "
                  f"{len(sizes) / seconds:.3f} img/s, {out_mp / seconds:.2f} MP/s, peak RSS {rss:.2f} GiB", flush=True)

    wall = statistics.median(r["seconds"] for r in runs)
    inner = statistics.median(r["image_seconds"] for r in runs)
    n = len(sizes)
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"{n} photos, LR {', '.join(f'{w}x{h}' for w, h in sizes)} -> {out_mp:.1f} MP of output; "
          f"median of {args.runs} runs; {weights_note}; extra options: {args.extra or 'none'}")
    print(f"| measure | whole command ({n} images, start-up and loads included) | inside the images "
          "(sum of per-file seconds; tagger + encoder loads included) |")
    print("|---|---|---|")
    print(f"| seconds | {wall:.2f} | {inner:.2f} |")
    print(f"| images / s | {n / wall:.3f} | {n / inner:.3f} |")
    print(f"| output MP / s | {out_mp / wall:.2f} | {out_mp / inner:.2f} |")
    print(f"| peak RSS GiB (max) | {max(r['peak_rss_gib'] for r in runs):.2f} | |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "sizes": sizes, "weights": weights_note, "runs": runs}, fh, indent=1)


if __name__ == "__main__":
    main()
