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
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from linearsr_cli.degrade import jpeg_roundtrip
from linearsr_cli.engine.route import Evidence, Router, fit_router, measure
from linearsr_cli.errors import ConfigError
from linearsr_cli.evaluate.metrics import psnr_y
from linearsr_cli.nn.dit import LinearSR
from linearsr_cli.train.data import DataConfig, PairDataset


@dataclasses.dataclass(frozen=True)
class RouterSample:
    evidence: Evidence
    gain: float  # PSNR-Y(real prior) - PSNR-Y(clean prior), dB
    kind: str  # the degradation drawn: bicubic | realistic
    jpeg_quality: int | None


def router_samples(
    model: LinearSR, data: DataConfig, count: int, *, progress: Callable[[int, int], None] | None = None
) -> list[RouterSample]:
    """`count` training crops of `data` (degradation forced to mixed), each with its evidence and
    the real prior's PSNR-Y gain over the clean prior's."""
    if not {"clean", "real"} <= set(model.cfg.prior_inputs):
        raise ConfigError(f"the router chooses between a clean and a real prior; these weights have {model.cfg.prior_inputs}")
    dataset = PairDataset(dataclasses.replace(data, degradation="mixed"), "train")
    out = []
    with torch.no_grad():
        for i in range(count):
            item = dataset[i]
            lr, hr = item["lr"], item["hr"]
            rng = np.random.default_rng([data.seed, 7, i])
            quality = None
            if rng.random() < 0.5:  # saved as a JPEG by whoever made the file
                quality = int(rng.integers(90, 101)) if item["kind"] == "bicubic" else int(rng.integers(60, 96))
                lr = torch.from_numpy(jpeg_roundtrip(lr.permute(1, 2, 0).numpy(), quality)).permute(2, 0, 1)
            scores = {}
            for name in ("clean", "real"):
                sr = model.priors[name](lr[None].float()).clamp(0, 1)[0]
                scores[name] = psnr_y(sr, hr, border=data.scale)
            out.append(RouterSample(measure(lr, quality), scores["real"] - scores["clean"], str(item["kind"]), quality))
            if progress is not None:
                progress(i + 1, count)
    return out


def save_samples(samples: list[RouterSample], path: str) -> None:
    """The fitting crops' evidence and gains as JSON (to refit or study without recomputing)."""
    import json
    from pathlib import Path

    rows = [{"evidence": dataclasses.asdict(s.evidence), "gain": s.gain, "kind": s.kind,
             "jpeg_quality": s.jpeg_quality} for s in samples]
    Path(path).write_text(json.dumps(rows))


def load_samples(path: str) -> list[RouterSample]:
    import json
    from pathlib import Path

    rows = json.loads(Path(path).read_text())
    return [RouterSample(Evidence(**r["evidence"]), float(r["gain"]), r["kind"], r["jpeg_quality"]) for r in rows]


def fit(samples: list[RouterSample], data: DataConfig) -> Router:
    """The gate fitted on `samples`, with a record of how."""
    router = fit_router([s.evidence for s in samples], [s.gain for s in samples])
    fitted: dict[str, Any] = {
        **dict(router.fitted or {}),
        "command": "linearsr train router",
        "data": {"root": data.root, "split": "train", "crop": data.crop, "seed": data.seed},
        "oracle_gain_db": float(np.mean([max(s.gain, 0.0) for s in samples])),
    }
    return dataclasses.replace(router, fitted=fitted)
