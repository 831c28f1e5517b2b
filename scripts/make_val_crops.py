"""Cut fixed centre crops of the validation photos, the evaluation set of weights/MODEL_CARD.md.

    python scripts/make_val_crops.py --src data/photos/val --out data/eval/val512 --size 512
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", default="data/photos/val")
    ap.add_argument("--out", default="data/eval/val512")
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(args.src).glob("*.png")):
        with Image.open(path) as im:
            w, h = im.size
            s = min(args.size, w, h)
            left, top = (w - s) // 2, (h - s) // 2
            im.convert("RGB").crop((left, top, left + s, top + s)).save(out / path.name)
        print(out / path.name)


if __name__ == "__main__":
    main()
