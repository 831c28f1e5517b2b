"""Fit `--input auto`'s gate (engine/route.py) for a weights file with a clean and a real prior.

Training crops (the train split only; the held-out photos stay out) are cut as stage 0 cuts
them: half bicubic, half the realistic pipeline. Half of each kind is then "saved" as a JPEG the
way photo pipelines meet them (clean: quality 90-100, realistic: 60-95), which both changes the
pixels and gives the file's evidence (its quality); the other half stays lossless (no file
evidence). For each crop both priors run, and the gate learns from the PSNR-Y gain of the real
prior over the clean one, each crop weighted by what a wrong route would lose.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from linearsr_cli.checkpoints import read_safetensors, write_safetensors
from linearsr_cli.degrade import jpeg_roundtrip
from linearsr_cli.engine.route import FEATURES, MONOTONE, Evidence, Router, measure
from linearsr_cli.errors import ConfigError
from linearsr_cli.evaluate.metrics import psnr_y
from linearsr_cli.nn.dit import LinearSR
from linearsr_cli.train.data import DataConfig, PairDataset

SAMPLES_FORMAT = "linearsr-router-samples"


@dataclasses.dataclass(frozen=True)
class RouterSample:
    lr: torch.Tensor  # (3, h, w) the LR crop as the router sees it (after the JPEG save, if any)
    gain: float  # PSNR-Y(real prior) - PSNR-Y(clean prior), dB
    kind: str  # the degradation drawn: bicubic | realistic
    jpeg_quality: int | None
    sharpening: float = 0.0  # the real prior's evidence (engine/route.sharpening); 0 in older sample files

    @property
    def evidence(self) -> Evidence:
        return dataclasses.replace(measure(self.lr, self.jpeg_quality), sharpening=self.sharpening)


def mixed_crops(data: DataConfig) -> PairDataset:
    """The training crops the router meets: `data`'s train split, half bicubic, half realistic."""
    return PairDataset(dataclasses.replace(data, degradation="mixed"), "train")


def router_crop(dataset: PairDataset, i: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, str, int | None]:
    """Crop `i` of `dataset` as a photo pipeline hands it over: (LR, HR, its degradation kind, the
    JPEG quality it was saved at or None). Half the crops are saved as a JPEG (bicubic: quality
    90-100, realistic: 60-95), seeded by (seed, i)."""
    item = dataset[i]
    lr, hr = item["lr"], item["hr"]
    rng = np.random.default_rng([seed, 7, i])
    quality = None
    if rng.random() < 0.5:  # saved as a JPEG by whoever made the file
        quality = int(rng.integers(90, 101)) if item["kind"] == "bicubic" else int(rng.integers(60, 96))
        lr = torch.from_numpy(jpeg_roundtrip(lr.permute(1, 2, 0).numpy(), quality)).permute(2, 0, 1)
    return lr, hr, str(item["kind"]), quality


def router_samples(
    model: LinearSR, data: DataConfig, count: int, *, progress: Callable[[int, int], None] | None = None
) -> list[RouterSample]:
    """`count` training crops of `data` (degradation forced to mixed), each with the real prior's
    PSNR-Y gain over the clean prior's."""
    if not {"clean", "real"} <= set(model.cfg.prior_inputs):
        raise ConfigError(f"the router chooses between a clean and a real prior; these weights have {model.cfg.prior_inputs}")
    dataset = mixed_crops(data)
    out = []
    with torch.no_grad():
        for i in range(count):
            lr, hr, kind, quality = router_crop(dataset, i, data.seed)
            scores, images = {}, {}
            for name in ("clean", "real"):
                images[name] = model.priors[name](lr[None].float())[0]
                scores[name] = psnr_y(images[name].clamp(0, 1), hr, border=data.scale)
            real = model.priors["real"]

            def probe(x: torch.Tensor, whole: torch.Tensor = images["real"], size: tuple[int, ...] = tuple(lr.shape),
                      net: torch.nn.Module = real) -> torch.Tensor:
                # the crop's real image already made, when the probe region is the whole crop
                return whole if tuple(x.shape) == size else net(x[None].float())[0]

            sharp = measure(lr.float(), quality, probe).sharpening or 0.0
            out.append(RouterSample(lr.float(), scores["real"] - scores["clean"], kind, quality, sharp))
            if progress is not None:
                progress(i + 1, count)
    return out


def save_samples(samples: list[RouterSample], path: str | os.PathLike[str]) -> None:
    """The fitting crops (uint8 LR) and their gains, to refit or study without recomputing."""
    lrs = torch.stack([(s.lr * 255).round().to(torch.uint8) for s in samples])  # (N, 3, h, w)
    meta = {"format": SAMPLES_FORMAT, "rows": json.dumps([{"gain": s.gain, "kind": s.kind, "jpeg_quality": s.jpeg_quality,
                                                           "sharpening": s.sharpening} for s in samples])}
    write_safetensors(path, {"lr": lrs}, meta)


def load_samples(path: str | os.PathLike[str]) -> list[RouterSample]:
    tensors, meta = read_safetensors(path, SAMPLES_FORMAT)
    rows = json.loads(meta["rows"])
    return [RouterSample(tensors["lr"][i].float() / 255.0, float(r["gain"]), r["kind"], r["jpeg_quality"],
                         float(r.get("sharpening", 0.0))) for i, r in enumerate(rows)]


def fit_router(evidence: Sequence[Evidence], gain: Sequence[float], *, l2: float = 1e-2,
               iterations: int = 2000, features: Sequence[str] = FEATURES) -> Router:
    """Fit the gate on crops with measured `gain` = PSNR(real prior) - PSNR(clean prior): a
    logistic regression on sign(gain) with each crop weighted by |gain| (the loss of routing it
    wrong), so the fit minimises expected regret rather than counting mistakes; projected
    gradient descent on standardised features with a small L2 penalty, the MONOTONE features'
    weights kept >= 0, and those not in `features` kept at 0."""
    unknown = sorted(set(features) - set(FEATURES))
    if unknown or not features:
        raise ConfigError(f"router features must be among {', '.join(FEATURES)}, got {list(features)}")
    x = np.stack([e.vector() for e in evidence])  # (N, F)
    g = np.asarray(gain, dtype=np.float64)
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (x - mean) / scale
    y = (g > 0).astype(np.float64)
    c = np.abs(g) / max(np.abs(g).mean(), 1e-9)  # (N,) cost of a wrong route
    w, b = np.zeros(z.shape[1]), 0.0
    monotone = np.array([name in MONOTONE for name in FEATURES])
    unused = np.array([name not in features for name in FEATURES])
    lr = 0.5
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        r = c * (p - y) / len(y)
        w -= lr * (z.T @ r + l2 * w)
        w[monotone] = np.maximum(w[monotone], 0.0)
        w[unused] = 0.0
        b -= lr * float(r.sum())
    choice = (z @ w + b) > 0
    regret = float(np.where(choice, np.maximum(-g, 0), np.maximum(g, 0)).mean())
    fitted = {"crops": len(g), "train_regret_db": regret, "train_accuracy": float((choice == (g > 0)).mean()),
              "features": [name for name in FEATURES if name in features]}
    return Router(tuple(w), b, tuple(mean), tuple(scale), FEATURES, fitted)


def fit(samples: list[RouterSample], data: DataConfig, features: Sequence[str] = FEATURES) -> Router:
    """The gate fitted on `samples` (on `features` only), with a record of how."""
    router = fit_router([s.evidence for s in samples], [s.gain for s in samples], features=features)
    fitted: dict[str, Any] = {
        **dict(router.fitted or {}),
        "command": "linearsr train router",
        "data": {"root": data.root, "split": "train", "crop": data.crop, "seed": data.seed},
        "oracle_gain_db": float(np.mean([max(s.gain, 0.0) for s in samples])),
    }
    return dataclasses.replace(router, fitted=fitted)
