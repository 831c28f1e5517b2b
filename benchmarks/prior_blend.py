"""Issue 23 experiment: at 1-NFE (the fidelity preset), a learned per-pixel blend of the shipped
file's `clean` and `real` priors instead of a hard choice per image.

The fidelity output of the shipped x4 file is one prior's image (the structure expert is bare):
`--input auto` picks the prior per image, and no gate so far beat the constant `real` on the
held-out mixed set. Here a small CNN sees the LR image, the two priors' disagreement (pixel-
unshuffled to LR resolution) and the router's evidence of the whole image, and outputs a weight
per LR pixel: out = real + w * (clean - real) (w bilinearly upsampled to HR). It is trained with
L1 against HR on the router's training crops (train split, half bicubic, half realistic, half of
each saved as a JPEG: train/router.router_crop), the priors run once per crop.

Measured on the held-out mixed set of `linearsr eval --degradation mixed` (data/eval/val512, each
image bicubic and realistic, lossless and saved as a JPEG), as the regret against the per-image
better prior (negative: better than both), beside the two constants.

    python benchmarks/prior_blend.py --photos data/photos [--crops 1200 --steps 1500]

Nothing here is shipped; the numbers go to weights/MODEL_CARD.md as a finding.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from linearsr_cli.checkpoints import default_weights_path, load_weights  # noqa: E402
from linearsr_cli.engine.route import FEATURES, measure  # noqa: E402
from linearsr_cli.evaluate.metrics import psnr_y  # noqa: E402
from linearsr_cli.evaluate.run import MIXED_KINDS, EvalConfig, load_pair, saved_quality  # noqa: E402
from linearsr_cli.perceptual import LpipsScorer  # noqa: E402
from linearsr_cli.train.data import DataConfig  # noqa: E402
from linearsr_cli.train.router import mixed_crops, router_crop  # noqa: E402

SCALE = 4


class BlendGate(nn.Module):
    """w (B, 1, h, w) in [0, 1] at LR resolution from the LR image, the priors' difference
    pixel-unshuffled to LR resolution, and the image's standardised router evidence."""

    def __init__(self, width: int = 32, evidence: int = len(FEATURES), pooled: bool = False) -> None:
        super().__init__()
        c_in = 3 + 3 * SCALE * SCALE + evidence
        self.pooled = pooled  # the last layers also see the image-wide mean of the features
        self.trunk = nn.Sequential(
            nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=4, dilation=4), nn.ReLU(),
        )
        self.head = nn.Conv2d(2 * width if pooled else width, 1, 3, padding=1)

    def forward(self, lr: Tensor, clean: Tensor, real: Tensor, evidence: Tensor) -> Tensor:
        diff = F.pixel_unshuffle(clean - real, SCALE) * 10.0  # (B, 48, h, w): differences are small
        ev = evidence[:, :, None, None].expand(-1, -1, lr.shape[-2], lr.shape[-1])
        x = self.trunk(torch.cat([lr, diff, ev], 1))
        if self.pooled:
            x = torch.cat([x, x.mean((2, 3), keepdim=True).expand_as(x)], 1)
        w = torch.sigmoid(self.head(x))
        return F.interpolate(w, scale_factor=SCALE, mode="bilinear", align_corners=False)


def blend(gate: BlendGate, lr: Tensor, clean: Tensor, real: Tensor, evidence: Tensor) -> Tensor:
    return real + gate(lr, clean, real, evidence) * (clean - real)


def priors_of(model, lr: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        return (model.priors["clean"](lr[None]).clamp(0, 1)[0], model.priors["real"](lr[None]).clamp(0, 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=Path("data/photos"))
    ap.add_argument("--val", type=Path, default=Path("data/eval/val512"))
    ap.add_argument("--crops", type=int, default=1200)
    ap.add_argument("--crop", type=int, default=128, help="HR crop side")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pooled", action="store_true", help="the gate also sees image-wide feature means")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    model, _ = load_weights(default_weights_path(SCALE))
    model.eval()

    start = time.perf_counter()
    data = DataConfig(root=str(args.photos), scale=SCALE, crop=args.crop, degradation="mixed", seed=args.seed)
    dataset = mixed_crops(data)
    rows = []
    for i in range(args.crops):
        lr, hr, kind, quality = router_crop(dataset, i, args.seed)
        lr = lr.float()
        clean, real = priors_of(model, lr)
        rows.append((lr, hr.float(), clean, real, torch.from_numpy(measure(lr, quality).vector()).float()))
    ev_all = torch.stack([r[4] for r in rows])
    mean, std = ev_all.mean(0), ev_all.std(0).clamp_min(1e-6)
    print(f"{args.crops} training crops with both priors in {time.perf_counter() - start:.0f} s", flush=True)

    gate = BlendGate(pooled=args.pooled)
    opt = torch.optim.Adam(gate.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for step in range(args.steps):
        idx = torch.randint(len(rows), (args.batch,), generator=gen).tolist()
        lr, hr, clean, real, ev = (torch.stack([rows[i][k] for i in idx]) for k in range(5))
        loss = F.l1_loss(blend(gate, lr, clean, real, (ev - mean) / std), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step} L1 {loss.item():.4f}", flush=True)
    print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)

    cfg = EvalConfig(hr_dir=args.val, degradation="mixed", scale=SCALE, seed=0, lpips=False, noref=())
    results = []
    gate.eval()
    lpips = LpipsScorer()
    for path in sorted(args.val.iterdir()):
        for kind in MIXED_KINDS:
            hr, lr = load_pair(path, Path(path.name), cfg, kind)
            lr_t = torch.from_numpy(lr)
            clean, real = priors_of(model, lr_t)
            ev = (torch.from_numpy(measure(lr_t, saved_quality(kind)).vector()).float() - mean) / std
            with torch.no_grad():
                mixed = blend(gate, lr_t[None], clean[None], real[None], ev[None])[0].clamp(0, 1)
            images = (("clean", clean), ("real", real), ("blend", mixed))
            psnr = {name: psnr_y(img.numpy(), hr, SCALE) for name, img in images}
            dist = {name: lpips(img.numpy(), hr) for name, img in images}
            best, closest = max(psnr["clean"], psnr["real"]), min(dist["clean"], dist["real"])
            results.append({"image": f"{path.name}#{kind}", "psnr": psnr, "lpips": dist,
                            "regret_db": {k: best - v for k, v in psnr.items()},
                            "regret_lpips": {k: v - closest for k, v in dist.items()}})
            print(f"{path.name}#{kind}: PSNR clean {psnr['clean']:.2f} real {psnr['real']:.2f} blend "
                  f"{psnr['blend']:.2f} | ST-LPIPS {dist['clean']:.3f} {dist['real']:.3f} {dist['blend']:.3f}", flush=True)
    summary = {what: {k: statistics.mean(r[what][k] for r in results) for k in ("clean", "real", "blend")}
               for what in ("regret_db", "regret_lpips")}
    print("mean regret over", len(results), "crops:", json.dumps(summary))
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **summary,
                                         "images": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
