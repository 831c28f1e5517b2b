"""Rectified-flow schedule: t <-> log-SNR, sampling time grids and the SNR expert router.

x_t = (1 - t) x0 + t eps, so alpha_t = 1 - t, sigma_t = t, SNR(t) = ((1 - t) / t)^2 and
lambda(t) = log SNR(t) = 2 log((1 - t) / t). t = 1 is pure noise (lambda = -inf).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import torch
from torch import Tensor


def log_snr_tensor(t: Tensor) -> Tensor:
    """Elementwise lambda(t) = 2 log((1 - t) / t) in float64, -inf at t = 1 and +inf at t = 0.

    The one implementation of lambda: the router and the samplers must agree bit for bit,
    because schedule points can fall exactly on an expert boundary.
    """
    t = t.double()
    return 2.0 * (torch.log1p(-t) - torch.log(t))


def log_snr(t: float) -> float:
    """lambda(t) for a Python float (see log_snr_tensor)."""
    return float(log_snr_tensor(torch.tensor([float(t)], dtype=torch.float64))[0])


def t_from_log_snr(lam: float) -> float:
    """Inverse of log_snr: t = 1 / (1 + exp(lambda / 2)) = sigmoid(-lambda / 2)."""
    return 1.0 / (1.0 + math.exp(lam / 2.0))


def expert_for_log_snr(lam: float, boundaries: Sequence[float]) -> int:
    """Index of the expert whose log-SNR interval holds lam.

    Experts are ordered from high noise to low noise (structure, refinement, texture,
    polishing); interval i is [b_{i-1}, b_i), the first one open to -inf, the last to +inf.
    """
    return bisect.bisect_right(list(boundaries), lam)


def expert_interval(index: int, boundaries: Sequence[float], lam_range: Sequence[float]) -> tuple[float, float]:
    """The log-SNR interval an expert is trained on; the outer ends are the range's ends."""
    edges = [float(lam_range[0]), *boundaries, float(lam_range[1])]
    return edges[index], edges[index + 1]


def flow_timesteps(steps: int, *, shift: float = 1.0) -> list[float]:
    """The K + 1 times 1 = t_0 > ... > t_K = 0 of a K-step run.

    Uniform in t, then shifted by t' = s t / (1 + (s - 1) t) (SD3's resolution shift; s > 1
    spends more steps at high noise). The ends are exactly 1 and 0 for every shift: in floating
    point s / (1 + (s - 1)) is 1.0000000000000002 for s = 0.2, a t > 1 whose log-SNR is NaN,
    which sent the first step to the last expert instead of the structure expert.
    """
    grid = [1.0 - i / steps for i in range(steps + 1)]
    inner = [shift * t / (1.0 + (shift - 1.0) * t) for t in grid[1:-1]]
    return [1.0, *inner, 0.0]
