"""Train the input detector (nn/input_detector.py): clean (bicubic) vs real-world degraded LR.

Labels come free with the `mixed` training pairs: each crop was degraded either by MATLAB
bicubic or by the Real-ESRGAN second-order pipeline. Binary cross-entropy, AdamW, a fixed
number of steps (a few CPU minutes, so no resume state); the result is a detector file with its
validation accuracy on held-out crops of both kinds in the metadata.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from linearsr_cli.checkpoints import read_safetensors, write_safetensors
from linearsr_cli.errors import TrainingError, WeightsError
from linearsr_cli.nn.input_detector import InputDetector
from linearsr_cli.train.loop import Batches, TrainConfig, learning_rate

DETECTOR_FORMAT = "linearsr-input-detector"


Labelled = tuple[str, torch.Tensor]  # (degradation kind, lr (3, h, w))


@torch.no_grad()
def detector_accuracy(detector: InputDetector, val: Sequence[Labelled]) -> dict[str, float]:
    """Share of validation LR images classified right, per kind ("bicubic" -> clean,
    "realistic" -> real), and over all."""
    detector.eval()
    hits: dict[str, list[bool]] = {}
    for kind, lr in val:
        hits.setdefault(kind, []).append(bool(detector(lr[None])[0] > 0) == (kind == "realistic"))
    out = {kind: sum(h) / len(h) for kind, h in sorted(hits.items())}
    flat = [x for h in hits.values() for x in h]
    out["all"] = sum(flat) / len(flat) if flat else math.nan
    return out


def train_detector(
    batches: Batches,
    cfg: TrainConfig,
    out: str | os.PathLike[str],
    *,
    val: Sequence[Labelled] = (),
    data: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, float]]:
    """Train a fresh InputDetector for cfg.steps on `batches` (whose kinds are the labels) and
    write it to `out`; returns the path and the validation accuracy."""
    torch.manual_seed(cfg.seed)
    detector = InputDetector().train()
    opt = torch.optim.AdamW(detector.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses: list[float] = []
    for step in range(cfg.steps):
        lr_img, _hr, _names, kinds = batches(step)
        label = torch.tensor([k == "realistic" for k in kinds], dtype=torch.float32)
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, cfg)
        loss = F.binary_cross_entropy_with_logits(detector(lr_img), label)
        if not math.isfinite(float(loss.detach())):
            raise TrainingError(f"input detector training diverged at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    accuracy = detector_accuracy(detector, val)
    tail = losses[-100:]
    record = {"steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr, "data": data or {},
              "loss_last100": sum(tail) / len(tail), "val_accuracy": accuracy}
    return save_detector(out, detector, record), accuracy


def save_detector(path: str | os.PathLike[str], detector: InputDetector, record: dict[str, Any]) -> Path:
    tensors = {k: v.detach().float().contiguous() for k, v in detector.state_dict().items()}
    return write_safetensors(path, tensors, {"format": DETECTOR_FORMAT, "training": json.dumps(record)})


def load_detector(path: str | os.PathLike[str]) -> tuple[InputDetector, dict[str, Any]]:
    """A detector file written by save_detector; WeightsError naming the problem."""
    tensors, meta = read_safetensors(path, DETECTOR_FORMAT)
    detector = InputDetector()
    try:
        detector.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: does not match the input detector: {exc}") from None
    return detector.eval(), json.loads(meta.get("training", "{}"))
