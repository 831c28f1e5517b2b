"""Pixel canvases: float32 in [0, 1], or integer canvases that hold a big output in 2 (uint16)
or 1 (uint8) bytes per value instead of 4. Pure tensor math."""

from __future__ import annotations

import torch
from torch import Tensor

PEAK = {torch.uint16: 65535.0, torch.uint8: 255.0}  # integer canvases: v in [0, 1] stored as round(v * peak)


def as_float(pixels: Tensor) -> Tensor:
    """Canvas pixels as float32 in [0, 1]: integer canvases divided by their PEAK (a new tensor),
    float ones as they are (the same tensor when already float32)."""
    if pixels.is_floating_point():
        return pixels.float()
    return pixels.float().div_(PEAK[pixels.dtype])


def quantize(values: Tensor, dtype: torch.dtype) -> Tensor:
    """Float pixels to a canvas dtype: clamped to [0, 1]; uint16 as round(v * 65535), uint8 as
    round(v * 255); float32 stays float (clamped)."""
    values = values.clamp(0.0, 1.0)
    if dtype.is_floating_point:
        return values.to(dtype)
    return values.mul_(PEAK[dtype]).round_().to(dtype)
