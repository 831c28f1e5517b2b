"""Peers through ncnn: blob parsing, tiling, clean unavailability, and real outputs when installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from linearsr_cli.degrade import bicubic_downscale
from linearsr_cli.errors import ConfigError, WeightsError
from linearsr_cli.evaluate.metrics import psnr_y
from linearsr_cli.evaluate.peers import (
    PEER_SPECS,
    DownscaledPeer,
    NcnnModelSpec,
    NcnnPeer,
    PeerError,
    make_peer,
    tile_starts,
)
from linearsr_cli.ncnn_files import io_blobs, parse_param
from linearsr_cli.nn.dit import bicubic_upsample

PARAM = """7767517
4 4
Input            in0      0 1 data
Convolution      conv0    1 1 data c0 0=8 1=3
Split            split0   1 2 c0 c0a c0b
BinaryOp         add0     2 1 c0a c0b output 0=0
"""


def _reason(name: str) -> str:
    return make_peer(name).unavailable_reason()


def hr_lr(size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A crop of skimage's astronaut and its MATLAB-bicubic x4 LR, 8-bit quantised."""
    hr = data.astronaut()[96 : 96 + size, 160 : 160 + size].astype(np.float32).transpose(2, 0, 1) / 255
    lr = bicubic_downscale(torch.from_numpy(hr), 4).clamp(0, 1).numpy()
    return hr, np.round(lr * 255) / 255


def test_io_blobs_finds_input_and_unconsumed_output():
    assert io_blobs(parse_param(PARAM)) == ("data", "output")
    with pytest.raises(WeightsError):
        parse_param("not a param file\n1 1\nInput a 0 1 x\n")


@pytest.mark.parametrize("size,tile", [(10, 32), (64, 32), (70, 32), (33, 32)])
def test_tile_starts_cover_without_running_out(size, tile):
    starts = tile_starts(size, tile)
    covered = np.zeros(size, bool)
    for s in starts:
        assert 0 <= s and s + min(tile, size) <= size
        covered[s : s + tile] = True
    assert covered.all()


def test_missing_package_is_unavailable_with_reason():
    spec = NcnnModelSpec("ghost", 4, "no_such_ncnn_model_pkg", "m.param", "m.bin", "absent")
    peer = NcnnPeer(spec)
    assert not peer.available()
    assert "no-such-ncnn-model-pkg" in peer.unavailable_reason()
    with pytest.raises(PeerError):
        peer.upscale(np.zeros((3, 8, 8), np.float32))


def test_unknown_peer_and_bad_input():
    with pytest.raises(ConfigError):
        make_peer("esrgan-9000")
    with pytest.raises(ConfigError):
        make_peer("span").upscale(np.zeros((8, 8), np.float32))


@pytest.mark.skipif(bool(_reason("span")), reason=_reason("span") or "available")
def test_span_beats_bicubic_and_tiles_agree():
    hr, lr = hr_lr(128)
    peer = make_peer("span")
    sr = peer.upscale(lr)
    assert sr.shape == hr.shape and sr.dtype == np.float32
    assert 0.0 <= sr.min() and sr.max() <= 1.0
    bic = bicubic_upsample(torch.from_numpy(lr)[None], 4)[0].clamp(0, 1).numpy()
    assert psnr_y(sr, hr) > psnr_y(bic, hr) + 1.0
    tiled = NcnnPeer(PEER_SPECS["span", 4], tile=16).upscale(lr)  # 2 x 2 tiles, 16 px context
    assert np.abs(tiled - sr).max() < 1e-3
    np.testing.assert_allclose(peer.upscale(lr), sr)  # deterministic


@pytest.mark.skipif(bool(_reason("realesrgan")), reason=_reason("realesrgan") or "available")
def test_realesrgan_output_is_a_plausible_upscale():
    hr, lr = hr_lr(96)
    sr = make_peer("realesrgan").upscale(torch.from_numpy(lr))
    assert sr.shape == hr.shape
    assert psnr_y(sr, hr) > 22.0  # colours and layout right (GAN texture costs PSNR)
    assert np.abs(sr.mean(axis=(1, 2)) - hr.mean(axis=(1, 2))).max() < 0.03  # RGB order kept


@pytest.mark.parametrize("name", ["clearreality", "spankendata"])
def test_real_world_span_peers_are_plausible_upscales(name):
    if _reason(name):
        pytest.skip(_reason(name))
    hr, lr = hr_lr(96)
    sr = make_peer(name).upscale(lr)
    assert sr.shape == hr.shape
    assert psnr_y(sr, hr) > 22.0
    assert np.abs(sr.mean(axis=(1, 2)) - hr.mean(axis=(1, 2))).max() < 0.03  # RGB order kept


@pytest.mark.skipif(bool(_reason("span")), reason=_reason("span") or "available")
def test_peers_at_x2_native_span_and_downscaled_x4_models():
    hr = data.astronaut()[96:192, 160:256].astype(np.float32).transpose(2, 0, 1) / 255
    lr = np.round(bicubic_downscale(torch.from_numpy(hr), 2).clamp(0, 1).numpy() * 255) / 255
    span2 = make_peer("span", 2)
    assert isinstance(span2, NcnnPeer) and span2.spec.param.endswith("spanx2_ch52.param")
    sr = span2.upscale(lr)
    bic = bicubic_upsample(torch.from_numpy(lr)[None], 2)[0].clamp(0, 1).numpy()
    assert sr.shape == hr.shape and psnr_y(sr, hr) > psnr_y(bic, hr) + 1.0
    if not _reason("realesrgan"):
        down = make_peer("realesrgan", 2)
        assert isinstance(down, DownscaledPeer) and "Lanczos" in down.description
        out = down.upscale(lr)
        assert out.shape == hr.shape and out.dtype == np.float32 and psnr_y(out, hr) > 22.0
    with pytest.raises(ConfigError):
        make_peer("span", 8)
