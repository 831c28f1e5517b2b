"""Output sizes other than a model's own scale: which native passes to run, and the
anti-aliased resample to the exact size. Pure tensor math: no I/O, no device choice.

    --outscale F        output round(F w) x round(F h)
    --width W           output W x round(W h / w)          (aspect kept)
    --height H          output round(H w / h) x H
    --width and --height    a W x H box, by --fit: contain (default; the largest size inside the
                            box with the input's aspect ratio), cover (fill the box, centre crop)
                            or stretch (exactly W x H, distorted)
The model runs the shortest chain of native passes whose product is the smallest scale >= the
factor the output needs (e.g. x2 for 1.5, x4 for 3, x4 then x2 for 6), then one resample brings
it down to the exact size: antialiased bicubic (PIL's kernel, a = -0.5, support widened by the
reduction) in linear light, with premultiplied alpha so transparent pixels do not bleed colour.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from linearsr_cli.errors import ConfigError

MAX_PASSES = 3  # x4 three times is x64: beyond any sensible request
FITS = ("contain", "cover", "stretch")
_EPS = 1e-9


@dataclass(frozen=True)
class SizeRequest:
    """What output size the user asked for; all None = the native scale of the model."""

    outscale: float | None = None
    width: int | None = None
    height: int | None = None
    fit: str = "contain"  # with both width and height: contain | cover | stretch

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ConfigError(f"--fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        if self.outscale is not None and (not math.isfinite(self.outscale) or self.outscale <= 0):
            raise ConfigError(f"--outscale must be a number > 0, got {self.outscale}")
        for name, value in (("width", self.width), ("height", self.height)):
            if value is not None and value < 1:
                raise ConfigError(f"--{name} must be >= 1 pixel, got {value}")
        if self.outscale is not None and (self.width is not None or self.height is not None):
            raise ConfigError("give --outscale or --width/--height, not both")

    @property
    def exact(self) -> bool:
        """True when an output size other than the native scale was asked for."""
        return self.outscale is not None or self.width is not None or self.height is not None

    def target(self, w: int, h: int, native: int) -> tuple[int, int]:
        """The output (width, height) for a w x h input; `native` when nothing was asked."""
        size, crop = self.resize_and_crop(w, h, native)
        return size if crop is None else (crop[2] - crop[0], crop[3] - crop[1])

    def aspect_differs(self, w: int, h: int) -> bool:
        """True when --width and --height ask for a box whose aspect ratio is not the input's."""
        if self.width is None or self.height is None:
            return False
        return _fit_size(w, h, self.width, self.height, cover=False) != (self.width, self.height)

    def resize_and_crop(
        self, w: int, h: int, native: int
    ) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
        """The (width, height) to resample to, and the centre crop box (x0, y0, x1, y1) of --fit
        cover (else None)."""
        if self.width is not None and self.height is not None and self.fit != "stretch":
            size = _fit_size(w, h, self.width, self.height, cover=self.fit == "cover")
            if self.fit == "contain" or size == (self.width, self.height):
                return size, None
            x0, y0 = (size[0] - self.width) // 2, (size[1] - self.height) // 2
            return size, (x0, y0, x0 + self.width, y0 + self.height)
        return self._size(w, h, native), None

    def _size(self, w: int, h: int, native: int) -> tuple[int, int]:
        if self.outscale is not None:
            return max(1, round(self.outscale * w)), max(1, round(self.outscale * h))
        if self.width is not None and self.height is not None:
            return self.width, self.height
        if self.width is not None:
            return self.width, max(1, round(self.width * h / w))
        if self.height is not None:
            return max(1, round(self.height * w / h)), self.height
        return native * w, native * h


def _fit_size(w: int, h: int, box_w: int, box_h: int, *, cover: bool) -> tuple[int, int]:
    """w x h scaled by one factor to fit inside (cover=False) or cover (True) box_w x box_h."""
    f = max(box_w / w, box_h / h) if cover else min(box_w / w, box_h / h)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    if cover:
        return max(size[0], box_w), max(size[1], box_h)
    return min(size[0], box_w), min(size[1], box_h)


def needed_factor(w: int, h: int, target: tuple[int, int]) -> float:
    """The upscale the model chain must reach so that neither axis is upsampled afterwards."""
    return max(target[0] / w, target[1] / h)


def plan_passes(factor: float, natives: Sequence[int], max_passes: int = MAX_PASSES) -> tuple[int, ...]:
    """The native passes (largest first) whose product is the smallest >= `factor`; fewer passes
    on a tie. ConfigError when `max_passes` of the largest model do not reach it."""
    scales = sorted(set(natives), reverse=True)
    if not scales:
        raise ConfigError("no upscaling model is available")
    best: tuple[int, ...] | None = None
    for n in range(1, max_passes + 1):
        for combo in itertools.combinations_with_replacement(scales, n):
            product = math.prod(combo)
            if product + _EPS < factor:
                continue
            if best is None or product < math.prod(best) or (product == math.prod(best) and n < len(best)):
                best = combo
    if best is None:
        biggest = scales[0] ** max_passes
        raise ConfigError(f"x{factor:g} needs more than {max_passes} passes of the x{scales[0]} model (at most x{biggest})")
    return best


def srgb_to_linear(x: Tensor) -> Tensor:
    """The sRGB transfer function inverted (IEC 61966-2-1), for x in [0, 1]."""
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: Tensor) -> Tensor:
    """The sRGB transfer function (IEC 61966-2-1), for x in [0, 1]."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)


def _resample(x: Tensor, size: tuple[int, int]) -> Tensor:
    """(C, h, w) -> (C, H, W) with antialiased bicubic (PIL's filter; size = (H, W))."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0]


def resample(
    rgb: Tensor, alpha: Tensor | None, size: tuple[int, int], *, linear_light: bool = True
) -> tuple[Tensor, Tensor | None]:
    """rgb (3, h, w) and alpha (1, h, w) or None, float in [0, 1], to (H, W) = `size`; colour in
    linear light (sRGB decoded, resampled, encoded) and premultiplied by alpha; outputs clamped."""
    if tuple(rgb.shape[-2:]) == size:
        return rgb, alpha
    colour = srgb_to_linear(rgb.float().clamp(0.0, 1.0)) if linear_light else rgb.float()
    if alpha is None:
        out = _resample(colour, size)
        return (linear_to_srgb(out) if linear_light else out.clamp(0.0, 1.0)), None
    a = alpha.float().clamp(0.0, 1.0)
    both = _resample(torch.cat([colour * a, a]), size)  # (4, H, W): premultiplied colour, alpha
    a_out = both[3:].clamp(0.0, 1.0)
    straight = _resample(colour, size)  # where alpha is 0, keep the colour of a plain resample
    out = torch.where(a_out > 1e-4, both[:3] / a_out.clamp_min(1e-4), straight)
    return (linear_to_srgb(out) if linear_light else out.clamp(0.0, 1.0)), a_out
