"""A gate of its own for `--input auto` in multi-step runs (engine/route.Router.multi_step),
fitted on what those runs give on the router's fitting crops, not on the 1-NFE priors.

Step 1 scores crops [start, stop) of `train router`'s fitting crops (the same crops, cut again
by index) with the perceptual preset, the structure expert starting from the clean prior, a
half-and-half mix, and the real side's prior (train/router.chain_curve); one JSON per range, so
ranges run in parallel and a rerun skips what is done:

    python scripts/multistep_router.py score --weights W --cache runs/ms --start 0 --stop 200

Step 2 fits the gate and its blend on the scored crops (their evidence from the samples file
that `train router --samples` wrote) and writes W again with it:

    python scripts/multistep_router.py fit --weights W --cache runs/ms --samples S --out W2 \\
        --features sharpening,jpeg
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from linearsr_cli.checkpoints import read_info  # noqa: E402
from linearsr_cli.cli.train_options import data_config  # noqa: E402
from linearsr_cli.config import PRESETS, TileConfig  # noqa: E402
from linearsr_cli.engine.device import plan_device  # noqa: E402
from linearsr_cli.engine.route import Router  # noqa: E402
from linearsr_cli.engine.upscaler import Upscaler  # noqa: E402
from linearsr_cli.train.recipe import revise_weights  # noqa: E402
from linearsr_cli.train.router import (  # noqa: E402
    chain_curve,
    fit_multi_step,
    load_samples,
    mixed_crops,
    router_crop,
)


def score(args: argparse.Namespace) -> None:
    out = args.cache / f"curves-{args.start:05d}-{args.stop:05d}.json"
    if out.exists():
        print(f"{out}: done before")
        return
    torch.set_num_threads(args.threads)
    up = Upscaler.from_weights(args.weights, plan_device("cpu", "auto"), TileConfig())
    data = data_config(args.data, args.crop, up.scale, "mixed", args.seed)
    dataset, rows = mixed_crops(data), {}
    for i in range(args.start, args.stop):
        lr, hr, _, _ = router_crop(dataset, i, data.seed)
        rows[i] = chain_curve(up, lr, hr, PRESETS["perceptual"])
    args.cache.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows))
    print(f"{out}: {len(rows)} crops")


def fit(args: argparse.Namespace) -> None:
    curves = {int(i): c for f in sorted(args.cache.glob("curves-*.json")) for i, c in json.loads(f.read_text()).items()}
    samples = load_samples(args.samples)
    crops = sorted(i for i in curves if i < len(samples))
    features = [f.strip() for f in args.features.split(",") if f.strip()]
    gate = fit_multi_step([samples[i].evidence for i in crops], [curves[i] for i in crops], features)
    gate = dataclasses.replace(gate, fitted={**dict(gate.fitted or {}), "crops": len(crops),
                                             "command": "scripts/multistep_router.py"})
    top = Router.from_dict(read_info(args.weights).router)
    top = dataclasses.replace(top, blend=None, multi_step=gate)  # the multi-step gate brings its own blend
    path = revise_weights(args.weights, args.out, router=top.to_dict(), dtype=args.dtype,
                          note=f"multi-step gate fitted on {len(crops)} crops' multi-step runs")
    f = gate.fitted
    print(f"wrote {path}: multi-step gate on {len(crops)} crops, train regret {f['train_regret_db']:.3f} dB "
          f"(blend {f['blend_train_regret_db']:.3f} dB, {f['blended_share']:.0%} blended), "
          f"weights {dict((n, round(w, 2)) for n, w in zip(gate.features, gate.weights, strict=True) if w)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    a = sub.add_parser("score")
    a.add_argument("--start", type=int, required=True)
    a.add_argument("--stop", type=int, required=True)
    a.add_argument("--data", default="data/photos")
    a.add_argument("--crop", type=int, default=512)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--threads", type=int, default=1)
    b = sub.add_parser("fit")
    b.add_argument("--samples", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--features", default="sharpening,jpeg")
    b.add_argument("--dtype", default="fp16")
    for p in (a, b):
        p.add_argument("--weights", type=Path, required=True)
        p.add_argument("--cache", type=Path, required=True)
    args = ap.parse_args()
    score(args) if args.step == "score" else fit(args)


if __name__ == "__main__":
    main()
