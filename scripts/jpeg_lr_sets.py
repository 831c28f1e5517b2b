"""LR folders for `linearsr eval --lr`: each held-out image degraded (bicubic or realistic, as eval
makes them, seed 0), then saved as a JPEG of one quality, kept as that JPEG file or saved again as
PNG (the JPEG's pixels without its quality). The web-JPEG check of weights/MODEL_CARD.md.

    python scripts/jpeg_lr_sets.py data/eval/val512 OUT --sets bicubic-q30-jpg,bicubic-q30-png,realistic-q75-png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from linearsr_cli.evaluate.run import EvalConfig, list_images, load_pair  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hr", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--sets", default="bicubic-q30-jpg,bicubic-q30-png,bicubic-q50-jpg,bicubic-q50-png,realistic-q75-png",
                    help="DEGRADATION-qQUALITY-jpg|png, comma separated")
    ap.add_argument("--scale", type=int, default=4)
    args = ap.parse_args()
    for name in args.sets.split(","):
        degradation, quality, fmt = name.split("-")
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        cfg = EvalConfig(hr_dir=args.hr, scale=args.scale, seed=0, degradation=degradation)
        for path in list_images(args.hr):
            lr = load_pair(path, path.relative_to(args.hr), cfg)[1]
            jpeg = folder / f"{path.stem}.jpg"
            Image.fromarray((lr.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(jpeg, quality=int(quality[1:]))
            if fmt == "png":
                with Image.open(jpeg) as im:
                    im.convert("RGB").save(folder / f"{path.stem}.png")
                jpeg.unlink()
        print(f"{folder}: {len(list(folder.iterdir()))} LR files")


if __name__ == "__main__":
    main()
