"""ESGF curve logic (LinearSR, early-stopping-guided fine-tuning): find the knee of the stage-1
loss curve with Kneedle, where training starts to diverge, and the "unstable peak".

Definitions (also in docs/ESGF.md):
- divergence onset: the first checkpoint whose loss is NaN/inf or above `spike` (3) x the
  "floor" of the earlier losses (the lowest median of three consecutive ones), whose validation PSNR is NaN after finite ones, or whose largest attention
  activation exceeds `act_spike` x the median of the earlier ones (or whose smallest normaliser
  is non-finite). Everything from there on is the diverging tail.
- knee: Kneedle (Satopaa et al. 2011, `kneed`) on the loss-vs-step curve of the stable prefix
  (polynomial-smoothed), as a convex decreasing curve. This is the checkpoint ESGF picks.
- unstable peak: among the stable checkpoints after the knee, the one a naive selection would
  take: best validation PSNR when that was measured, otherwise the lowest logged loss. The
  paper's naive stage 2 starts from such a checkpoint and diverges.
Pure functions over numbers: no files, no torch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from linearsr_cli.errors import LinearSRError

MIN_POINTS = 3


class KneeError(LinearSRError):
    """The curve cannot give a knee (too few usable checkpoints)."""


@dataclass(frozen=True)
class Curve:
    """Per-checkpoint series, index-aligned with `steps` (increasing). NaN = not available."""

    steps: tuple[int, ...]
    loss: tuple[float, ...]
    psnr: tuple[float, ...] | None = None
    ssim: tuple[float, ...] | None = None
    max_act: tuple[float, ...] | None = None
    min_normaliser: tuple[float, ...] | None = None


@dataclass(frozen=True)
class KneeReport:
    curve: Curve
    knee: int  # index into curve.steps
    unstable_peak: int | None
    divergence: int | None
    divergence_reason: str
    smoothed: tuple[float, ...] | None  # the smoothed loss of the stable prefix Kneedle saw


def _finite(v: float) -> bool:
    return v is not None and math.isfinite(v)


def _running_floor(values: Sequence[float]) -> float | None:
    """The lowest median of three consecutive earlier losses: a noise-robust running minimum
    (None with fewer than three finite values)."""
    v = [x for x in values if _finite(x)]
    if len(v) < 3:
        return None
    return min(float(np.median(v[j : j + 3])) for j in range(len(v) - 2))


def divergence_onset(
    curve: Curve, *, spike: float = 3.0, act_spike: float = 10.0
) -> tuple[int | None, str]:
    """First index where training has gone wrong (see module docstring) and why; (None, "") if never."""
    n = len(curve.steps)
    seen_psnr = False
    for i in range(n):
        loss = curve.loss[i]
        if not _finite(loss):
            return i, f"loss is {loss}"
        base = _running_floor(curve.loss[:i])
        if base is not None and loss > spike * base:
            return i, f"loss spike {loss:.4g} > {spike:g} x earlier floor {base:.4g}"
        if curve.psnr is not None:
            p = curve.psnr[i]
            if _finite(p):
                seen_psnr = True
            elif seen_psnr:
                return i, "validation output is NaN/inf"
        if curve.max_act is not None:
            a = curve.max_act[i]
            prev = [v for v in curve.max_act[:i] if _finite(v)]
            if (a is not None and math.isinf(a)) or (
                len(prev) >= 2 and _finite(a) and a > act_spike * float(np.median(prev))
            ):
                return i, f"attention activation {a:.4g} exploded (> {act_spike:g} x earlier median)"
        if curve.min_normaliser is not None:
            m = curve.min_normaliser[i]
            if m is not None and not math.isnan(m) and not math.isfinite(m):
                return i, "attention normaliser is non-finite"
    return None, ""


def kneedle(steps: Sequence[float], values: Sequence[float], *, sensitivity: float = 1.0) -> tuple[int, np.ndarray]:
    """Index of the Kneedle knee (Satopaa et al. 2011) of a convex decreasing curve, and the
    smoothed curve it was found on.

    Noisy losses are first fitted with a polynomial of degree min(7, n - 3) (kneed's
    "polynomial" interpolation; with 6+ points), which keeps the knee of a noisy exponential
    decay within one checkpoint of the noise-free one. When Kneedle finds no knee that passes
    its threshold (a nearly straight curve), the maximum of its difference curve is used.
    """
    from kneed import KneeLocator

    x = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    n = len(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n >= 6:
            kl = KneeLocator(
                x, y, S=sensitivity, curve="convex", direction="decreasing",
                interp_method="polynomial", polynomial_degree=min(7, n - 3),
            )
        else:
            kl = KneeLocator(x, y, S=sensitivity, curve="convex", direction="decreasing")
    smoothed = np.asarray(kl.Ds_y, dtype=float)
    if kl.knee is not None:
        return int(np.argmin(np.abs(x - float(kl.knee)))), smoothed
    return int(np.argmax(kl.y_difference)), smoothed


def unstable_peak(curve: Curve, knee: int, end: int) -> int | None:
    """After the knee and before `end`: the best-validation (else lowest-loss) checkpoint."""
    candidates = list(range(knee + 1, end))
    if curve.psnr is not None:
        scored = [i for i in candidates if _finite(curve.psnr[i])]
        if scored:
            return max(scored, key=lambda i: (curve.psnr[i], i))
    scored = [i for i in candidates if _finite(curve.loss[i])]
    return min(scored, key=lambda i: (curve.loss[i], -i)) if scored else None


def analyse(
    curve: Curve,
    *,
    sensitivity: float = 1.0,
    spike: float = 3.0,
    act_spike: float = 10.0,
) -> KneeReport:
    """Knee, divergence onset and unstable peak of a checkpoint series (ESGF)."""
    n = len(curve.steps)
    if list(curve.steps) != sorted(set(curve.steps)):
        raise KneeError("checkpoint steps must be distinct and increasing")
    div, reason = divergence_onset(curve, spike=spike, act_spike=act_spike)
    end = n if div is None else div
    if end < MIN_POINTS:
        usable = f"{end} usable" if div is not None else f"{n}"
        raise KneeError(
            f"need at least {MIN_POINTS} stable checkpoints to find a knee, have {usable}"
            + (f" (divergence at step {curve.steps[div]}: {reason})" if div is not None else "")
        )
    knee, smoothed = kneedle(curve.steps[:end], curve.loss[:end], sensitivity=sensitivity)
    return KneeReport(
        curve=curve,
        knee=knee,
        unstable_peak=unstable_peak(curve, knee, end),
        divergence=div,
        divergence_reason=reason,
        smoothed=tuple(float(v) for v in smoothed),
    )


def table_rows(report: KneeReport) -> list[list[str]]:
    """Rows for the select-knee table: step, loss, PSNR, SSIM, max act, min normaliser, mark."""
    c = report.curve

    def fmt(series: tuple[float, ...] | None, i: int, spec: str) -> str:
        if series is None:
            return "-"
        v = series[i]
        return "nan" if v is None or math.isnan(v) else format(v, spec)

    rows = []
    for i, step in enumerate(c.steps):
        marks = []
        if i == report.knee:
            marks.append("KNEE (chosen)")
        if i == report.unstable_peak:
            marks.append("unstable peak")
        if report.divergence is not None and i >= report.divergence:
            marks.append("diverging" if i == report.divergence else "tail")
        rows.append(
            [
                str(step),
                fmt(c.loss, i, ".5f"),
                fmt(c.psnr, i, ".2f"),
                fmt(c.ssim, i, ".4f"),
                fmt(c.max_act, i, ".3g"),
                fmt(c.min_normaliser, i, ".3g"),
                ", ".join(marks),
            ]
        )
    return rows


TABLE_HEADER = ["step", "loss", "PSNR-Y", "SSIM-Y", "max |phi|", "min norm.", ""]
