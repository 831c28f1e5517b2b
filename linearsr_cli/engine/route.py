"""`--input auto`: which prior serves an image, decided per image from the evidence it carries.

The clean prior (SPAN as released) is best on bicubic-like inputs; the real prior (fine-tuned on
noise, blur and JPEG) on camera and web photos. A wrong route is expensive (the real prior loses
up to 3 dB on a clean image, the clean one up to 8 dB on a degraded one), so the decision is a
learned gate like the SNR router: a logistic model over a few measurements of the LR image,

- `noise`: the luma noise sigma (8-bit units) by Immerkaer's estimator (J. Immerkaer, "Fast
  noise variance estimation", CVIU 1996): a Laplacian-difference kernel that cancels smooth
  structure; image texture raises it too, so also
- `flat_noise`: the same over the flattest fifth of the image, where texture cannot pass for noise;
- `blockiness`: log of the mean luma step across the 8x8 JPEG grid over the mean step inside
  the blocks (0 = no grid);
- `detail`: log of fine over coarse detail energy, mean |x - blur_0.7(x)| / mean |x - blur_2(x)|;
  a soft (blurred or resized) image has little fine detail relative to its coarse detail;
- `jpeg`: what the file says: (95 - q) / 30 for a JPEG saved at quality q < 95, else 0,

fitted by `linearsr train router` on training crops with a cost-sensitive loss (each crop
weighted by how much PSNR the wrong choice would lose), and stored in the weights' metadata.
Pure numpy and torch tensors in; no files, no PIL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from linearsr_cli.degrade import gaussian_blur
from linearsr_cli.errors import WeightsError

FEATURES = ("noise", "flat_noise", "blockiness", "detail", "jpeg")


@dataclass(frozen=True)
class Evidence:
    """What an image says about how it was degraded (see the module docstring)."""

    noise: float
    flat_noise: float
    blockiness: float
    detail: float
    jpeg_quality: int | None = None

    @property
    def jpeg(self) -> float:
        q = self.jpeg_quality
        return max(0.0, (95.0 - q) / 30.0) if q is not None else 0.0

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, name) for name in FEATURES], dtype=np.float64)

    def describe(self) -> str:
        """The evidence in words for a --json record: 'jpeg q=72, noise sigma=4.1, ...'."""
        parts = [f"jpeg q={self.jpeg_quality}"] if self.jpeg_quality is not None else []
        parts += [f"noise σ≈{self.flat_noise:.1f} (flat areas) / {self.noise:.1f}", f"blockiness {self.blockiness:.2f}",
                  f"detail {self.detail:.2f}"]
        return ", ".join(parts)


def _luma(rgb: Tensor) -> Tensor:
    """(3, h, w) in [0, 1] -> (1, 1, h, w) BT.601 luma in 8-bit units, fp32."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(3, 1, 1)
    return (rgb.float().cpu() * w).sum(0)[None, None] * 255.0


IMMERKAER = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]).view(1, 1, 3, 3)


def noise_sigmas(y: Tensor, flat_share: float = 0.2) -> tuple[float, float]:
    """Immerkaer (1996): sigma = sqrt(pi/2) / 6 * mean |y * M| for the 3x3 kernel
    M = [[1,-2,1],[-2,4,-2],[1,-2,1]] over the whole luma y (1, 1, h, w), and the same over its
    flattest `flat_share` of pixels (smallest local gradient), where texture cannot pass for noise."""
    if min(y.shape[-2:]) < 3:
        return 0.0, 0.0
    resp = F.conv2d(y, IMMERKAER).abs().flatten()  # (h-2)(w-2)
    grad = ((y[..., 1:-1, 2:] - y[..., 1:-1, :-2]).abs() + (y[..., 2:, 1:-1] - y[..., :-2, 1:-1]).abs())
    grad = F.avg_pool2d(grad, 3, 1, 1, count_include_pad=False).flatten()  # local gradient, same size as inner
    k = max(1, int(flat_share * grad.numel()))
    flat = resp[torch.topk(grad, k, largest=False).indices]
    c = math.sqrt(math.pi / 2.0) / 6.0
    return float(c * resp.mean()), float(c * flat.mean())


def blockiness(y: Tensor, block: int = 8) -> float:
    """log(mean |step| across the block grid / mean |step| inside blocks), both directions."""
    ratios = []
    for dim in (-1, -2):
        d = torch.diff(y, dim=dim).abs()  # step between pixel i and i + 1 along dim
        n = d.shape[dim]
        if n < 2 * block:
            continue
        idx = torch.arange(n)
        edge = (idx % block) == block - 1  # step from the last pixel of a block to the next block
        across = d.index_select(dim, idx[edge]).mean()
        inside = d.index_select(dim, idx[~edge]).mean()
        ratios.append(float((across + 1e-3) / (inside + 1e-3)))
    return float(math.log(sum(ratios) / len(ratios))) if ratios else 0.0


def detail(y: Tensor) -> float:
    """log(mean |y - blur_0.7(y)| / mean |y - blur_2(y)|): fine over coarse detail energy."""
    fine = (y - gaussian_blur(y, 0.7)).abs().mean()
    coarse = (y - gaussian_blur(y, 2.0)).abs().mean()
    return float(math.log((fine + 1e-3) / (coarse + 1e-3)))


def measure(rgb: Tensor, jpeg_quality: int | None = None) -> Evidence:
    """The evidence of an LR image (3, h, w) in [0, 1] (what the router sees)."""
    y = _luma(rgb)
    return Evidence(*noise_sigmas(y), blockiness(y), detail(y), jpeg_quality)


@dataclass(frozen=True)
class Router:
    """A logistic gate: P(real prior is better) = sigmoid(w . standardised(features) + b)."""

    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    features: tuple[str, ...] = FEATURES
    fitted: Mapping[str, Any] | None = None  # how it was fitted (for the model card / info)

    def logit(self, evidence: Evidence) -> float:
        x = (evidence.vector() - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(np.dot(self.weights, x) + self.bias)

    def choose(self, evidence: Evidence) -> tuple[str, str]:
        """("real" | "clean", why) for an image with this evidence."""
        logit = self.logit(evidence)
        p = 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))
        return ("real" if logit > 0 else "clean"), f"{evidence.describe()}; p(real)={p:.2f}"

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "weights": list(self.weights), "bias": self.bias,
                "mean": list(self.mean), "scale": list(self.scale), "fitted": dict(self.fitted or {})}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Router:
        try:
            features = tuple(str(f) for f in data["features"])
            if features != FEATURES:
                raise WeightsError(f"router features {features} are not this version's {FEATURES}")
            router = cls(tuple(float(v) for v in data["weights"]), float(data["bias"]),
                         tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["scale"]),
                         features, data.get("fitted") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"bad router metadata: {exc}") from None
        if not len(router.weights) == len(router.mean) == len(router.scale) == len(FEATURES):
            raise WeightsError("bad router metadata: weights, mean and scale must have one value per feature")
        return router


def fit_router(evidence: Sequence[Evidence], gain: Sequence[float], *, l2: float = 1e-2,
               iterations: int = 2000) -> Router:
    """Fit the gate on crops with measured `gain` = PSNR(real prior) - PSNR(clean prior): a
    logistic regression on sign(gain) with each crop weighted by |gain| (the loss of routing it
    wrong), so the fit minimises expected regret rather than counting mistakes; gradient descent
    on standardised features with a small L2 penalty."""
    x = np.stack([e.vector() for e in evidence])  # (N, F)
    g = np.asarray(gain, dtype=np.float64)
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (x - mean) / scale
    y = (g > 0).astype(np.float64)
    c = np.abs(g) / max(np.abs(g).mean(), 1e-9)  # (N,) cost of a wrong route
    w, b = np.zeros(z.shape[1]), 0.0
    lr = 0.5
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        r = c * (p - y) / len(y)
        w -= lr * (z.T @ r + l2 * w)
        b -= lr * float(r.sum())
    choice = (z @ w + b) > 0
    regret = float(np.where(choice, np.maximum(-g, 0), np.maximum(g, 0)).mean())
    fitted = {"crops": len(g), "train_regret_db": regret, "train_accuracy": float((choice == (g > 0)).mean())}
    return Router(tuple(w), b, tuple(mean), tuple(scale), FEATURES, fitted)
