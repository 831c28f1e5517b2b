"""A crop grid of the held-out mixed-set images that `--input auto` blends in the perceptual preset
(engine/route.Blend): LR (nearest) | `clean` prior's chain | `texture` prior's chain | the blend | HR.
The eye check of weights/MODEL_CARD.md, "Blending both priors where the gate is unsure".

    python scripts/blend_grid.py data/eval/val512 docs/router/blend/grid_blend.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from linearsr_cli.config import PRESETS, TileConfig  # noqa: E402
from linearsr_cli.engine.device import plan_device  # noqa: E402
from linearsr_cli.engine.route import choose_input  # noqa: E402
from linearsr_cli.engine.upscaler import Conditioning, Upscaler  # noqa: E402
from linearsr_cli.evaluate.run import MIXED_KINDS, EvalConfig, list_images, load_pair, saved_quality  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hr", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--crop", type=int, default=160, help="HR crop side, from (192, 192)")
    ap.add_argument("--weights", type=Path, default=REPO / "weights" / "linearsr-x4.safetensors")
    args = ap.parse_args()
    up = Upscaler.from_weights(args.weights, plan_device("cpu", "auto"), TileConfig())
    cfg, sampler, c = EvalConfig(hr_dir=args.hr, scale=up.scale, seed=0, degradation="mixed"), PRESETS["perceptual"], args.crop
    rows = []
    for path in list_images(args.hr):
        for kind in MIXED_KINDS:
            hr, lr = load_pair(path, path.relative_to(args.hr), cfg, kind)
            lr_t = torch.from_numpy(lr)
            route = choose_input(up.cfg, up.router, "auto", lr_t, saved_quality(kind), sampler, probe=up.real_prior_probe)
            if route.shares is None:
                continue
            outs = [torch.nn.functional.interpolate(lr_t[None], scale_factor=up.scale, mode="nearest")[0].numpy()]
            for cond in (up.cfg.prior_index("clean"), up.cfg.prior_index("texture"), route.shares):
                outs.append(up(lr_t, sampler, Conditioning(cond)).numpy())
            row = np.concatenate([o[:, 192:192 + c, 192:192 + c].transpose(1, 2, 0) for o in outs + [hr]], 1)
            img = Image.fromarray((row.clip(0, 1) * 255).round().astype(np.uint8))
            ImageDraw.Draw(img).text((4, 4), f"{path.stem[:18]}#{kind} {route.prior}", fill=(255, 0, 0))
            rows.append(np.asarray(img))
    if not rows:
        sys.exit("no image was blended")
    Image.fromarray(np.concatenate(rows, 0)).save(args.out)
    print(f"{args.out}: {len(rows)} rows: LR | clean | texture | blend | HR")


if __name__ == "__main__":
    main()
