"""The starting noise of a sampling run as a field that tiles crop, so a tiled run never needs
the whole (1, 3, H, W) canvas in memory. Pure tensor math on the CPU: identical on every device.

Canvases of up to WHOLE_NOISE_PIXELS are drawn whole from one generator seeded with the image's
seed (samplers.draw_noise: the noise every earlier release drew). Bigger ones, where the whole
draw alone would cost gigabytes (4.6 GB of float32 for a 12 MP photo at x4), are a grid of
BLOCK x BLOCK blocks, each drawn from its own generator seeded by (seed, block row, block
column): any crop is exact and costs only the blocks it touches, whatever the tiling.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from linearsr_cli.sampling.samplers import draw_noise

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), end-exclusive, in canvas pixels
WHOLE_NOISE_PIXELS = 1 << 25  # 33.5 MP: 400 MB of float32 noise for 3 channels, drawn at once
BLOCK = 256


def block_seed(seed: int, row: int, col: int) -> int:
    """The generator seed of one noise block: distinct for every (seed, row, col) in use."""
    return ((int(seed) * 1_000_003 + row) * 1_000_033 + col) & ((1 << 63) - 1)


class NoiseField:
    """Standard normal noise over a (1, C, H, W) canvas: `crop(box)` -> (1, C, y1-y0, x1-x0)."""

    def __init__(self, shape: tuple[int, int, int, int], seed: int, *, tensor: Tensor | None = None) -> None:
        self.shape = tuple(int(v) for v in shape)
        self.seed = int(seed)
        self._whole = tensor
        if tensor is None and self.shape[-2] * self.shape[-1] <= WHOLE_NOISE_PIXELS:
            self._whole = draw_noise(self.shape, self.seed)

    @classmethod
    def of(cls, noise: Tensor) -> NoiseField:
        """A field that is exactly `noise` (1, C, H, W) (given noise, transformed noise for TTA)."""
        return cls(tuple(noise.shape), 0, tensor=noise)

    @property
    def blockwise(self) -> bool:
        return self._whole is None

    def full(self) -> Tensor:
        """The whole canvas (1, C, H, W); a blockwise field materialises it (memory: the canvas)."""
        return self._whole if self._whole is not None else self.crop((0, 0, self.shape[-2], self.shape[-1]))

    def crop(self, box: Box) -> Tensor:
        y0, x0, y1, x1 = box
        if self._whole is not None:
            return self._whole[..., y0:y1, x0:x1]
        b, c = self.shape[:2]
        out = torch.empty((b, c, y1 - y0, x1 - x0), dtype=torch.float32)
        for row in range(y0 // BLOCK, math.ceil(y1 / BLOCK)):
            for col in range(x0 // BLOCK, math.ceil(x1 / BLOCK)):
                block = draw_noise((b, c, BLOCK, BLOCK), block_seed(self.seed, row, col))
                by0, bx0 = row * BLOCK, col * BLOCK
                ty0, tx0 = max(y0, by0), max(x0, bx0)
                ty1, tx1 = min(y1, by0 + BLOCK), min(x1, bx0 + BLOCK)
                out[..., ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0] = block[..., ty0 - by0 : ty1 - by0, tx0 - bx0 : tx1 - bx0]
        return out
