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

`--pipeline` (issue 20) times, in one run on one folder of 16 LR images 256x256 (crops of the
photos, else of samples/) -> 1024x1024 PNG, fidelity preset, tags off:
    model only   Upscaler.__call__ on each decoded image (no I/O), summed over the folder
    ncnn loop    SPAN x4 through ncnn over the same folder: PIL decode, ncnn, PNG level 3, write
    batch        engine.batch.upscale_batch in this process (plan, load, the pipelined batch)
    command      `python -m linearsr_cli upscale IN OUT --preset fidelity --tags off`, whole
and prints batch / model-only and batch / ncnn loop (targets 1.1 and 1.2), each the median of
--runs. `--prefetch 0` runs the batch one file at a time (the pre-pipeline path) for comparison.

    python benchmarks/bench_cli_throughput.py --pipeline --runs 3
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


def make_crops(dest: Path, n: int = 16, side: int = 256) -> None:
    """`n` side x side PNG crops of the photos (else samples/), taken in turn from each source."""
    import numpy as np

    sources = sorted((REPO / "data" / "photos" / "val").glob("*.png")) or sorted((REPO / "samples").glob("*.png"))
    dest.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = [Image.open(p).convert("RGB") for p in sources]
    for i in range(n):
        img = images[i % len(images)]
        if min(img.size) < side:
            img = img.resize((max(side, img.width), max(side, img.height)), Image.BICUBIC)
        x, y = int(rng.integers(0, img.width - side + 1)), int(rng.integers(0, img.height - side + 1))
        img.crop((x, y, x + side, y + side)).save(dest / f"crop{i:02d}.png")


def pipeline_check(args: argparse.Namespace) -> None:
    """Whole batch vs model-only vs a SPAN-through-ncnn loop on the same folder (issue 20)."""
    import numpy as np

    from linearsr_cli.config import TileConfig, sampler_config
    from linearsr_cli.engine.batch import load_batch
    from linearsr_cli.engine.device import plan_device
    from linearsr_cli.engine.plan import OutputConfig, UpscaleRequest, prepare
    from linearsr_cli.engine.upscaler import Upscaler
    from linearsr_cli.evaluate.peers import PEER_SPECS, NcnnPeer
    from linearsr_cli.imageio import read_image
    from linearsr_cli.tag.config import TagConfig

    class Silent:
        def start(self, total): pass
        def image_start(self, job, index): pass
        def image_progress(self, done, total): pass
        def image_done(self, record): pass
        def finish(self, summary): pass

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        src = tmp_path / "in"
        make_crops(src)
        files = sorted(src.glob("*.png"))
        weights, weights_note = timing_weights(tmp_path)
        sampler = sampler_config("fidelity")
        upscaler = Upscaler.from_weights(weights, plan_device("cpu", "auto"), TileConfig())
        decoded = [read_image(f).rgb for f in files]
        span = NcnnPeer(PEER_SPECS["span", 4], tile=256, margin=0, threads=torch.get_num_threads())
        upscaler(decoded[0], sampler)  # warm-up
        span.upscale(decoded[0].numpy()) if span.available() else None
        rows: dict[str, list[float]] = {"model only": [], "ncnn loop": [], "batch": [], "command": []}
        for run in range(args.runs):
            start = time.perf_counter()
            for rgb in decoded:
                upscaler(rgb, sampler)
            rows["model only"].append(time.perf_counter() - start)
            if span.available():
                out = tmp_path / f"ncnn{run}"
                out.mkdir()
                start = time.perf_counter()
                for f in files:
                    rgb = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
                    sr = span.upscale(rgb)  # (3, 4h, 4w)
                    arr = np.rint(sr.transpose(1, 2, 0) * 255.0).astype(np.uint8)
                    Image.fromarray(arr).save(out / f.name, compress_level=3)
                rows["ncnn loop"].append(time.perf_counter() - start)
            req = UpscaleRequest(source=str(src), out=tmp_path / f"batch{run}", weights=weights, scale=None,
                                 sampler=sampler, tiles=TileConfig(), output=OutputConfig(),
                                 tags=TagConfig(enabled=False), device="cpu")
            start = time.perf_counter()
            plan = prepare(req)
            summary = load_batch(req, plan).run(plan.jobs, Silent(), prefetch=args.prefetch)
            rows["batch"].append(time.perf_counter() - start)
            assert summary.count("ok") == len(files), [r.error for r in summary.records]
            cmd = [sys.executable, "-m", "linearsr_cli", "upscale", str(src), str(tmp_path / f"cmd{run}"), "--json",
                   "--weights", str(weights), "--preset", "fidelity", "--tags", "off"]
            rows["command"].append(run_once(cmd)[0])
            print(f"run {run + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in rows.items() if v), flush=True)
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; 16 LR 256x256 -> 1024x1024 PNG; "
          f"{weights_note}; {upscaler.plan.describe()}; prefetch {args.prefetch}; median of {args.runs} runs")
    print("| measure | seconds (16 images) | batch / this |")
    print("|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.2f} | {med['batch'] / v:.2f} |")
    print(f"targets: batch <= 1.1 x model only: {med['batch'] / med['model only']:.2f}; "
          + (f"batch <= 1.2 x ncnn loop: {med['batch'] / med['ncnn loop']:.2f}" if "ncnn loop" in med else "ncnn unavailable"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "weights": weights_note, "runs": rows, "median": med}, fh, indent=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", action="store_true", help="the issue-20 comparison (see the docstring)")
    ap.add_argument("--prefetch", type=int, default=2, help="with --pipeline: files in flight (0 = serial)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lr-side", type=int, default=512, help="long side of the LR inputs")
    ap.add_argument("--extra", default="", help="extra upscale options, e.g. '--tags off'")
    ap.add_argument("--json", help="write every run here")
    args = ap.parse_args()
    if args.pipeline:
        pipeline_check(args)
        return

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
