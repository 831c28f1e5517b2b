"""Tiling: the pure plan, the blend, and seamlessness of tiled runs against whole-image runs."""

from __future__ import annotations

import math

import pytest
import torch

from linearsr_cli.config import SamplerConfig, TileConfig
from linearsr_cli.engine.device import DevicePlan
from linearsr_cli.engine.tiling import TileCanvas, plan_axis, plan_tiles, window
from linearsr_cli.engine.upscaler import Upscaler
from tests.conftest import synthetic_photo
from tests.util import random_model, tiny_model_config

CPU = DevicePlan(torch.device("cpu"), None)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float(((a - b) ** 2).mean()))


@pytest.mark.parametrize("length", [1, 2, 7, 31, 48, 49, 64, 65, 100, 257, 1000])
@pytest.mark.parametrize(("tile", "overlap", "align"), [(48, 8, 2), (32, 8, 1), (64, 16, 4), (40, 16, 2)])
def test_plan_axis_covers_aligned_and_overlapping(length: int, tile: int, overlap: int, align: int) -> None:
    spans = plan_axis(length, tile, overlap, align)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (s0, e0), (s1, _e1) in zip(spans, spans[1:], strict=False):
        assert s1 % align == 0 and s1 > s0
        assert e0 - s1 >= overlap  # neighbours share at least `overlap` pixels
    for s, e in spans:
        assert e - s <= tile + align - 1 or len(spans) == 1
    if length <= tile:
        assert spans == [(0, length)]


def test_plan_tiles_grid_and_inner_sides() -> None:
    tiles = plan_tiles(100, 70, 48, 8, scale=4, align=2)
    assert len(tiles) == 3 * 2
    corner = tiles[0]
    assert corner.inner == (False, False, True, True)
    assert corner.hr_box == tuple(4 * v for v in corner.lr_box)
    assert plan_tiles(30, 20, 0, 8, scale=4) == plan_tiles(30, 20, 64, 8, scale=4)


def test_window_is_one_on_outer_border_and_fades_at_inner_sides() -> None:
    tile = plan_tiles(100, 100, 48, 8, scale=4, align=2)[0]  # top-left: inner bottom and right
    w = window(tile, overlap_hr=32, margin_hr=8)
    assert w[0, 0] == 1.0
    assert w[-1, 0] == 0.0 and w[0, -1] == 0.0  # margin next to an inner edge
    assert torch.all(w[:, :60] == w[:, :1])  # flat away from the inner edges
    assert torch.all(torch.diff(w[0, -40:]) <= 0)  # monotone fade


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint16])
def test_tile_canvas_is_a_partition_of_unity(dtype: torch.dtype) -> None:
    """Tiles that all cut from one canvas blend back to exactly that canvas, in any order: the
    separable weight sums are the old per-pixel weight map; uint16 within its rounding bound."""
    canvas = torch.rand(3, 4 * 90, 4 * 61)
    plan = plan_tiles(90, 61, 40, 12, scale=4, align=2)
    board = TileCanvas(plan, tuple(canvas.shape), dtype, overlap_hr=4 * 12, margin_hr=12)
    weight = torch.zeros(canvas.shape[1:])
    for tile in reversed(plan):
        y0, x0, y1, x1 = tile.hr_box
        board.add(tile, canvas[:, y0:y1, x0:x1])
        weight[y0:y1, x0:x1] += window(tile, 4 * 12, 12)
    torch.testing.assert_close(board.sum_y[:, None] * board.sum_x[None, :], weight, atol=1e-6, rtol=0)
    step = 1.0 if dtype == torch.float32 else 65535.0
    assert board.canvas.dtype == dtype
    assert torch.allclose(board.canvas.float() / step, canvas, atol=1e-5 + 2.0 / step)


def test_tile_canvas_clamps_each_tile_and_never_wraps() -> None:
    """Out-of-range values blend as their clamped selves; saturated overlaps stay at the top of
    uint16 (rounded shares that sum past 65535 must not wrap to black)."""
    plan = plan_tiles(30, 30, 20, 8, scale=2, align=1)
    board = TileCanvas(plan, (3, 60, 60), torch.uint16, overlap_hr=16, margin_hr=4)
    for tile in plan:
        y0, x0, y1, x1 = tile.hr_box
        board.add(tile, torch.full((3, y1 - y0, x1 - x0), 1.7))
    assert int(board.canvas.int().min()) >= 65535 - 2  # rounded shares: within 2 steps, and no wrap to 0


def test_tile_canvas_refuses_a_plan_with_gaps() -> None:
    plan = plan_tiles(90, 61, 40, 12, scale=4, align=2)
    with pytest.raises(ValueError, match="uncovered"):
        TileCanvas(plan[:1], (3, 360, 244), torch.float32, overlap_hr=48, margin_hr=12)


def _image(h: int = 96, w: int = 128) -> torch.Tensor:
    return torch.from_numpy(synthetic_photo(h, w, seed=1)).permute(2, 0, 1).contiguous()  # (3, h, w)


@pytest.fixture(scope="module")
def model():
    return random_model(tiny_model_config(), seed=0, std=0.15)


def test_tiled_one_step_matches_whole_image(model) -> None:
    lr = _image()
    sampler = SamplerConfig(steps=1, seed=3)
    whole = Upscaler(model, CPU, TileConfig(tile=0))(lr, sampler)
    bicubic_gap = psnr(whole, torch.nn.functional.interpolate(lr[None], scale_factor=4, mode="bicubic")[0].clamp(0, 1))
    assert bicubic_gap < 35  # the random model really changes the image
    tiled = Upscaler(model, CPU, TileConfig(tile=64, overlap=16))(lr, sampler)
    assert tiled.shape == whole.shape == (3, 4 * 96, 4 * 128)
    score = psnr(tiled, whole)
    print(f"tiled vs whole, 1-NFE: {score:.1f} dB (bicubic vs model {bicubic_gap:.1f} dB)")
    assert score >= 45.0


def test_tiled_multistep_samples_each_tile_whole(model) -> None:
    lr = _image(64, 96)
    sampler = SamplerConfig(steps=4, solver="dpmpp2m", seed=5)
    whole = Upscaler(model, CPU, TileConfig(tile=0))(lr, sampler)
    tiled = Upscaler(model, CPU, TileConfig(tile=48, overlap=16))(lr, sampler)
    score = psnr(tiled, whole)
    print(f"tiled vs whole, 4-step dpmpp2m: {score:.1f} dB")
    assert score >= 40.0


def _seam_ratio(img: torch.Tensor, seams: list[int], band: int, pool: int = 4) -> float:
    """Mean squared horizontal gradient of the image averaged over pool x pool blocks (so the
    pixel-level texture averages out and tile-scale steps show) in columns within `band` of a
    seam, divided by the same elsewhere."""
    low = torch.nn.functional.avg_pool2d(img[None] if img.dim() == 3 else img, pool)  # (1, 3, H/p, W/p)
    grad = (low[..., 1:] - low[..., :-1]).pow(2).mean(dim=(0, 1, 2))  # (W/p - 1,)
    near = torch.zeros_like(grad, dtype=torch.bool)
    for c in seams:
        near[max(c // pool - 1 - band, 0) : c // pool + band] = True  # band 0: the step into column c
    return float(grad[near].mean() / grad[~near].mean())


def test_no_visible_tile_grid(model) -> None:
    """Gradient energy across the seams, relative to elsewhere and to the whole-image run at the
    same columns, is unchanged by blended tiling; the measure does see a 4% brightness step."""
    lr = _image(48, 160)
    sampler = SamplerConfig(steps=1, seed=7)
    tiles = plan_tiles(48, 160, 48, 16, scale=4, align=2)
    seams = sorted({t.hr_box[1] + (4 * 16) // 2 for t in tiles if t.inner[1]})  # overlap centres
    tiled = Upscaler(model, CPU, TileConfig(tile=48, overlap=16))(lr, sampler)
    whole = Upscaler(model, CPU, TileConfig(tile=0))(lr, sampler)
    for pool in (4, 8):  # LR-pixel and token scale, where the pixel-level texture averages out
        content = _seam_ratio(whole, seams, band=0, pool=pool)
        good = _seam_ratio(tiled, seams, band=0, pool=pool) / content
        stepped = tiled.clone()
        for c in seams[::2]:
            stepped[..., c:] += 0.04  # what a tile that disagreed by 4% would look like
        bad = _seam_ratio(stepped, seams, band=0, pool=pool) / content
        print(f"seam gradient ratio (pool {pool}): blended {good:.3f}, with a 4% step {bad:.3f}")
        assert 0.98 < good < 1.02
        assert bad > 1.1
