"""Per-checkpoint measurements for ESGF: read a checkpoint folder, measure each model on LR/HR
pairs (1-NFE PSNR/SSIM, validation loss, linear-attention statistics), and draw the knee plot.

The curve logic lives in esgf/knee.py; this module does the file and model work around it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from linearsr_cli.checkpoints import load_weights, read_header, read_info
from linearsr_cli.errors import ImageReadError, LinearSRError, WeightsError
from linearsr_cli.esgf.knee import Curve, KneeReport, analyse
from linearsr_cli.evaluate.metrics import psnr_y, ssim_y
from linearsr_cli.nn.attention import SelfAttention
from linearsr_cli.nn.dit import LinearSR, compose_output, residual_target
from linearsr_cli.priors import PRIOR_FORMAT
from linearsr_cli.sampling.samplers import draw_noise

Pair = tuple[str, Tensor, Tensor]  # (name, lr (3, h, w), hr (3, H, W)), float32 in [0, 1]


# ----------------------------------------------------------------------------- measurement


def attention_modules(model: torch.nn.Module) -> list[SelfAttention]:
    return [m for m in model.modules() if isinstance(m, SelfAttention)]


def _merge_stats(acc: dict[str, float], stats: dict[str, float] | None) -> None:
    if not stats:
        return
    for key in ("max_q", "max_k"):
        acc[key] = max(acc.get(key, -math.inf), stats[key])
    acc["min_normaliser"] = min(acc.get("min_normaliser", math.inf), stats["min_normaliser"])


@torch.no_grad()
def measure_model(
    model: LinearSR,
    pairs: Sequence[Pair],
    *,
    t_grid: Sequence[float] = (),
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """1-NFE PSNR/SSIM (Y, border = scale), x0-MSE at the fixed times `t_grid`, and the largest
    |phi(q)|, |phi(k)| and smallest normaliser over all attention layers and passes.

    Noise is drawn from fixed per-pair seeds, so two models see exactly the same inputs.
    Non-finite outputs give NaN scores instead of raising: a diverged checkpoint is data.
    """
    device = device or torch.device("cpu")
    cfg = model.cfg
    was_training = model.training
    model.eval()
    attn = attention_modules(model)
    for m in attn:
        m.record_stats, m.last_stats = True, None
    stats: dict[str, float] = {}
    psnrs, ssims, losses = [], [], []
    try:
        for i, (_, lr, hr) in enumerate(pairs):
            lr_b = lr[None].to(device)  # (1, 3, h, w)
            hr_b = hr[None].to(device)  # (1, 3, H, W)
            noise = draw_noise(hr_b.shape, seed=1_000_003 * (i + 1)).to(device)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                x0 = model(noise, 1.0, lr_b)
            for m in attn:
                _merge_stats(stats, m.last_stats)
            x0 = x0.float()
            if torch.isfinite(x0).all():
                sr = compose_output(lr_b, x0, cfg)[0]
                psnrs.append(psnr_y(sr, hr, border=cfg.scale))
                ssims.append(ssim_y(sr, hr, border=cfg.scale))
            else:
                psnrs.append(math.nan)
                ssims.append(math.nan)
            target = residual_target(hr_b, lr_b, cfg)
            for j, t in enumerate(t_grid):
                eps = draw_noise(hr_b.shape, seed=1_000_003 * (i + 1) + j + 1).to(device)
                x_t = (1.0 - t) * target + t * eps
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    pred = model(x_t, float(t), lr_b)
                for m in attn:
                    _merge_stats(stats, m.last_stats)
                losses.append(float((pred.float() - target).pow(2).mean()))
    finally:
        for m in attn:
            m.record_stats, m.last_stats = False, None
        model.train(was_training)
    out = {"psnr": _mean(psnrs), "ssim": _mean(ssims)}
    if t_grid:
        out["val_loss"] = _mean(losses)
    out.update(stats)
    return out


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


# ----------------------------------------------------------------------------- validation pairs


def _read_rgb(path: Path) -> Tensor:
    """An image file as (3, H, W) float32 in [0, 1], through imageio (every READABLE_SUFFIXES
    format); raises ImageReadError."""
    from linearsr_cli.imageio import read_image  # local: only the --val path reads images

    try:
        return read_image(path).rgb.float().contiguous()  # (3, H, W)
    except ImageReadError as exc:
        raise ImageReadError(f"{path}: cannot read image: {exc}") from None


def load_val_pairs(root: str | os.PathLike[str], *, scale: int, limit: int = 0) -> list[Pair]:
    """LR/HR pairs from `root/lr` + `root/hr` (same file stems); HR images are cropped so that
    HR = scale * LR exactly. (A training-data root with val/ is train.recipe.knee_val_pairs.)"""
    from linearsr_cli.imageio import READABLE_SUFFIXES  # local, as in _read_rgb

    root = Path(root)
    lr_dir, hr_dir = root / "lr", root / "hr"
    if lr_dir.is_dir() and hr_dir.is_dir():
        hr_files = {p.stem: p for p in sorted(hr_dir.iterdir()) if p.suffix.lower() in READABLE_SUFFIXES}
        pairs: list[Pair] = []
        for lp in sorted(lr_dir.iterdir()):
            if lp.suffix.lower() not in READABLE_SUFFIXES or lp.stem not in hr_files:
                continue
            lr, hr = _read_rgb(lp), _read_rgb(hr_files[lp.stem])
            h, w = lr.shape[-2:]
            if hr.shape[-2] < h * scale or hr.shape[-1] < w * scale:
                raise ImageReadError(f"{hr_files[lp.stem]}: smaller than x{scale} of its LR image")
            pairs.append((lp.stem, lr, hr[:, : h * scale, : w * scale]))
            if limit and len(pairs) >= limit:
                break
    else:
        raise ImageReadError(f"{root}: expected lr/ and hr/ subfolders (or a data root with val/)")
    if not pairs:
        raise ImageReadError(f"{root}: no LR/HR pairs with matching names")
    return pairs


# ----------------------------------------------------------------------------- checkpoint folders


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


@dataclass(frozen=True)
class Probe:
    """One checkpoint: its step and what was logged or measured for it."""

    path: Path
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    measured: bool = False  # True when metrics were recomputed on --val pairs


def is_resume_state(path: Path) -> bool:
    return path.name.endswith(".state.safetensors")


def scan_checkpoints(folder: str | os.PathLike[str]) -> tuple[list[Probe], list[Skipped]]:
    """Our training checkpoints in `folder`, sorted by step, and every other safetensors file
    with the reason it was skipped (foreign, corrupt, no training step, duplicate step)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsError(f"{folder}: not a directory")
    probes: dict[int, Probe] = {}
    skipped: list[Skipped] = []
    for path in sorted(folder.glob("*.safetensors")):
        if is_resume_state(path) or path.is_symlink():
            continue
        try:
            training = _training_record(path)
        except WeightsError as exc:
            skipped.append(Skipped(path, str(exc).removeprefix(f"{path}: ")))
            continue
        if "step" not in training:
            skipped.append(Skipped(path, "LinearSR weights without a training step (not a checkpoint)"))
            continue
        step = int(training["step"])
        if step in probes:
            skipped.append(Skipped(path, f"duplicate step {step} (kept {probes[step].path.name})"))
            continue
        probes[step] = Probe(path, step, _logged_metrics(training))
    return [probes[s] for s in sorted(probes)], skipped


def _training_record(path: Path) -> dict[str, Any]:
    """The training record of a checkpoint: a LinearSR weights file's "training" metadata, or for
    a prior file (stage 0) the last entry of its provenance's fine-tuning list."""
    meta = read_header(path).get("__metadata__") or {}
    if meta.get("format") == PRIOR_FORMAT:
        try:
            steps = json.loads(meta.get("provenance", "{}")).get("fine_tuning") or [{}]
        except (json.JSONDecodeError, AttributeError) as exc:
            raise WeightsError(f"{path}: bad prior provenance: {exc}") from None
        return dict(steps[-1])
    return read_info(path).training or {}


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _logged_metrics(training: dict[str, Any]) -> dict[str, float]:
    out = {"loss": _num(training.get("loss"))}
    for group in ("val", "attn", "gan"):
        for key, value in (training.get(group) or {}).items():
            out[key] = _num(value)
    return out


def remeasure(
    probes: Sequence[Probe], pairs: Sequence[Pair], *, t_grid: Sequence[float] = ()
) -> tuple[list[Probe], list[Skipped]]:
    """Recompute validation scores and attention statistics of every checkpoint on `pairs`."""
    out, skipped = [], []
    for probe in probes:
        if (read_header(probe.path).get("__metadata__") or {}).get("format") == PRIOR_FORMAT:
            out.append(probe)  # a stage-0 prior: its logged validation scores stand
            continue
        try:
            model, _ = load_weights(probe.path)
        except LinearSRError as exc:
            skipped.append(Skipped(probe.path, str(exc).removeprefix(f"{probe.path}: ")))
            continue
        metrics = dict(probe.metrics)
        metrics.update(measure_model(model, pairs, t_grid=t_grid))
        out.append(Probe(probe.path, probe.step, metrics, measured=True))
    return out, skipped


def curve_of(probes: Sequence[Probe]) -> Curve:
    """The per-checkpoint series knee.analyse works on."""
    def series(key: str) -> tuple[float, ...] | None:
        values = tuple(p.metrics.get(key, math.nan) for p in probes)
        return None if all(math.isnan(v) for v in values) else values

    return Curve(
        steps=tuple(p.step for p in probes),
        loss=tuple(p.metrics.get("loss", math.nan) for p in probes),
        psnr=series("psnr"),
        ssim=series("ssim"),
        max_act=_max_act(probes),
        min_normaliser=series("min_normaliser"),
    )


def _max_act(probes: Sequence[Probe]) -> tuple[float, ...] | None:
    values = tuple(
        max(p.metrics.get("max_q", math.nan), p.metrics.get("max_k", math.nan))
        if not (math.isnan(p.metrics.get("max_q", math.nan)) and math.isnan(p.metrics.get("max_k", math.nan)))
        else math.nan
        for p in probes
    )
    return None if all(math.isnan(v) for v in values) else values


@dataclass(frozen=True)
class Selection:
    """What select-knee found in a folder."""

    folder: Path
    probes: list[Probe]
    skipped: list[Skipped]
    report: KneeReport

    @property
    def knee_path(self) -> Path:
        return self.probes[self.report.knee].path

    def to_json(self) -> dict[str, Any]:
        r = self.report
        return {
            "folder": str(self.folder),
            "knee": {"step": self.probes[r.knee].step, "path": str(self.knee_path)},
            "unstable_peak": None
            if r.unstable_peak is None
            else {"step": self.probes[r.unstable_peak].step, "path": str(self.probes[r.unstable_peak].path)},
            "divergence": None
            if r.divergence is None
            else {"step": self.probes[r.divergence].step, "reason": r.divergence_reason},
            "checkpoints": [
                {"step": p.step, "path": str(p.path), "measured": p.measured, **_json_safe(p.metrics)}
                for p in self.probes
            ],
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in self.skipped],
        }


def _json_safe(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else v) for k, v in metrics.items()}


def select_knee(
    folder: str | os.PathLike[str],
    *,
    val_pairs: Sequence[Pair] | None = None,
    val_source: Callable[[int], Sequence[Pair]] | None = None,
    sensitivity: float = 1.0,
) -> Selection:
    """Scan `folder`, optionally re-measure on `val_pairs` (or the pairs `val_source(scale)` gives
    for the checkpoints' scale), and find the knee and unstable peak.

    Raises WeightsError for an empty folder, KneeError for too few usable checkpoints.
    """
    folder = Path(folder)
    probes, skipped = scan_checkpoints(folder)
    if val_source is not None and probes:
        val_pairs = val_source(read_info(probes[0].path).config.scale)
    if val_pairs:
        probes, more = remeasure(probes, val_pairs)
        skipped += more
    if not probes:
        detail = "; skipped: " + "; ".join(f"{s.path.name} ({s.reason})" for s in skipped) if skipped else ""
        raise WeightsError(f"{folder}: no LinearSR training checkpoints found{detail}")
    report = analyse(curve_of(probes), sensitivity=sensitivity)
    return Selection(folder, probes, skipped, report)


def link_checkpoint(src: Path, dest: Path) -> Path:
    """Point `dest` at `src`: a relative symlink where possible, else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    try:
        dest.symlink_to(os.path.relpath(src.resolve(), dest.parent.resolve()))
    except OSError:
        shutil.copy2(src, dest)
    return dest


def write_plot(selection: Selection, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """The ESGF plot: loss (with the knee, unstable peak and divergence), validation PSNR, and the
    linear-attention statistics against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, c = selection.report, selection.report.curve
    steps = np.asarray(c.steps, dtype=float)
    panels = [("training loss (logged)", c.loss, True)]
    if c.psnr is not None:
        panels.append(("val PSNR-Y, 1-NFE (dB)", c.psnr, False))
    if c.max_act is not None:
        panels.append(("max |phi(q)|, |phi(k)|", c.max_act, True))
    if c.min_normaliser is not None and len(set(c.min_normaliser)) > 1:  # constant = eps: no news
        panels.append(("min normaliser", c.min_normaliser, True))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.3 * len(panels) + 0.6), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, (label, values, logy) in zip(axes, panels, strict=True):
        y = np.asarray(values, dtype=float)
        ax.plot(steps, y, "o-", ms=3, lw=1, color="tab:blue")
        if label.startswith("training loss") and r.smoothed is not None:
            ax.plot(steps[: len(r.smoothed)], r.smoothed, "-", lw=1.5, color="tab:gray", label="smoothed")
        if logy and np.all(y[np.isfinite(y)] > 0) and np.isfinite(y).any():
            ax.set_yscale("log")
        ax.axvline(steps[r.knee], color="tab:green", ls="--", label=f"knee (step {c.steps[r.knee]})")
        if r.unstable_peak is not None:
            ax.axvline(steps[r.unstable_peak], color="tab:orange", ls=":",
                       label=f"unstable peak (step {c.steps[r.unstable_peak]})")
        if r.divergence is not None:
            ax.axvspan(steps[r.divergence], steps[-1], color="tab:red", alpha=0.12,
                       label=f"diverging (step {c.steps[r.divergence]})")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("step")
    fig.suptitle(title or f"ESGF knee selection: {selection.folder.name}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
