"""Stage 0: fine-tune the pretrained prior (SPAN) for the inputs it will see.

SPAN was trained on bicubic LR; on noisy or JPEG-compressed inputs it sharpens the noise and the
blocks. Stage 0 starts from the released weights and fine-tunes them with an L1 loss on the
upscaled image against HR, on the degradation the run's data config names (`mixed` by default:
half bicubic, half the Real-ESRGAN second-order pipeline). It shares the run-directory layout,
resume state, warm-up, EMA and divergence guard of the main loop (train/loop.py); checkpoints
are prior files (priors.save_prior) whose provenance records the fine-tuning, and whose
metadata holds PSNR-Y of the checkpoint on bicubic and on realistic validation crops.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from linearsr_cli.errors import TrainingError
from linearsr_cli.esgf.probe import Pair
from linearsr_cli.evaluate.metrics import psnr_y
from linearsr_cli.nn.span import Span
from linearsr_cli.priors import save_prior
from linearsr_cli.train.loop import (
    Batches,
    RunState,
    TrainConfig,
    TrainResult,
    _after_step,
    _check_loss,
    _finish,
    _prune_states,
    _record_divergence,
    autocast_dtype,
    checkpoint_name,
    learning_rate,
)
from linearsr_cli.train.report import SilentReporter, TrainReporter, append_csv, checkpoint_record


@torch.no_grad()
def prior_psnr(span: Span, pairs: Sequence[Pair], device: torch.device) -> float:
    """Mean PSNR-Y (border = scale) of the prior's clamped output on (name, lr, hr) pairs."""
    was_training = span.training
    span.eval()
    scores = []
    for _, lr, hr in pairs:
        sr = span(lr[None].to(device)).clamp(0.0, 1.0)[0].cpu()
        scores.append(psnr_y(sr, hr, border=span.cfg.scale))
    span.train(was_training)
    return float(sum(scores) / len(scores)) if scores else math.nan


def train_prior(
    span: Span,
    record: dict[str, Any],
    batches: Batches,
    cfg: TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    val: Mapping[str, Sequence[Pair]] | None = None,
    device: torch.device | None = None,
    deadline: float | None = None,
    data: dict[str, Any] | None = None,
    reporter: TrainReporter | None = None,
) -> TrainResult:
    """Fine-tune `span` (or resume the newest state in `run_dir`) up to cfg.steps with L1 on the
    output. `record` is the prior's provenance (priors.convert_source); each checkpoint adds this
    stage to its "fine_tuning" list. `val` maps a name (e.g. "bicubic", "realistic") to pairs
    scored at every checkpoint. Returns status "paused" past `deadline`; raises TrainingError on
    divergence (diverged.json written, the last good checkpoint kept)."""
    device = device or torch.device("cpu")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = RunState(span, cfg, device)
    log = run_dir / "train_log.jsonl"
    last_ckpt = run.resume_or_reset(run_dir)
    amp = autocast_dtype(device, cfg.precision)
    pending: list[dict[str, float]] = []
    result = TrainResult("done", run.step, last_ckpt)

    def checkpoint() -> None:
        nonlocal last_ckpt, pending
        ema = run.ema_model()
        scores = {name: prior_psnr(ema, pairs, device) for name, pairs in (val or {}).items()}
        losses = [p["loss"] for p in pending]
        stage = {
            "stage": 0,
            "what": "L1 fine-tuning of the whole network on the data below, EMA weights",
            "step": run.step,
            "lr": cfg.lr,
            "batch_size": cfg.batch_size,
            "data": data or {},
            "loss": sum(losses) / len(losses) if losses else math.nan,
            "val_psnr": scores,
        }
        rec = {**record, "fine_tuning": [*record.get("fine_tuning", []), stage]}
        ckpt = run_dir / checkpoint_name(run.step)
        save_prior(ckpt, ema, rec)
        run.save_state(ckpt, {"training": stage})
        with log.open("a") as fh:
            fh.writelines(json.dumps(p) + "\n" for p in pending)
        _prune_states(run_dir, cfg.keep_states)
        row = checkpoint_record({**stage, "lr": learning_rate(max(run.step - 1, 0), cfg),
                                 "val": {f"psnr_{k}": v for k, v in scores.items()}}, ckpt)
        append_csv(run_dir / "checkpoints.csv", row)
        report.checkpoint(row)
        pending = []
        last_ckpt = ckpt

    report: TrainReporter = reporter or SilentReporter()
    report.start("stage 0 (prior)", run.step, cfg.steps)
    while run.step < cfg.steps:
        lr_img, hr, _names, _kinds = batches(run.step)
        for group in run.opt.param_groups:
            group["lr"] = learning_rate(run.step, cfg)
        lr_img, hr = lr_img.to(device), hr.to(device)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = run.model(lr_img)
        loss = F.l1_loss(out.float(), hr)
        value = float(loss.detach())
        reason = _check_loss(value, run.recent, cfg)
        if not reason:
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip))
            if not math.isfinite(grad_norm):
                reason = f"gradient norm is {grad_norm}"
        if reason:
            run.opt.zero_grad(set_to_none=True)
            _record_divergence(run_dir, run.step, value, reason, last_ckpt)
            raise TrainingError(f"stage 0 diverged at step {run.step}: {reason}; last good checkpoint: {last_ckpt}")
        run.opt.step()
        run.finish_step(value)
        pending.append({"step": run.step, "loss": value, "grad_norm": grad_norm})
        if _after_step(run, value, report, result, deadline, checkpoint):
            break
    return _finish(run, report, result, last_ckpt)
