"""TAG ablation: PSNR (Y, border 4) of the same weights under three guidance modes.

    none    no tags: the learned null token only
    tags    the tagger's labels on the LR image, encoded by MiniLM (what `upscale` does)
    visual  the tagger's pooled penultimate feature (1280-d) as one 384-d token
            (linearsr_cli.tag.tagger.visual_token); meaningful only for weights trained with
            that token: pass them as --visual-weights (else --weights is used, and says so)

LR inputs are MATLAB-style bicubic downscales of centre crops of the HR validation photos.

    python benchmarks/bench_tag_ablation.py --weights weights/linearsr_x4.safetensors \
        --val data/photos/val --max-side 512 --preset fidelity --json tag_ablation.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

MODES = ("none", "tags", "visual")
Guidance = tuple[Tensor | None, Tensor | None]


def centre_crop(hr: Tensor, max_side: int, multiple: int) -> Tensor:
    """Centre crop of (3, H, W) to at most max_side per side, each side a multiple of `multiple`."""
    h, w = hr.shape[-2:]
    ch = min(h, max_side) // multiple * multiple
    cw = min(w, max_side) // multiple * multiple
    top, left = (h - ch) // 2, (w - cw) // 2
    return hr[:, top : top + ch, left : left + cw]


def guidance_for(mode: str, lr: Tensor, guide) -> tuple[Guidance, list[str]]:
    """Token states + mask for one LR image (3, h, w) under `mode`, and the tags shown."""
    from linearsr_cli.tag.tagger import visual_token

    if mode == "none":
        return (None, None), []
    if mode == "tags":
        res = guide.auto_tags(lr)
        return guide.encode(res.tags), list(res.tags)
    if mode == "visual":
        tok, mask = visual_token(guide.tagger.features(lr[None]))  # (1, 1, 384), (1, 1)
        return (tok.to(guide.device), mask.to(guide.device)), ["<visual>"]
    raise ValueError(f"unknown mode {mode!r}")


def super_resolve(model, lr: Tensor, guidance: Guidance, sampler_cfg, seed: int) -> Tensor:
    """(3, h, w) LR -> (3, sh, sw) SR in [0, 1] with the given tag tokens."""
    from linearsr_cli.nn.dit import compose_output
    from linearsr_cli.sampling.samplers import draw_noise, sample

    cfg = model.cfg
    dev = next(model.parameters()).device
    lr_b = lr[None].to(dev)  # (1, 3, h, w)
    tags, mask = guidance
    noise = draw_noise((1, 3, lr.shape[-2] * cfg.scale, lr.shape[-1] * cfg.scale), seed).to(dev)

    def denoise(x_t: Tensor, t: float) -> Tensor:
        return model(x_t, t, lr_b, tags, mask)

    with torch.inference_mode():
        x0 = sample(denoise, noise, sampler_cfg)
    return compose_output(lr_b, x0, cfg)[0].cpu()


def run_ablation(
    models: dict[str, torch.nn.Module],
    images: list[tuple[str, Tensor]],
    guide,
    sampler_cfg,
    *,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, dict]:
    """PSNR per image and mode; `models` maps each mode to the weights it runs with."""
    from linearsr_cli.evaluate.metrics import psnr_y
    from linearsr_cli.train.degrade import bicubic_downscale

    out: dict[str, dict] = {m: {"psnr": {}, "tags": {}, "seconds": []} for m in models}
    scale = next(iter(models.values())).cfg.scale
    for name, hr in images:
        lr = bicubic_downscale(hr, scale).clamp(0.0, 1.0)  # (3, h, w)
        for mode, model in models.items():
            guidance, shown = guidance_for(mode, lr, guide)
            start = time.perf_counter()
            sr = super_resolve(model, lr, guidance, sampler_cfg, seed)
            out[mode]["seconds"].append(time.perf_counter() - start)
            out[mode]["psnr"][name] = psnr_y(sr, hr, border=scale)
            out[mode]["tags"][name] = shown
            log(f"{name:32s} {mode:7s} PSNR {out[mode]['psnr'][name]:7.3f}  tags {shown}")
    for mode in out:
        vals = list(out[mode]["psnr"].values())
        out[mode]["mean_psnr"] = statistics.fmean(vals) if vals else float("nan")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="LinearSR weights (safetensors) for none/tags")
    ap.add_argument("--visual-weights", default="", help="weights trained with the visual token")
    ap.add_argument("--val", required=True, help="folder of HR validation images (recursive)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--max-side", type=int, default=512, help="HR centre crop per side")
    ap.add_argument("--preset", default="fidelity", help="sampler preset (fidelity, perceptual)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="", help="write all numbers here")
    args = ap.parse_args()

    from linearsr_cli.checkpoints import load_weights
    from linearsr_cli.config import PRESETS
    from linearsr_cli.engine.device import choose_device
    from linearsr_cli.imageio import READABLE_SUFFIXES, read_image
    from linearsr_cli.tag.guidance import TagConfig, TagGuidance

    device = choose_device(args.device)
    base, info = load_weights(args.weights)
    models = {m: base.to(device) for m in args.modes if m != "visual"}
    if "visual" in args.modes:
        if args.visual_weights:
            models["visual"] = load_weights(args.visual_weights)[0].to(device)
        else:
            print("note: --visual-weights not given; the visual mode runs the tag-trained weights")
            models["visual"] = base.to(device)
    scale = base.cfg.scale
    paths = sorted(p for p in Path(args.val).rglob("*") if p.suffix.lower() in READABLE_SUFFIXES)
    if not paths:
        print(f"no images under {args.val}", file=sys.stderr)
        return 1
    images = [(p.name, centre_crop(read_image(p).rgb, args.max_side, scale)) for p in paths]
    guide = TagGuidance(TagConfig(), device)
    result = run_ablation(models, images, guide, PRESETS[args.preset], seed=args.seed, log=print)

    print(f"\nTAG ablation, {len(images)} val images, x{scale}, preset {args.preset}, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"{'mode':8s} {'mean PSNR-Y':>12s} {'median s/img':>13s}")
    for mode in args.modes:
        r = result[mode]
        print(f"{mode:8s} {r['mean_psnr']:12.3f} {statistics.median(r['seconds']):13.2f}")
    if args.json:
        meta = {"weights": str(info.path), "visual_weights": args.visual_weights or None,
                "preset": args.preset, "max_side": args.max_side, "device": str(device)}
        Path(args.json).write_text(json.dumps({"meta": meta, "modes": result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
