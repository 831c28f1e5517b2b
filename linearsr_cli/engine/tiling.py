"""Tiling as a pure coordinate plan plus a weighted blend into the output canvas; no PIL, rich or typer here.

Tiles are planned in LR pixels. Each tile starts on the model's token grid (a multiple of
`align` LR pixels) so its tokens are the same pixels as in a whole-image pass, and neighbouring
tiles overlap by at least `overlap` LR pixels. Outputs are blended with smooth window weights
that fade to zero near every edge a tile shares with a neighbour (where its convolutions saw
zero padding instead of the neighbour's pixels) and stay at one along the image border.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from linearsr_cli.pixels import PEAK

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), end-exclusive


@dataclass(frozen=True)
class Tile:
    """One tile: where it reads in the LR image, where it writes in the HR canvas, and which of
    its sides (top, left, bottom, right) border another tile and therefore get a blend ramp."""

    lr_box: Box
    hr_box: Box
    inner: tuple[bool, bool, bool, bool]

    @property
    def lr_size(self) -> tuple[int, int]:
        y0, x0, y1, x1 = self.lr_box
        return y1 - y0, x1 - x0


def plan_axis(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """Spans [start, end) covering 0..length with tiles of about `tile` pixels, starts on
    multiples of `align`, and at least `overlap` pixels shared by neighbours."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if tile <= 0 or length <= tile:
        return [(0, length)]
    def count(size: int) -> int:
        stride = size - overlap - (align - 1)  # worst case after rounding starts down to the grid
        last = (length - size) // align * align  # the last tile starts here and runs to the end
        return math.ceil(last / stride) + 1

    if tile - overlap - (align - 1) < 1:
        raise ValueError(f"tile {tile} too small for overlap {overlap} at alignment {align}")
    n = count(tile)
    # The smallest tile that still needs only n tiles: no work wasted on extra overlap.
    size = -(-length // n)
    while size < tile and (size - overlap - (align - 1) < 1 or count(size) > n):
        size += 1
    tile = size
    last = (length - tile) // align * align
    starts = [int(i * last / (n - 1)) // align * align for i in range(n)] if n > 1 else [0]
    spans = []
    for i, s in enumerate(starts):
        end = length if i == n - 1 else s + tile
        spans.append((s, end))
    return spans


def plan_tiles(h: int, w: int, tile: int, overlap: int, scale: int, align: int = 1) -> list[Tile]:
    """The tile grid for an LR image of h x w; one tile covering everything when tile = 0 or
    the image fits."""
    rows = plan_axis(h, tile, overlap, align)
    cols = plan_axis(w, tile, overlap, align)
    tiles = []
    for i, (y0, y1) in enumerate(rows):
        for j, (x0, x1) in enumerate(cols):
            inner = (i > 0, j > 0, i < len(rows) - 1, j < len(cols) - 1)
            hr = (y0 * scale, x0 * scale, y1 * scale, x1 * scale)
            tiles.append(Tile((y0, x0, y1, x1), hr, inner))
    return tiles


def ramp(length: int, fade: int, margin: int) -> Tensor:
    """1-D raised-cosine fade-in: 0 over the first `margin` pixels, then 0.5 - 0.5 cos(pi u)
    for u in (0, 1) across the next `fade` pixels, then 1. float32, (length,)."""
    pos = torch.arange(length, dtype=torch.float32) + 0.5
    u = ((pos - margin) / max(fade, 1)).clamp(0.0, 1.0)
    return 0.5 - 0.5 * torch.cos(math.pi * u)


def window_factors(tile: Tile, overlap_hr: int, margin_hr: int) -> tuple[Tensor, Tensor]:
    """The blend weights of one tile as two 1-D factors (H_tile,), (W_tile,): a ramp along each
    inner side, reaching 1 at `overlap_hr` pixels from that side; `window` is their product."""
    y0, x0, y1, x1 = tile.hr_box
    top, left, bottom, right = tile.inner
    fade = max(overlap_hr - margin_hr, 1)
    wy = torch.ones(y1 - y0)
    wx = torch.ones(x1 - x0)
    if top:
        wy = wy * ramp(y1 - y0, fade, margin_hr)
    if bottom:
        wy = wy * ramp(y1 - y0, fade, margin_hr).flip(0)
    if left:
        wx = wx * ramp(x1 - x0, fade, margin_hr)
    if right:
        wx = wx * ramp(x1 - x0, fade, margin_hr).flip(0)
    return wy, wx


def window(tile: Tile, overlap_hr: int, margin_hr: int) -> Tensor:
    """Blend weights (H_tile, W_tile) of one tile (window_factors' outer product)."""
    wy, wx = window_factors(tile, overlap_hr, margin_hr)
    return wy[:, None] * wx[None, :]


class TileCanvas:
    """Blends tile outputs straight into a (C, H, W) canvas: float32, or uint16 for a big output
    (2 bytes per value instead of the 16 that a float sum and its weight map would take).

    The tiles of plan_tiles form a grid (one y-span per tile row, one x-span per tile column),
    so the sum of their windows is separable, WY(y) WX(x): each tile's window is divided by it
    up front and its share added to the canvas, in any order, with nothing else kept. A tile's
    values are clamped to [0, 1] before they are weighted (the shares of an overlap blend
    in-range pixels); an integer canvas adds rounded shares, within (tiles at that pixel) / 2
    steps of rounding the float blend (at most 2 / 65535 in uint16).
    """

    def __init__(self, plan: list[Tile], shape: tuple[int, int, int], dtype: torch.dtype,
                 overlap_hr: int, margin_hr: int) -> None:
        self.canvas = torch.zeros(shape, dtype=dtype)  # (C, H, W)
        self.overlap_hr = overlap_hr
        self.margin_hr = margin_hr
        self.sum_y = torch.zeros(shape[1])  # WY: the tile rows' factors summed
        self.sum_x = torch.zeros(shape[2])  # WX: the tile columns' factors summed
        rows = {(t.hr_box[0], t.hr_box[2]): t for t in plan}
        cols = {(t.hr_box[1], t.hr_box[3]): t for t in plan}
        for (y0, y1), t in rows.items():
            self.sum_y[y0:y1] += window_factors(t, overlap_hr, margin_hr)[0]
        for (x0, x1), t in cols.items():
            self.sum_x[x0:x1] += window_factors(t, overlap_hr, margin_hr)[1]
        if not (bool((self.sum_y > 0).all()) and bool((self.sum_x > 0).all())):
            raise ValueError("tile plan leaves pixels uncovered")

    def add(self, tile: Tile, values: Tensor) -> None:
        """Add one tile's (C, th, tw) float values (clamped here), weighted by its share."""
        y0, x0, y1, x1 = tile.hr_box
        wy, wx = window_factors(tile, self.overlap_hr, self.margin_hr)
        share = values.clamp(0.0, 1.0).mul_((wy / self.sum_y[y0:y1])[:, None]).mul_((wx / self.sum_x[x0:x1])[None, :])
        region = self.canvas[:, y0:y1, x0:x1]
        if region.is_floating_point():
            region += share
            return
        peak = int(PEAK[region.dtype])
        region.copy_(region.int().add_(share.mul_(peak).round_().int()).clamp_(max=peak))
