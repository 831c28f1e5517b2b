"""Stage 0: fine-tune the pretrained prior (SPAN) for the inputs it will see.

SPAN was trained on bicubic LR; on noisy or JPEG-compressed inputs it sharpens the noise and the
blocks. Stage 0 starts from the released weights (or an earlier stage-0 prior) and fine-tunes them
on the degradation the run's data config names, through the one training loop (train/loop.fit).
The objective is a sum the run selects by weight (PriorLossWeights): L1 against HR (or its unsharp
mask), ST-LPIPS, the U-Net critic's adversarial term, and L1 against a teacher's outputs (the
Real-ESRGAN recipe is L1 1 + perceptual 1 + GAN 0.1 on unsharp-masked HR). Checkpoints are prior
files (priors.save_prior) whose provenance records the fine-tuning, with PSNR-Y (and ST-LPIPS for
a perceptual run) of the EMA prior on bicubic and realistic validation crops, and the critic's
statistics: `linearsr select-knee` reads them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from linearsr_cli.errors import ConfigError
from linearsr_cli.esgf.probe import Pair
from linearsr_cli.evaluate.metrics import psnr_y
from linearsr_cli.nn.prior_nets import PriorNet
from linearsr_cli.priors import save_prior
from linearsr_cli.train.config import PriorTrainConfig
from linearsr_cli.train.loop import (
    Batches,
    PairBatch,
    RunState,
    StepOutcome,
    TrainResult,
    autocast_dtype,
    checkpoint_name,
    fit,
    learning_rate,
)
from linearsr_cli.train.losses import ImageLoss, PriorLossWeights, describe
from linearsr_cli.train.report import TrainReporter


@torch.no_grad()
def prior_scores(span: PriorNet, pairs: Sequence[Pair], device: torch.device,
                 perceptual: torch.nn.Module | None = None) -> dict[str, float]:
    """Mean PSNR-Y (border = scale) of the prior's clamped output on (name, lr, hr) pairs, and
    its mean ST-LPIPS when a perceptual network is given."""
    was_training = span.training
    span.eval()
    psnr, lpips = [], []
    for _, lr, hr in pairs:
        sr = span(lr[None].to(device)).clamp(0.0, 1.0)
        psnr.append(psnr_y(sr[0].cpu(), hr, border=span.cfg.scale))
        if perceptual is not None:
            lpips.append(float(perceptual(sr, hr[None].to(device)).mean()))
    span.train(was_training)
    out = {"psnr": float(sum(psnr) / len(psnr)) if psnr else math.nan}
    if lpips:
        out["stlpips"] = sum(lpips) / len(lpips)
    return out


def objective_name(weights: PriorLossWeights) -> str:
    """What the run optimises, in words (the checkpoint's fine-tuning record)."""
    target = "unsharp-masked HR" if weights.usm_target else "HR"
    return f"fine-tuning of the whole network on the data below: {describe(weights)} against {target}; EMA weights"


def train_prior(
    span: PriorNet,
    record: dict[str, Any],
    batches: Batches,
    cfg: PriorTrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    val: Mapping[str, Sequence[Pair]] | None = None,
    device: torch.device | None = None,
    deadline: float | None = None,
    data: dict[str, Any] | None = None,
    reporter: TrainReporter | None = None,
    teacher: Callable[[int], Tensor] | None = None,
    teacher_record: dict[str, Any] | None = None,
) -> TrainResult:
    """Fine-tune `span` (or resume the newest state in `run_dir`) up to cfg.steps. `record` is the
    prior's provenance (priors.convert_source); each checkpoint adds this stage to its
    "fine_tuning" list (with the teacher's record when one shaped it). `val` maps a name (e.g.
    "bicubic", "realistic") to pairs scored at every checkpoint; `teacher(step)` gives the
    teacher's outputs of that step's batch (needed when cfg.distill_weight > 0). Returns status
    "paused" past `deadline`; raises TrainingError on divergence (diverged.json written, the last
    good checkpoint kept)."""
    device = device or torch.device("cpu")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    loss_cfg = cfg.loss
    if loss_cfg.distill_weight > 0 and teacher is None:
        raise ConfigError("distill_weight > 0 needs the teacher's outputs (--teacher-crops N)")
    run = RunState(span, cfg, device)
    run.resume_or_reset(run_dir)
    amp = autocast_dtype(device, cfg.optim.precision)
    image_loss = ImageLoss(loss_cfg, device, run.critic)
    distill = teacher is not None and loss_cfg.distill_weight > 0

    def objective(batch: PairBatch) -> StepOutcome:
        lr_img, hr, _names, _kinds = batch
        lr_img, hr = lr_img.to(device), hr.to(device)
        target = image_loss.target(hr)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = run.model(lr_img)
        out = out.float()
        taught = teacher(run.step).to(device) if distill and teacher is not None else None
        loss, guarded, logs = image_loss.add(out.new_zeros(()), out, target, taught)
        return StepOutcome(loss, float(guarded), logs, real=hr, fake=out)

    def save_checkpoint() -> tuple[Path, dict[str, Any]]:
        ema = run.ema_model()
        perceptual = image_loss.perceptual
        scores = {name: prior_scores(ema, pairs, device, perceptual) for name, pairs in (val or {}).items()}
        losses = [p["loss"] for p in run.pending]
        stage = {
            "stage": 0,
            "what": objective_name(loss_cfg),
            "step": run.step,
            "lr": learning_rate(max(run.step - 1, 0), cfg.optim),
            "batch_size": cfg.optim.batch_size,
            "data": data or {},
            "loss": sum(losses) / len(losses) if losses else math.nan,
            "val_psnr": {name: s["psnr"] for name, s in scores.items()},
            "val": prior_val(scores),
            **run.gan_record(),
            **({"teacher": teacher_record} if distill else {}),
        }
        rec = {**record, "fine_tuning": [*record.get("fine_tuning", []), stage]}
        ckpt = run_dir / checkpoint_name(run.step)
        save_prior(ckpt, ema, rec)
        return ckpt, stage

    return fit(run, batches, objective, save_checkpoint, run_dir, name="stage 0 (prior)", deadline=deadline,
               reporter=reporter)


def prior_val(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Flat validation metrics of a prior checkpoint: psnr_<set>, stlpips_<set>; "psnr" (and
    "stlpips") of the realistic set when there is one, else of the first (select-knee's curve)."""
    flat = {f"{metric}_{name}": v for name, s in scores.items() for metric, v in s.items()}
    main = scores.get("realistic") or next(iter(scores.values()), {})
    return {**main, **flat}
