"""Fine-tune the refinement experts through the sampling chain they run in (issue 23).

Stage 2 trains each expert on x_t noised from HR at its own t. At inference the perceptual
preset's first refinement step meets the prior's output noised instead, and each later step the
previous steps' estimate, so the experts average away the texture of a GAN-trained prior such as
x4v3. Here the whole chain of a finished mixture runs as `linearsr upscale` runs it (the
sampler, its time grid, the one prior every sample is served by, the tags), with gradients
through every step, and the image terms (L1, ST-LPIPS: train/losses.py) compare its final output
with HR. The structure expert (a bare prior) and the priors stay frozen; experts 1-3 learn.
Checkpoints are whole weights files, router and records included, ready for `linearsr eval`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from linearsr_cli.checkpoints import WeightsInfo, save_weights
from linearsr_cli.config import SamplerConfig
from linearsr_cli.engine.route import prior_indices
from linearsr_cli.errors import ConfigError
from linearsr_cli.nn.dit import LinearSR, compose_unclamped
from linearsr_cli.sampling.samplers import sample
from linearsr_cli.tag.training import TagSource
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
from linearsr_cli.train.losses import ImageLoss, describe
from linearsr_cli.train.report import TrainReporter


def train_unrolled(
    model: LinearSR,
    info: WeightsInfo,
    batches: Batches,
    cfg: PriorTrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    sampler: SamplerConfig,
    prior: str,
    tag_source: TagSource | None = None,
    device: torch.device | None = None,
    deadline: float | None = None,
    reporter: TrainReporter | None = None,
    note: str = "",
) -> TrainResult:
    """Fine-tune the networks of `model`'s experts (the mixture `info` describes) through
    `sampler`'s chain with every sample served by the prior `prior`, or resume the newest state
    in `run_dir`, up to cfg.steps. The loss is cfg.loss's image terms on the chain's output.
    Returns status "paused" past `deadline`; raises TrainingError on divergence."""
    device = device or torch.device("cpu")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if sampler.steps < 2:
        raise ConfigError("unrolled training needs a multi-step sampler (the 1-NFE pass is the prior alone)")
    if not any(p.requires_grad for p in model.experts.parameters()):
        raise ConfigError("the mixture has no expert network to train")
    model.priors.requires_grad_(False)
    served_by = prior_indices(model.cfg, [prior])  # (1,); a prior the file lacks: ConfigError now
    run = RunState(model, cfg, device)
    run.resume_or_reset(run_dir)
    amp = autocast_dtype(device, cfg.optim.precision)
    image_loss = ImageLoss(cfg.loss, device)

    def objective(batch: PairBatch) -> StepOutcome:
        lr_img, hr, names, _kinds = batch
        b = hr.shape[0]
        eps = torch.randn((b, *hr.shape[1:]), generator=run.gen)
        tags, mask = tag_source(lr_img, names, torch.ones(b, dtype=torch.bool)) if tag_source else (None, None)
        served = served_by.expand(b)
        lr_img, hr, eps = lr_img.to(device), hr.to(device), eps.to(device)
        if tags is not None:
            tags, mask = tags.to(device), mask.to(device)

        def denoise(x_t: torch.Tensor, t: float) -> torch.Tensor:
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                return run.model(x_t, t, lr_img, tags, mask, served).float()

        sr = compose_unclamped(lr_img, sample(denoise, eps, sampler), run.model.cfg)
        loss, guarded, logs = image_loss.add(sr.new_zeros(()), sr, image_loss.target(hr))
        return StepOutcome(loss, float(guarded), logs)

    def save_checkpoint() -> tuple[Path, dict[str, Any]]:
        losses = [p["loss"] for p in run.pending]
        training = {
            **info.training,
            "unrolled": {
                "what": f"experts fine-tuned through the {sampler.steps}-step {sampler.solver} chain (shift "
                        f"{sampler.shift:g}) from the '{prior}' prior: {describe(cfg.loss)} on its output",
                "step": run.step,
                "lr": learning_rate(max(run.step - 1, 0), cfg.optim),
                "batch_size": cfg.optim.batch_size,
                "loss": sum(losses) / len(losses) if losses else math.nan,
                "note": note,
            },
        }
        ckpt = run_dir / checkpoint_name(run.step)
        save_weights(ckpt, run.ema_model(), tagger=info.tagger, encoder=info.encoder, provenance=info.provenance,
                     training=training, priors=info.priors, router=info.router)
        return ckpt, {"step": run.step, "loss": training["unrolled"]["loss"]}

    return fit(run, batches, objective, save_checkpoint, run_dir, name="unrolled experts", deadline=deadline,
               reporter=reporter)
