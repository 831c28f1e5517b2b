"""Bounded memory for camera-sized photos (issue 24 part 4), on small images with the limits
lowered: the noise field that tiles crop, the bicubic region of a tile, the banded resample,
the banded 8/16-bit conversion, and the compact (uint16) canvas of a tiled run. Each piece is
checked against the whole-canvas computation it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import linearsr_cli.engine.resize as resize_mod
import linearsr_cli.imageio as imageio_mod
import linearsr_cli.sampling.noise as noise_mod
from linearsr_cli.config import SamplerConfig, TileConfig
from linearsr_cli.engine.device import DevicePlan
from linearsr_cli.engine.resize import axis_weights, resample
from linearsr_cli.engine.upscaler import Upscaler
from linearsr_cli.imageio import ImageData, _to_array
from linearsr_cli.nn.dit import bicubic_region, bicubic_upsample
from linearsr_cli.pixels import as_float, quantize
from linearsr_cli.sampling.noise import NoiseField, block_seed
from linearsr_cli.sampling.samplers import draw_noise
from tests.conftest import synthetic_photo
from tests.util import random_model, tiny_model_config

CPU = DevicePlan(torch.device("cpu"), None)


def _photo(h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(synthetic_photo(h, w, seed=seed)).permute(2, 0, 1).contiguous()  # (3, h, w)


def test_small_noise_fields_are_the_noise_every_release_drew() -> None:
    field = NoiseField((1, 3, 40, 56), seed=7)
    assert not field.blockwise
    assert torch.equal(field.full(), draw_noise((1, 3, 40, 56), 7))
    assert torch.equal(field.crop((3, 5, 20, 50)), draw_noise((1, 3, 40, 56), 7)[..., 3:20, 5:50])


def test_blockwise_noise_crops_agree_whatever_the_tiling(monkeypatch) -> None:
    monkeypatch.setattr(noise_mod, "WHOLE_NOISE_PIXELS", 100)
    monkeypatch.setattr(noise_mod, "BLOCK", 16)
    field = NoiseField((1, 3, 70, 90), seed=3)
    assert field.blockwise
    whole = field.full()
    assert whole.shape == (1, 3, 70, 90)
    assert abs(float(whole.mean())) < 0.1 and abs(float(whole.std()) - 1.0) < 0.05
    for box in [(0, 0, 70, 90), (5, 7, 33, 61), (16, 16, 32, 32), (69, 89, 70, 90)]:
        y0, x0, y1, x1 = box
        assert torch.equal(field.crop(box), whole[..., y0:y1, x0:x1])
    assert not torch.equal(whole[..., :16, :16], whole[..., :16, 16:32])  # blocks are not repeats
    assert torch.equal(NoiseField((1, 3, 70, 200), seed=3).crop((0, 0, 70, 90)), whole)  # canvas size does not matter
    assert len({block_seed(s, r, c) for s in range(4) for r in range(50) for c in range(50)}) == 4 * 50 * 50


def test_bicubic_region_is_the_whole_image_upsample_cropped() -> None:
    lr = torch.rand(1, 3, 37, 53)
    for scale in (2, 4):
        full = bicubic_upsample(lr, scale)
        for y0, x0, y1, x1 in [(0, 0, 10, 10), (5, 7, 30, 40), (20, 30, 37, 53), (1, 1, 36, 52)]:
            region = bicubic_region(lr, (y0, x0, y1, x1), scale)
            torch.testing.assert_close(region, full[..., y0 * scale : y1 * scale, x0 * scale : x1 * scale],
                                       atol=1e-6, rtol=0)


def test_quantize_and_as_float_round_trip() -> None:
    x = torch.rand(3, 9, 11)
    for dtype, step in ((torch.uint16, 65535.0), (torch.uint8, 255.0)):
        q = quantize(x.clone(), dtype)
        assert q.dtype == dtype
        assert float((as_float(q) - x).abs().max()) <= 0.5 / step + 1e-7
    assert float(quantize(torch.tensor([-0.5, 1.5]), torch.float32).abs().max()) == 1.0


@pytest.mark.parametrize(("size_in", "size_out"), [(97, 31), (64, 64), (50, 75), (1000, 333), (7, 1)])
def test_axis_weights_are_pytorchs_antialiased_bicubic(size_in: int, size_out: int) -> None:
    x = torch.rand(1, 1, size_in, 5)
    ref = F.interpolate(x, size=(size_out, 5), mode="bicubic", antialias=True, align_corners=False)[0, 0]
    starts, weights = axis_weights(size_in, size_out)
    mine = torch.stack([weights[i, : min(weights.shape[1], size_in - starts[i])] @ x[0, 0, starts[i] : starts[i] + weights.shape[1]]
                        for i in range(size_out)])
    torch.testing.assert_close(mine, ref, atol=5e-5, rtol=0)  # PyTorch places the taps in float32, we in float64


def _reference_resample(rgb: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The one-piece resample the banded one replaces: F.interpolate over the whole image."""
    lin = resize_mod.srgb_to_linear(rgb.clamp(0, 1))
    out = F.interpolate(lin[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0]
    return resize_mod.linear_to_srgb(out)


@pytest.mark.parametrize("with_alpha", [False, True])
def test_banded_resample_matches_the_whole_image_resample(monkeypatch, with_alpha: bool) -> None:
    monkeypatch.setattr(resize_mod, "BAND_ROWS", 7)
    rgb = _photo(90, 70)
    size = (61, 47)
    alpha = torch.ones(1, 90, 70) if with_alpha else None
    out, a = resample(rgb, alpha, size)
    assert out.shape == (3, *size) and out.dtype == torch.float32
    torch.testing.assert_close(out, _reference_resample(rgb, size), atol=2e-5, rtol=0)
    if with_alpha:
        torch.testing.assert_close(a, torch.ones(1, *size), atol=1e-5, rtol=0)
    canvas = quantize(rgb.clone(), torch.uint16)  # a compact canvas stays compact, within one 16-bit step
    out16, _ = resample(canvas, alpha, size)
    assert out16.dtype == torch.uint16
    assert float((as_float(out16) - out).abs().max()) <= 2.0 / 65535


@pytest.mark.parametrize(("fmt", "gray", "bit_depth", "alpha"), [
    ("png", False, 8, False), ("png", False, 16, True), ("jpg", False, 8, True), ("png", True, 16, False),
    ("webp", True, 8, False),
])
def test_banded_conversion_of_a_uint16_canvas_matches_float(monkeypatch, fmt, gray, bit_depth, alpha) -> None:
    monkeypatch.setattr(imageio_mod, "ARRAY_BAND_VALUES", 50)  # a few rows per band
    rgb = _photo(23, 31)
    a = torch.rand(1, 23, 31) if alpha else None
    img = ImageData(rgb=rgb, alpha=a, gray=gray, bit_depth=bit_depth, format=fmt)
    ref, depth = _to_array(img, fmt)
    compact, depth16 = _to_array(ImageData(rgb=quantize(rgb.clone(), torch.uint16), alpha=a, gray=gray,
                                           bit_depth=bit_depth, format=fmt), fmt)
    assert depth == depth16 and ref.shape == compact.shape and ref.dtype == compact.dtype
    assert int(np.abs(ref.astype(int) - compact.astype(int)).max()) <= 1
    peak = 65535.0 if depth == 16 else 255.0
    chans = [(rgb * imageio_mod.LUMA).sum(0, keepdim=True)] if gray and fmt != "webp" else [rgb]
    if alpha and fmt == "jpg":
        chans = [chans[0] * a + (1 - a)]
    elif alpha:
        chans.append(a)
    expect = np.rint(torch.cat(chans).permute(1, 2, 0).numpy() * peak)
    assert np.array_equal(ref, expect.astype(ref.dtype))  # the banded float path is the one-piece one


@pytest.fixture(scope="module")
def model():
    return random_model(tiny_model_config(), seed=0, std=0.15)


@pytest.mark.parametrize("steps", [1, 3])
def test_compact_tiled_run_is_the_float_run_quantised(model, steps: int) -> None:
    lr = _photo(48, 80)
    sampler = SamplerConfig(steps=steps, solver="dpmpp2m", seed=2)
    up = Upscaler(model, CPU, TileConfig(tile=40, overlap=8))
    assert up.tile_count(48, 80) > 1
    floats = up(lr, sampler)
    compact = up(lr, sampler, compact=True)
    assert floats.dtype == torch.float32 and compact.dtype == torch.uint16
    assert float((as_float(compact) - floats).abs().max()) <= 2.0 / 65535 + 1e-6  # TileCanvas's rounding bound
    whole = Upscaler(model, CPU, TileConfig(tile=0))(lr, sampler, compact=True)
    assert whole.dtype == torch.float32  # an image that fits in one pass keeps the float path


def test_tiled_run_with_blockwise_noise_needs_no_whole_canvas_draw(model, monkeypatch) -> None:
    """Past WHOLE_NOISE_PIXELS a tiled run draws only the noise blocks its tiles touch; the
    result is still seamless against the same noise drawn whole."""
    monkeypatch.setattr(noise_mod, "WHOLE_NOISE_PIXELS", 1000)
    monkeypatch.setattr(noise_mod, "BLOCK", 32)
    drawn: list[tuple[int, ...]] = []
    real_draw = noise_mod.draw_noise
    monkeypatch.setattr(noise_mod, "draw_noise", lambda shape, seed: drawn.append(tuple(shape)) or real_draw(shape, seed))
    lr = _photo(48, 80)
    sampler = SamplerConfig(steps=3, solver="dpmpp2m", seed=4)
    up = Upscaler(model, CPU, TileConfig(tile=40, overlap=8))
    tiled = up(lr, sampler)
    assert drawn and all(shape[-2:] == (32, 32) for shape in drawn)
    given = NoiseField((1, 3, 4 * 48, 4 * 80), seed=4).full()
    torch.testing.assert_close(up(lr, sampler, noise=given), tiled, atol=1e-6, rtol=0)
