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
from linearsr_cli.pixels import as_float, quantize

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


BAND_ROWS = 128  # output rows resampled at a time: the float temporaries stay a few bands high


def axis_weights(in_size: int, out_size: int) -> tuple[list[int], Tensor]:
    """Antialiased bicubic along one axis (PIL's filter, a = -0.5, support widened by the
    reduction; what F.interpolate(antialias=True) computes): for each output index, its first
    input index and its normalised tap weights, zero-padded to (out_size, taps) float32."""
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1.0 else 2.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    starts, rows = [], []
    for i in range(out_size):
        centre = scale * (i + 0.5)
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), in_size)
        x = (torch.arange(lo, hi, dtype=torch.float64) - centre + 0.5).mul_(inv).abs_()
        w = torch.where(x < 1.0, (1.5 * x - 2.5) * x * x + 1.0,
                        torch.where(x < 2.0, ((x - 5.0) * x + 8.0) * x * -0.5 + 2.0, torch.zeros_like(x)))
        starts.append(lo)
        rows.append(w / w.sum())
    taps = max(len(r) for r in rows)
    weights = torch.zeros((out_size, taps), dtype=torch.float64)
    for i, r in enumerate(rows):
        weights[i, : len(r)] = r
    return starts, weights.float()


def _resample_width(x: Tensor, width: int) -> Tensor:
    """(C, h, w) -> (C, h, width), antialiased bicubic along the width only."""
    if x.shape[-1] == width:
        return x
    c, h, w = x.shape
    return F.interpolate(x.reshape(1, c * h, 1, w), size=(1, width), mode="bicubic", antialias=True,
                         align_corners=False).reshape(c, h, width)


def resample(
    rgb: Tensor, alpha: Tensor | None, size: tuple[int, int], *, linear_light: bool = True
) -> tuple[Tensor, Tensor | None]:
    """rgb (3, h, w) and alpha (1, h, w) or None to (H, W) = `size`; colour in linear light (sRGB
    decoded, resampled, encoded) and premultiplied by alpha; outputs clamped. rgb is float in
    [0, 1] or a uint16/uint8 canvas (pixels.py), and the output keeps its dtype.

    Separable and banded: BAND_ROWS output rows at a time, each from the input rows its taps read
    (axis_weights), so the float temporaries are a few rows high, whatever the image size."""
    if tuple(rgb.shape[-2:]) == size:
        return rgb, alpha
    height, width = size
    out = torch.empty((rgb.shape[0], height, width), dtype=rgb.dtype if not rgb.is_floating_point() else torch.float32)
    a_out = None if alpha is None else torch.empty((1, height, width), dtype=torch.float32)
    starts, weights = axis_weights(int(rgb.shape[-2]), height)
    for r0 in range(0, height, BAND_ROWS):
        r1 = min(r0 + BAND_ROWS, height)
        lo, hi = starts[r0], min(starts[r1 - 1] + weights.shape[1], int(rgb.shape[-2]))
        mix = torch.zeros((r1 - r0, hi - lo))  # (out rows, in rows) of this band
        for i in range(r0, r1):
            taps = weights[i, : hi - starts[i]]
            mix[i - r0, starts[i] - lo : starts[i] - lo + len(taps)] = taps

        def rows(x: Tensor, mix: Tensor = mix) -> Tensor:
            return torch.einsum("oh,chw->cow", mix, _resample_width(x, width))

        band = as_float(rgb[:, lo:hi]).clamp(0.0, 1.0)
        colour = srgb_to_linear(band) if linear_light else band
        if alpha is None:
            mixed = rows(colour)
        else:
            a = alpha[:, lo:hi].float().clamp(0.0, 1.0)
            both = rows(torch.cat([colour * a, a]))  # (4, rows, W): premultiplied colour, alpha
            a_band = both[3:].clamp(0.0, 1.0)
            straight = rows(colour)  # where alpha is 0, keep the colour of a plain resample
            mixed = torch.where(a_band > 1e-4, both[:3] / a_band.clamp_min(1e-4), straight)
            a_out[:, r0:r1] = a_band
        out[:, r0:r1] = quantize(linear_to_srgb(mixed) if linear_light else mixed, out.dtype)
    return out, a_out
