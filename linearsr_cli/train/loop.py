"""The training loop shared by stage 1 (all t) and stage 2 (one expert's t interval).

x0-prediction of the residual under rectified flow: x0 = residual_target(hr, lr),
x_t = (1 - t) x0 + t eps, loss = MSE(model(x_t, t, lr, tags), x0), plus the image terms the run's
weights turn on (train/losses.py) on the composed x0 estimate. t is logit-normal (truncated to
the stage's interval), plus a fraction of samples at exactly t = 1 so the 1-NFE pass is
trained. AdamW, warm-up, gradient clipping, EMA, mixed precision as engine.device decides (bf16
on CPUs with fast native bf16, else fp32; bf16/fp16 on CUDA),
and a divergence guard. Every `ckpt_every` steps a checkpoint (EMA weights + training metadata)
and, next to it, the resume state (raw weights, optimizer, EMA, RNG) as safetensors + JSON.
Nothing is pickled. Resuming from the state gives exactly the losses of an uninterrupted run.
"""

from __future__ import annotations

import atexit
import copy
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from linearsr_cli.checkpoints import save_weights
from linearsr_cli.config import ModelConfig, inputs_for
from linearsr_cli.engine.device import choose_dtype, distributed_rank
from linearsr_cli.engine.route import prior_indices
from linearsr_cli.errors import ConfigError, TrainingError
from linearsr_cli.esgf.probe import Pair, measure_model
from linearsr_cli.nn.discriminator import DiscriminatorConfig
from linearsr_cli.nn.dit import LinearSR, compose_unclamped, residual_target
from linearsr_cli.sampling.schedules import expert_interval, t_from_log_snr
from linearsr_cli.tag.training import TagSource
from linearsr_cli.train.adversarial import GAN_KEYS, Critic
from linearsr_cli.train.config import OptimConfig, Precision, StageConfig, TrainConfig, TSampling
from linearsr_cli.train.ema import EMA
from linearsr_cli.train.losses import ImageLoss
from linearsr_cli.train.optim_state import load_optimizer, optimizer_tensors
from linearsr_cli.train.report import (
    SilentReporter,
    TrainReporter,
    append_csv,
    checkpoint_record,
    mean_logs,
    run_name,
    trim_csv,
)

CKPT_RE = re.compile(r"^ckpt-(\d+)\.safetensors$")


# ----------------------------------------------------------------------------- pure pieces


def expert_t_range(cfg: ModelConfig, index: int) -> tuple[float, float]:
    """The t interval of expert `index` of `cfg` (LinearSR SNR-MoE): its log-SNR interval mapped
    through t = sigmoid(-lambda / 2); the outer experts run on to t = 1 and t = 0."""
    if not 0 <= index < cfg.num_experts:
        raise ConfigError(f"expert index {index} out of range for {cfg.num_experts} experts")
    lam_lo, lam_hi = expert_interval(index, cfg.expert_boundaries, cfg.log_snr_range)
    t_hi = 1.0 if index == 0 else t_from_log_snr(lam_lo)
    t_lo = 0.0 if index == cfg.num_experts - 1 else t_from_log_snr(lam_hi)
    return t_lo, t_hi


def sample_t(n: int, gen: torch.Generator, cfg: TSampling) -> Tensor:
    """Logit-normal t = sigmoid(m + s z) truncated to cfg.t_range by inverse-CDF sampling (SD3,
    Esser et al. 2024), with a fraction p_one set to exactly 1 when the range reaches t = 1."""
    lo, hi = cfg.t_range

    def cdf(t: float) -> float:
        if t <= 0.0:
            return 0.0
        if t >= 1.0:
            return 1.0
        z = (math.log(t / (1.0 - t)) - cfg.t_mean) / cfg.t_std
        return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))

    a, b = cdf(lo), cdf(hi)
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    u = (a + (b - a) * u).clamp(1e-9, 1.0 - 1e-9)
    t = torch.sigmoid(cfg.t_mean + cfg.t_std * torch.special.ndtri(u))
    t = t.clamp(max(lo, 1e-4), min(hi, 1.0))
    one = torch.rand(n, generator=gen, dtype=torch.float64) < cfg.p_one
    if hi >= 1.0:
        t = torch.where(one, torch.ones_like(t), t)
    return t.float()


# (LR batch, degradation kinds) -> the x0 (residual form, fp32) that a sample's x_t is noised from
StartFn = Callable[[Tensor, Sequence[str]], Tensor]


def noisy_sample(x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
    """Rectified flow interpolation x_t = (1 - t) x0 + t eps; t (B,)."""
    tb = t.to(x0.dtype)[:, None, None, None]  # (B, 1, 1, 1)
    return (1.0 - tb) * x0 + tb * eps


def val_t_grid(cfg: TSampling) -> tuple[float, ...]:
    """Fixed times for the validation x0-MSE: midpoints of `val_t_points` equal parts of t_range."""
    lo, hi = cfg.t_range
    k = cfg.val_t_points
    return tuple(lo + (i + 0.5) * (hi - lo) / k for i in range(k))


def learning_rate(step: int, cfg: OptimConfig) -> float:
    """Linear warm-up to cfg.lr over cfg.warmup steps, then constant."""
    if cfg.warmup <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup)


def autocast_dtype(device: torch.device, precision: Precision) -> torch.dtype | None:
    """Mixed-precision dtype for training on `device` (None = fp32): engine.device.choose_dtype,
    the one capability check shared with inference (bf16 on a CPU only where it is measured fast)."""
    return choose_dtype(precision, device, training=True)


# ----------------------------------------------------------------------------- data and tags


PairBatch = tuple[Tensor, Tensor, list[str], list[str]]  # lr (B,3,h,w), hr (B,3,H,W), names, kinds


class Batches(Protocol):
    def __call__(self, step: int) -> PairBatch:
        """The (lr, hr, photo names, degradation kinds) batch of training step `step`."""
        ...


class DatasetBatches:
    """Batches of a map-style dataset by step: sample j of step s is item (s W + rank) B + j, so
    a resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, dataset: Any, batch_size: int, *, rank: int = 0, world: int = 1) -> None:
        if not hasattr(dataset, "__getitem__"):
            raise TrainingError("the training dataset must be map-style (indexable)")
        self.dataset, self.batch_size, self.rank, self.world = dataset, batch_size, rank, world

    def __call__(self, step: int) -> PairBatch:
        base = (step * self.world + self.rank) * self.batch_size
        n = len(self.dataset) if hasattr(self.dataset, "__len__") else 0
        items = [self.dataset[(base + j) % n if n else base + j] for j in range(self.batch_size)]
        lr = torch.stack([it["lr"] for it in items])  # (B, 3, h, w)
        hr = torch.stack([it["hr"] for it in items])  # (B, 3, H, W)
        names = [str(it.get("name", "")) for it in items]
        return lr, hr, names, [str(it.get("kind", "bicubic")) for it in items]


# ----------------------------------------------------------------------------- run directory


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:07d}.safetensors"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the model checkpoints in `run_dir`, by step."""
    found = []
    for p in run_dir.glob("ckpt-*.safetensors"):
        m = CKPT_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def state_paths(ckpt: Path) -> tuple[Path, Path]:
    stem = ckpt.name.removesuffix(".safetensors")
    return ckpt.with_name(f"{stem}.state.safetensors"), ckpt.with_name(f"{stem}.state.json")


def latest_state(run_dir: Path) -> tuple[int, Path] | None:
    """The newest checkpoint that has complete resume state next to it."""
    for step, ckpt in reversed(list_checkpoints(run_dir)):
        tensors, meta = state_paths(ckpt)
        if tensors.is_file() and meta.is_file():
            return step, ckpt
    return None


@dataclass
class TrainResult:
    status: str  # "done" | "paused" (time budget reached; run again to continue)
    step: int
    last_checkpoint: Path | None
    losses: list[float] = field(default_factory=list)  # per-step losses of this call


# ----------------------------------------------------------------------------- the loop


class RunState:
    """Mutable state of one training run: model, optimizer, EMA, RNG, step, recent losses, the
    critic of an adversarial run, the step logs not yet written, and the last checkpoint."""

    def __init__(self, model: torch.nn.Module, cfg: StageConfig, device: torch.device) -> None:
        self.model = model.to(device).train()
        self.cfg = cfg
        self.device = device
        optim = cfg.optim
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay
        )
        self.ema = EMA(self.model, optim.ema_decay)
        self.gen = torch.Generator(device="cpu").manual_seed(optim.seed)
        self.step = 0
        self.recent: list[float] = []
        self.recent_grads: list[float] = []  # gradient norms of the last spike_window steps
        self.critic: Critic | None = None
        if cfg.loss.gan_weight > 0:
            self.critic = Critic(DiscriminatorConfig(channels=cfg.loss.disc_channels), lr=cfg.loss.disc_lr,
                                 device=device, seed=optim.seed)
        self.pending: list[dict[str, float]] = []  # per-step log lines since the last checkpoint
        self.last_ckpt: Path | None = None

    def save_state(self, ckpt: Path, extra: dict[str, Any]) -> None:
        tensors: dict[str, Tensor] = {}
        for k, v in self.model.state_dict().items():
            tensors[f"model.{k}"] = v.detach().cpu().contiguous()
        for k, v in self.ema.state_dict().items():
            tensors[f"ema.{k}"] = v.cpu().contiguous()
        tensors.update(optimizer_tensors(self.opt, "opt."))
        tensors["rng.train"] = self.gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {
            "step": self.step,
            "checkpoint": ckpt.name,
            "param_groups": self.opt.state_dict()["param_groups"],
            "recent_losses": self.recent,
            "recent_grad_norms": self.recent_grads,
            "train_config": self.cfg.to_dict(),
            **extra,
        }
        if self.critic is not None:
            tensors.update(self.critic.state_tensors())
            meta["critic_param_groups"] = self.critic.param_groups()
        st_path, js_path = state_paths(ckpt)
        tmp = st_path.with_name(f".{st_path.name}.tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, st_path)
        tmp_js = js_path.with_name(f".{js_path.name}.tmp")
        tmp_js.write_text(json.dumps(meta, indent=1, allow_nan=True))
        os.replace(tmp_js, js_path)

    def resume_or_reset(self, run_dir: Path) -> Path | None:
        """Load the newest resume state in `run_dir` and trim the logs past it (returns its
        checkpoint), or, with none, clear the logs of an earlier run (returns None)."""
        log, table = run_dir / "train_log.jsonl", run_dir / "checkpoints.csv"
        resume = latest_state(run_dir)
        if resume is not None:
            self.load_state(resume[1])
            _trim_log(log, self.step)
            trim_csv(table, self.step)
        else:
            log.unlink(missing_ok=True)
            table.unlink(missing_ok=True)
        (run_dir / "diverged.json").unlink(missing_ok=True)
        self.last_ckpt = resume[1] if resume else None
        return self.last_ckpt

    def ema_model(self) -> torch.nn.Module:
        """A copy of the model holding the EMA weights (what checkpoints store)."""
        model = copy.deepcopy(self.model)
        self.ema.copy_to(model)
        return model

    def gan_record(self) -> dict[str, Any]:
        """{"gan": the mean critic statistics since the last checkpoint} for an adversarial run,
        else {}: part of the checkpoint's record, which select-knee reads."""
        return {"gan": mean_logs(self.pending, GAN_KEYS)} if self.critic is not None else {}

    def finish_step(self, loss: float) -> None:
        """After the optimizer step: clear gradients, update the EMA, count the step."""
        self.opt.zero_grad(set_to_none=True)
        self.ema.update(self.model, self.step)
        self.step += 1
        self.recent = (self.recent + [loss])[-self.cfg.optim.spike_window :]

    def load_state(self, ckpt: Path) -> None:
        st_path, js_path = state_paths(ckpt)
        try:
            meta = json.loads(js_path.read_text())
            tensors = load_file(str(st_path), device="cpu")
            model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
            self.model.load_state_dict(model_sd, strict=True)
            self.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
            load_optimizer(self.opt, tensors, "opt.", meta["param_groups"], self.device)
            if self.critic is not None:
                self.critic.load(tensors, meta["critic_param_groups"], self.device)
            self.gen.set_state(tensors["rng.train"])
            torch.set_rng_state(tensors["rng.torch"])
            self.step = int(meta["step"])
            self.recent = [float(v) for v in meta.get("recent_losses", [])]
            self.recent_grads = [float(v) for v in meta.get("recent_grad_norms", [])]
        except (OSError, KeyError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
            raise TrainingError(f"{st_path}: cannot resume from this state: {exc}") from None


def _trim_log(log: Path, step: int) -> None:
    """Drop log lines past `step` (written after the state we resume from)."""
    if not log.is_file():
        return
    keep = [ln for ln in log.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    log.write_text("".join(f"{ln}\n" for ln in keep))


def _is_spike(grad_norm: float, recent: Sequence[float], cfg: OptimConfig) -> bool:
    """A gradient norm above spike_factor x the median of the recent ones (once there are 10)."""
    if len(recent) < min(cfg.spike_window, 10):
        return False
    med = sorted(recent)[len(recent) // 2]
    return med > 0 and grad_norm > cfg.spike_factor * med


def _check_loss(loss: float, recent: Sequence[float], cfg: OptimConfig) -> str:
    """Why this loss means divergence ("" if it does not): non-finite, or a spike of more than
    spike_factor x the median of the last spike_window losses."""
    if not math.isfinite(loss):
        return f"loss is {loss}"
    if len(recent) >= min(cfg.spike_window, 20):
        med = sorted(recent)[len(recent) // 2]
        if med > 0 and loss > cfg.spike_factor * med:
            return f"loss spike {loss:.4g} > {cfg.spike_factor:g} x recent median {med:.4g}"
    return ""


@dataclass
class StepOutcome:
    """What one training step's objective returns to `fit`."""

    loss: Tensor  # the scalar backward() sees
    value: float  # the guarded value (the global batch's loss under DDP): the reconstruction
    # terms only; the adversarial term swings by design (a confident critic), and a collapse
    # shows in the reconstruction terms, the gradient norm or the critic's loss
    logs: dict[str, float] = field(default_factory=dict)  # extra per-step log values
    real: Tensor | None = None  # for the critic's update after the generator step: real HR ...
    fake: Tensor | None = None  # ... and the generator's output (detached there)


Objective = Callable[[PairBatch], StepOutcome]
SaveCheckpoint = Callable[[], tuple[Path, dict[str, Any]]]  # writes the weights; (path, training record)


def fit(
    run: RunState,
    batches: Batches,
    objective: Objective,
    save_checkpoint: SaveCheckpoint,
    run_dir: Path,
    *,
    name: str,
    deadline: float | None = None,
    reporter: TrainReporter | None = None,
    writer: bool = True,
    scaler: torch.amp.GradScaler | None = None,
) -> TrainResult:
    """The training loop of every stage, from run.step to cfg.steps: learning-rate schedule,
    objective, divergence guard (non-finite or spiking loss, non-finite gradient norm or critic
    loss: diverged.json, TrainingError, the last good checkpoint kept), gradient clipping,
    optimizer and EMA step, the critic's step, and a checkpoint (weights by `save_checkpoint`,
    then resume state, step log, checkpoints.csv, reporter) every ckpt_every steps, at the end and
    when time.monotonic() passes `deadline` (status "paused"). Only the `writer` writes files."""
    cfg = run.cfg.optim
    scaler = scaler or torch.amp.GradScaler(run.device.type, enabled=False)
    log = run_dir / "train_log.jsonl"
    report: TrainReporter = reporter if reporter is not None and writer else SilentReporter()
    result = TrainResult("done", run.step, run.last_ckpt)

    def checkpoint() -> None:
        ckpt = run_dir / checkpoint_name(run.step)
        if writer:
            ckpt, training = save_checkpoint()
            run.save_state(ckpt, {"training": training})
            with log.open("a") as fh:
                fh.writelines(json.dumps(p) + "\n" for p in run.pending)
            _prune_states(run_dir, cfg.keep_states)
            record = checkpoint_record(training, ckpt)
            append_csv(run_dir / "checkpoints.csv", record)
            report.checkpoint(record)
        run.pending = []
        run.last_ckpt = ckpt

    def diverge(value: float, reason: str) -> TrainingError:
        run.opt.zero_grad(set_to_none=True)
        if writer:  # the steps since the last checkpoint, for the post-mortem (a resume trims them)
            with log.open("a") as fh:
                fh.writelines(json.dumps(p) + "\n" for p in run.pending)
        _record_divergence(run_dir, run.step, value, reason, run.last_ckpt)
        last = run.last_ckpt if run.last_ckpt else "none (no checkpoint yet)"
        return TrainingError(f"{name} diverged at step {run.step}: {reason}; stopped cleanly, last good checkpoint: {last}")

    report.start(name, run.step, cfg.steps)
    while run.step < cfg.steps:
        batch = batches(run.step)
        for group in run.opt.param_groups:
            group["lr"] = learning_rate(run.step, cfg)
        out = objective(batch)
        reason = _check_loss(out.value, run.recent, cfg)
        grad_norm = math.nan
        if not reason:
            scaler.scale(out.loss).backward()
            scaler.unscale_(run.opt)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip))
            if not math.isfinite(grad_norm) and not scaler.is_enabled():
                reason = f"gradient norm is {grad_norm}"
        if reason:
            raise diverge(out.value, reason)
        logs = {"step": run.step + 1, "loss": out.value, **out.logs, "grad_norm": grad_norm}
        if run.critic is not None:
            logs["total"] = float(out.loss.detach())  # with the adversarial term
        skip = math.isfinite(grad_norm) and _is_spike(grad_norm, run.recent_grads, cfg)
        if math.isfinite(grad_norm):
            run.recent_grads = (run.recent_grads + [grad_norm])[-cfg.spike_window :]
        if skip:  # one wild gradient (seen in adversarial runs) is not followed: no update this step
            logs["skipped"] = 1.0
            run.opt.zero_grad(set_to_none=True)
        else:
            scaler.step(run.opt)
            scaler.update()
        if not skip and run.critic is not None and out.real is not None and out.fake is not None:
            logs.update(run.critic.update(out.real, out.fake))
            if not math.isfinite(logs["d_loss"]):
                raise diverge(logs["d_loss"], f"discriminator loss is {logs['d_loss']}")
        run.finish_step(out.value)
        run.pending.append(logs)
        if _after_step(run, out.value, report, result, deadline, checkpoint):
            break
    return _finish(run, report, result, run.last_ckpt)


def train(
    model: LinearSR,
    batches: Batches,
    cfg: TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    val_pairs: Sequence[Pair] = (),
    tag_source: TagSource | None = None,
    device: torch.device | None = None,
    deadline: float | None = None,
    provenance: dict[str, Any] | None = None,
    training_meta: dict[str, Any] | None = None,
    reporter: TrainReporter | None = None,
    priors: dict[str, dict[str, Any]] | None = None,
    start: StartFn | None = None,
) -> TrainResult:
    """Train the denoiser `model` (stage 1, or one expert of stage 2), or resume the newest state
    in `run_dir`, up to cfg.steps through `fit`: x0-MSE, + ST-LPIPS and the critic on the composed
    x0 estimate when their weights are set. `priors`: the provenance records of the model's
    priors, stored with every checkpoint. `start`: the x0 that is noised to x_t in place of the
    target's (recipe.prior_start: the structure expert's estimate, what a refinement expert meets
    at inference); the loss still compares with the target's x0. Returns status "paused" past `deadline`; raises
    TrainingError on divergence after writing `diverged.json`."""
    device = device or torch.device("cpu")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rank, world = distributed_rank()
    run = RunState(model, cfg, device)
    run.resume_or_reset(run_dir)

    net: torch.nn.Module = run.model
    if world > 1:  # torchrun: one process per GPU
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            # left to interpreter teardown, the group's threads could abort a rank after its last
            # step ("terminate called without an active exception", exit -6)
            atexit.register(dist.destroy_process_group)
        # find_unused_parameters: with no tags in a step the cross-attention's projections are
        # skipped (one key: softmax is 1), so their parameters get no gradient that step
        net = DistributedDataParallel(run.model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=True)
    amp = autocast_dtype(device, cfg.optim.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16 and device.type == "cuda")
    grid = val_t_grid(cfg.sampling)
    image_loss = ImageLoss(cfg.loss, device, run.critic)
    meta_base = dict(training_meta or {})

    def objective(batch: PairBatch) -> StepOutcome:
        lr_img, hr, names, kinds = batch
        b = hr.shape[0]
        mine = slice(rank * b, (rank + 1) * b)  # this rank's part of the global batch's draws
        t = sample_t(b * world, run.gen, cfg.sampling)[mine]
        eps = torch.randn((b * world, *hr.shape[1:]), generator=run.gen)[mine]
        keep = (torch.rand(b * world, generator=run.gen) >= cfg.sampling.tag_dropout)[mine]
        tags, tag_mask = tag_source(lr_img, names, keep) if tag_source is not None else (None, None)
        prior = prior_indices(run.model.cfg, inputs_for(kinds))
        lr_img, hr, t, eps = (v.to(device) for v in (lr_img, hr, t, eps))
        if tags is not None:
            tags, tag_mask = tags.to(device), tag_mask.to(device)
        target = image_loss.target(hr)
        x0 = residual_target(target, lr_img, run.model.cfg)
        x_t = noisy_sample(x0 if start is None else start(lr_img, kinds).to(x0), eps, t)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            pred = net(x_t, t, lr_img, tags, tag_mask, prior)
        loss = F.mse_loss(pred.float(), x0)
        logs = {"mse": float(loss.detach())}
        guarded, sr = loss.detach(), None
        if image_loss.terms:  # on the composed x0 estimate
            sr = compose_unclamped(lr_img, pred.float(), run.model.cfg)
            loss, guarded, term_logs = image_loss.add(loss, sr, target)
            logs.update(term_logs)
        return StepOutcome(loss, _global_mean(guarded, world), logs, real=hr, fake=sr)

    def save_checkpoint() -> tuple[Path, dict[str, Any]]:
        ema_model = run.ema_model()
        scores = measure_model(ema_model, val_pairs, t_grid=grid, device=device, dtype=amp) if val_pairs else {}
        losses = [p["loss"] for p in run.pending]
        training = {
            **meta_base,
            "step": run.step,
            "loss": sum(losses) / len(losses) if losses else math.nan,
            "loss_last": losses[-1] if losses else math.nan,
            "lr": learning_rate(max(run.step - 1, 0), cfg.optim),
            "t_range": list(cfg.sampling.t_range),
            "ema_decay": cfg.optim.ema_decay,
            "precision": "fp32" if amp is None else str(amp).removeprefix("torch."),
            "val": {k: scores[k] for k in ("psnr", "ssim", "val_loss") if k in scores},
            "attn": {k: scores[k] for k in ("max_q", "max_k", "min_normaliser") if k in scores},
            **run.gan_record(),
        }
        ckpt = run_dir / checkpoint_name(run.step)
        save_weights(ckpt, ema_model, provenance=provenance, training=training, priors=priors)
        return ckpt, training

    return fit(run, batches, objective, save_checkpoint, run_dir, name=run_name(meta_base), deadline=deadline,
               reporter=reporter, writer=rank == 0, scaler=scaler)


def _global_mean(value: Tensor, world: int) -> float:
    """The mean of a scalar over all ranks (the loss of the global batch); the value itself when
    not distributed."""
    if world > 1:
        import torch.distributed as dist

        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= world
    return float(value)


def _any_rank(flag: bool) -> bool:
    """True on every rank when it is True on any (so all ranks pause at the same step)."""
    _, world = distributed_rank()
    if world <= 1:
        return flag
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def _after_step(
    run: RunState, loss: float, report: TrainReporter, result: TrainResult, deadline: float | None,
    checkpoint: Callable[[], Any],
) -> bool:
    """Report the step, checkpoint when due (every ckpt_every, at the end, or out of time); True
    when the time budget ends the call early (result.status becomes "paused")."""
    cfg = run.cfg.optim
    report.step(run.step, loss, learning_rate(run.step - 1, cfg))
    result.losses.append(loss)
    out_of_time = _any_rank(deadline is not None and time.monotonic() >= deadline)
    if run.step % cfg.ckpt_every == 0 or run.step == cfg.steps or out_of_time:
        checkpoint()
    if out_of_time and run.step < cfg.steps:
        result.status = "paused"
        return True
    return False


def _finish(run: RunState, report: TrainReporter, result: TrainResult, last_ckpt: Path | None) -> TrainResult:
    report.finish()
    result.step = run.step
    result.last_checkpoint = last_ckpt
    return result


def _record_divergence(run_dir: Path, step: int, loss: float, reason: str, last: Path | None) -> None:
    info = {"step": step, "loss": loss, "reason": reason, "last_good": last.name if last else None}
    (run_dir / "diverged.json").write_text(json.dumps(info, indent=1, allow_nan=True))


def _prune_states(run_dir: Path, keep: int) -> None:
    """Keep the resume state of the newest `keep` checkpoints only (the weights stay)."""
    with_state = [c for _, c in list_checkpoints(run_dir) if state_paths(c)[0].is_file()]
    for ckpt in with_state[: max(len(with_state) - max(keep, 1), 0)]:
        for p in state_paths(ckpt):
            p.unlink(missing_ok=True)


def read_log(run_dir: str | os.PathLike[str]) -> list[dict[str, float]]:
    """The per-step training log of a run directory."""
    log = Path(run_dir) / "train_log.jsonl"
    if not log.is_file():
        return []
    return [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
