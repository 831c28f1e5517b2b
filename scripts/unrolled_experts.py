"""Fine-tune the refinement experts of a finished weights file through the sampling chain they run
in (linearsr_cli/train/unrolled.py): the issue-23 experiment of weights/MODEL_CARD.md, "Refinement
over x4v3". Every checkpoint is a whole weights file (router and records kept) for `linearsr eval
--weights`. Rerun the same command to resume.

    python scripts/unrolled_experts.py --out runs/unrolled --degradation realistic --crop 256 \
        --batch 2 --lr 1e-4 --l1 0 --lpips 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from linearsr_cli.checkpoints import load_weights  # noqa: E402
from linearsr_cli.config import SamplerConfig  # noqa: E402
from linearsr_cli.tag.training import make_tag_source  # noqa: E402
from linearsr_cli.train.config import PriorTrainConfig  # noqa: E402
from linearsr_cli.train.data import DataConfig, PairDataset  # noqa: E402
from linearsr_cli.train.loop import DatasetBatches  # noqa: E402
from linearsr_cli.train.recipe import photo_map  # noqa: E402
from linearsr_cli.train.unrolled import train_unrolled  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="weights/linearsr-x4.safetensors")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default="data/photos")
    ap.add_argument("--prior", default="texture", help="the prior every sample is served by")
    ap.add_argument("--degradation", default="mixed")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--l1", type=float, default=1.0, help="weight of L1 against HR")
    ap.add_argument("--lpips", type=float, default=1.0, help="weight of ST-LPIPS against HR")
    ap.add_argument("--ema", type=float, default=0.99)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--sampler-steps", type=int, default=4)
    ap.add_argument("--shift", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    model, info = load_weights(a.weights)
    data = DataConfig(root=a.data, scale=info.config.scale, crop=a.crop, degradation=a.degradation, seed=a.seed)
    dataset = PairDataset(data, "train")
    cfg = PriorTrainConfig().replace(
        steps=a.steps, batch_size=a.batch, lr=a.lr, warmup=20, ckpt_every=a.ckpt_every, precision="auto",
        ema_decay=a.ema, l1_weight=a.l1, lpips_weight=a.lpips, lpips_samples=0, seed=a.seed,
    )
    result = train_unrolled(
        model, info, DatasetBatches(dataset, a.batch), cfg, a.out,
        sampler=SamplerConfig(steps=a.sampler_steps, solver="dpmpp2m", shift=a.shift), prior=a.prior,
        tag_source=make_tag_source(True, photo_map(dataset), scale=info.config.scale), note=" ".join(sys.argv[1:]),
    )
    print(f"{result.status} at step {result.step}: {result.last_checkpoint}")


if __name__ == "__main__":
    main()
