"""Speed against the peers at 1024x1024 output (256x256 LR input, x4), all in one process (issue 7).

Methods, each timed on the same LR image, in interleaved rounds (round r runs every method once,
so a slow drift in machine load hits all of them alike), median of `--runs` rounds after warm-up:

    bicubic               PyTorch bicubic upsample (the floor)
    span (ncnn)           SPAN x4 through evaluate/peers.py, whole image in one pass
    realesrgan (ncnn)     Real-ESRGAN x4plus through evaluate/peers.py, whole image in one pass
    rrdbnet fp32 / bf16   the same RRDBNet architecture in PyTorch (benchmarks/rrdbnet.py, random
                          weights), plain fp32 and, where engine.device.cpu_bf16() says bf16 is
                          fast here, under bf16 autocast: framework-fair
    linearsr 1-NFE        the real engine (Upscaler, the default CPU plan, auto tiling), fidelity
                          preset (with the shipped weights: the SPAN prior alone), tags off,
                          through upscale_chain with --input auto (the gate included: the
                          weights' router, or the constant they fix), the prior on the backend
                          engine.device.cpu_prior_backend picks (torch or ncnn)
    ... prior in torch / ncnn   the same with the prior's backend forced (ncnn: when installed)
    linearsr multi-step   the same, PRESETS["perceptual"] (4-step DPM-Solver++(2M))
    linearsr multi-step + tags  tagger on the LR image + text encoder + the perceptual run with the
                          tag tokens (the per-image cost of TAG; the one-off load is reported apart)

LinearSR uses weights/linearsr-x4.safetensors when it exists, else a random-weights file of the
default ModelConfig (time does not depend on the values); the report says which.

    python benchmarks/bench_peers_speed.py --runs 5 --json peers_speed.json
    python benchmarks/bench_peers_speed.py --profile 22      # torch.profiler of one 1-NFE call
    python benchmarks/bench_peers_speed.py --lr-size 64 --runs 1      # smoke test
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.rrdbnet import RRDBConfig, RRDBNet  # noqa: E402
from benchmarks.timing_weights import timing_weights  # noqa: E402
from linearsr_cli.config import PRESETS, TileConfig  # noqa: E402
from linearsr_cli.engine.device import (  # noqa: E402
    cpu_bf16,
    cpu_capability,
    cpu_prior_backend,
    ncnn_available,
    plan_device,
)
from linearsr_cli.engine.ncnn_prior import CpuPrior  # noqa: E402
from linearsr_cli.engine.route import blended_route, choose_input  # noqa: E402
from linearsr_cli.engine.upscaler import Conditioning, Upscaler, upscale_chain  # noqa: E402
from linearsr_cli.evaluate.peers import PEER_SPECS, NcnnPeer  # noqa: E402
from linearsr_cli.nn.dit import bicubic_upsample  # noqa: E402
from linearsr_cli.sampling.samplers import count_evaluations  # noqa: E402


@dataclass
class Method:
    """One contender: `run(lr)` upscales a (3, h, w) float32 tensor; `slow` ones warm up on a
    small input only (a full-size warm-up of Real-ESRGAN costs a minute)."""

    name: str
    run: Callable[[torch.Tensor], object]
    slow: bool = False
    note: str = ""


def cpu_name() -> str:
    """The CPU's model name and its AVX-512 / bf16 / AMX flags, from /proc/cpuinfo (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    has = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{fields.get('model name', platform.machine())} ({', '.join(has) or 'no AVX2'})"


def load_lr(size: int) -> torch.Tensor:
    """A (3, size, size) float32 LR photo: skimage's astronaut (samples/) resized with Lanczos."""
    img = Image.open(REPO / "samples" / "astronaut.png").convert("RGB").resize((size, size), Image.LANCZOS)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()



def rrdb_method(name: str, bf16: bool, probe: torch.Tensor) -> Method:
    """RRDBNet in PyTorch; the memory layout (NCHW or channels-last) is the faster one on a
    small probe, so the peer gets its best CPU configuration."""
    model = RRDBNet(RRDBConfig()).eval()
    layouts = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        m = model.to(memory_format=layout)
        x = probe[None].contiguous(memory_format=layout)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            m(x)
            start = time.perf_counter()
            m(x)
            layouts[layout] = time.perf_counter() - start
    best = min(layouts, key=layouts.get)
    model = model.to(memory_format=best)

    def run(lr: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(lr[None].contiguous(memory_format=best)).float().clamp_(0, 1)

    label = "channels-last" if best == torch.channels_last else "NCHW"
    return Method(name, run, slow=True, note=f"{label}, {'bf16 autocast' if bf16 else 'fp32'}")


def build_methods(lr_size: int, threads: int, weights: Path, skip: set[str]) -> tuple[list[Method], dict]:
    extra: dict = {}
    probe = load_lr(32)
    methods = [Method("bicubic", lambda lr: bicubic_upsample(lr[None], 4).clamp_(0, 1), note="PyTorch, fp32")]
    for spec, label in ((PEER_SPECS["span", 4], "span (ncnn)"), (PEER_SPECS["realesrgan", 4], "realesrgan (ncnn)")):
        peer = NcnnPeer(spec, tile=max(lr_size, 16), margin=0, threads=threads)  # one whole-image pass
        if peer.available():
            methods.append(Method(label, peer.upscale, slow=spec.name == "realesrgan", note="ncnn, fp32, CPU"))
        else:
            extra[f"{label} unavailable"] = peer.unavailable_reason()
    if "rrdbnet" not in skip:
        methods.append(rrdb_method("rrdbnet fp32 (PyTorch)", False, probe))
        if cpu_bf16().use_bf16:
            methods.append(rrdb_method("rrdbnet bf16 (PyTorch)", True, probe))
        else:
            extra["rrdbnet bf16 skipped"] = cpu_bf16().reason

    plan = plan_device("cpu", "auto")
    upscaler = Upscaler.from_weights(weights, plan, TileConfig())
    extra["linearsr plan"] = plan.describe()
    extra["linearsr tiles at this size"] = upscaler.tile_count(lr_size, lr_size)
    fidelity, perceptual = PRESETS["fidelity"], PRESETS["perceptual"]
    extra["perceptual preset"] = f"{perceptual.steps} steps {perceptual.solver}, {count_evaluations(perceptual)} NFE"
    def one_nfe(up: Upscaler) -> Callable[[torch.Tensor], object]:
        return lambda lr: upscale_chain([up], lr, fidelity, input="auto")[0]

    route = choose_input(upscaler.cfg, upscaler.router, "auto", load_lr(lr_size), None, fidelity,
                         probe=upscaler.real_prior_probe)
    prior = upscaler.model.priors[upscaler.cfg.prior_inputs[route.index]]
    decision = cpu_prior_backend(prior.cfg)
    extra["1-NFE --input auto"] = f"prior '{route.prior}' ({route.why})"
    extra["prior backend (auto)"] = decision.reason
    methods.append(Method("linearsr 1-NFE", one_nfe(upscaler),
                          note=f"engine, {plan.describe()}, tags off, prior in {decision.backend} (auto)"))
    if upscaler.router is not None and upscaler.router.blend is not None:
        runs = upscaler.router.blend.runs
        sampler = perceptual if "multi-step" in runs else fidelity
        half = blended_route(upscaler.cfg, "real", 0.5, sampler, "").condition

        def blended(lr: torch.Tensor) -> torch.Tensor:  # the gate's work, then both priors: an unsure image
            choose_input(upscaler.cfg, upscaler.router, "auto", lr, None, sampler, probe=upscaler.real_prior_probe)
            return upscaler(lr, sampler, Conditioning(half))

        kind = "multi-step" if sampler is perceptual else "1-NFE"
        methods.append(Method(f"linearsr {kind}, an image the gate blends", blended,
                              note="the gate and its probe, then the run with both priors' images mixed half and half"))
    for backend in ("torch", "ncnn"):
        if backend == "ncnn" and not ncnn_available():
            continue
        forced = Upscaler.from_weights(weights, plan, TileConfig())
        forced.model.prior_calls = {n: CpuPrior(p, backend) for n, p in forced.model.priors.items()}
        methods.append(Method(f"linearsr 1-NFE, prior in {backend}", one_nfe(forced),
                              note=f"engine, {plan.describe()}, tags off, prior forced to {backend}"))
    methods.append(Method("linearsr multi-step", lambda lr: upscaler(lr, perceptual),
                          note=f"engine, {plan.describe()}, tags off, {extra['perceptual preset']}"))

    if "tags" not in skip:
        from linearsr_cli.tag.guidance import TagConfig, TagGuidance

        guidance = TagGuidance(TagConfig(), plan.device)
        start = time.perf_counter()
        guidance.tagger, guidance.encoder  # noqa: B018 - load both once, as a batch does
        extra["tagger + encoder load s (once per batch)"] = round(time.perf_counter() - start, 3)

        def with_tags(lr: torch.Tensor) -> torch.Tensor:
            resolved = guidance.auto_tags(lr)
            tokens, mask = guidance.encode(resolved.tags)
            extra["tags"] = list(resolved.tags)
            return upscaler(lr, perceptual, Conditioning(choose_input(upscaler.cfg, None, None).index, tokens, mask))

        methods.append(Method("linearsr multi-step + tags", with_tags,
                              note="tagger + encoder + the perceptual run with tag tokens"))
    return methods, extra


def profile_engine(lr_size: int, rows: int) -> None:
    """Where one 1-NFE Upscaler call spends its time: torch.profiler, ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with tempfile.TemporaryDirectory() as tmp:
        weights, note = timing_weights(Path(tmp))
        upscaler = Upscaler.from_weights(weights, plan_device("cpu", "auto"), TileConfig())
    lr = load_lr(lr_size)
    upscaler(lr, PRESETS["fidelity"])  # warm-up
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        upscaler(lr, PRESETS["fidelity"])
    print(f"one 1-NFE engine call, LR {lr_size}² -> {4 * lr_size}², {upscaler.plan.describe()}, {note}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lr-size", type=int, default=256, help="LR side; output is 4x")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch and ncnn threads")
    ap.add_argument("--skip", nargs="*", default=[], choices=["rrdbnet", "tags"])
    ap.add_argument("--json", help="write every timing here")
    ap.add_argument("--profile", type=int, default=0, metavar="ROWS",
                    help="only profile one LinearSR 1-NFE engine call (torch.profiler) and print the top ROWS ops")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.profile:
        profile_engine(args.lr_size, args.profile)
        return
    with tempfile.TemporaryDirectory() as tmp:
        weights, weights_note = timing_weights(Path(tmp))
        methods, extra = build_methods(args.lr_size, args.threads, weights, set(args.skip))
        lr, small = load_lr(args.lr_size), load_lr(min(64, args.lr_size))
        for m in methods:  # warm-up: model loads, oneDNN primitives, allocator
            m.run(small)
            if not m.slow:
                m.run(lr)
        wall: dict[str, list[float]] = {m.name: [] for m in methods}
        cpu: dict[str, list[float]] = {m.name: [] for m in methods}
        for r in range(args.runs):
            for m in methods:
                c0, t0 = time.process_time(), time.perf_counter()
                m.run(lr)
                wall[m.name].append(time.perf_counter() - t0)
                cpu[m.name].append(time.process_time() - c0)
            print(f"round {r + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in wall.items()), flush=True)

    med = {k: statistics.median(v) for k, v in wall.items()}
    ref = med.get("realesrgan (ncnn)")
    side = args.lr_size * 4
    print()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} (capability "
          f"{cpu_capability()}), {args.threads} threads; LR {args.lr_size}² -> {side}²; median of "
          f"{args.runs} interleaved rounds; LinearSR: {weights_note}")
    for k, v in extra.items():
        print(f"  {k}: {v}")
    print("| method | setup | wall s (median) | min–max | CPU s | time / Real-ESRGAN (ncnn) |")
    print("|---|---|---|---|---|---|")
    for m in methods:
        ratio = f"{med[m.name] / ref:.3f}" if ref else "—"
        print(f"| {m.name} | {m.note} | {med[m.name]:.3f} | {min(wall[m.name]):.2f}–{max(wall[m.name]):.2f} | "
              f"{statistics.median(cpu[m.name]):.2f} | {ratio} |")
    if "linearsr multi-step + tags" in med:
        print(f"tag overhead per image: {med['linearsr multi-step + tags'] - med['linearsr multi-step']:.3f} s "
              f"(tags {extra.get('tags')})")
    if ref:
        for name in ("linearsr 1-NFE", "linearsr multi-step"):
            print(f"Real-ESRGAN (ncnn) / {name}: {ref / med[name]:.1f}x faster")
    if "span (ncnn)" in med:
        for name in (m.name for m in methods if m.name.startswith("linearsr 1-NFE")):
            print(f"{name} / SPAN (ncnn): {med[name] / med['span (ncnn)']:.2f}x the time")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "weights": weights_note, "extra": extra, "wall": wall, "cpu": cpu,
                       "median": med}, fh, indent=1)


if __name__ == "__main__":
    main()
