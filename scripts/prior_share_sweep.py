"""The perceptual preset with its structure expert's image a mix of two priors at fixed shares:
`texture` share w, `clean` share 1 - w (the blend's mechanism, engine/route.Blend), scored like
`linearsr eval` (PSNR-Y, ST-LPIPS, NIQE, BRISQUE; tags off). The issue-23 check of weights/MODEL_CARD.md,
"The sampler does not close the bicubic NIQE gap".

    python scripts/prior_share_sweep.py HR_DIR --degradation bicubic --shares 0,0.2,0.35,0.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from linearsr_cli.config import PRESETS, TileConfig  # noqa: E402
from linearsr_cli.engine.device import plan_device  # noqa: E402
from linearsr_cli.engine.upscaler import Conditioning, Upscaler  # noqa: E402
from linearsr_cli.evaluate.noref import NoReference  # noqa: E402
from linearsr_cli.evaluate.run import EvalConfig, list_images, load_pair, score  # noqa: E402
from linearsr_cli.perceptual import LpipsScorer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hr", type=Path, help="HR image folder (512-px crops keep it quick)")
    ap.add_argument("--degradation", default="bicubic", choices=["bicubic", "realistic"])
    ap.add_argument("--shares", default="0,0.2,0.35,0.5", help="texture shares w to try")
    ap.add_argument("--weights", type=Path, default=Path(__file__).resolve().parents[1] / "weights" / "linearsr-x4.safetensors")
    args = ap.parse_args()
    up = Upscaler.from_weights(args.weights, plan_device("cpu", "auto"), TileConfig())
    if not {"clean", "texture"} <= set(up.cfg.prior_inputs):
        sys.exit(f"{args.weights}: needs a clean and a texture prior, has {up.cfg.prior_inputs}")
    cfg = EvalConfig(hr_dir=args.hr, scale=up.scale, seed=0, degradation=args.degradation)
    noref, lpips = NoReference.load(), LpipsScorer()
    shares = [float(w) for w in args.shares.split(",")]
    scores: dict[float, list[dict]] = {w: [] for w in shares}
    for path in list_images(args.hr):
        hr, lr = load_pair(path, path.relative_to(args.hr), cfg)
        for w in shares:
            mix = tuple(1.0 - w if name == "clean" else w if name == "texture" else 0.0 for name in up.cfg.prior_inputs)
            sr = up(torch.from_numpy(lr), PRESETS["perceptual"], Conditioning(mix)).numpy()
            scores[w].append(score(sr, hr, noref, up.scale, lpips))
    for w in shares:
        means = {k: float(np.mean([s[k] for s in scores[w]])) for k in ("psnr", "lpips", "niqe", "brisque")}
        print(f"texture share {w:.2f}: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))


if __name__ == "__main__":
    main()
