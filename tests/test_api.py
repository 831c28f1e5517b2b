"""The Python API: the README's snippet runs as written; arrays and PIL images keep their kind;
upscale_file is the CLI's per-file path."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from linearsr_cli import api
from linearsr_cli.checkpoints import save_weights
from linearsr_cli.config import SamplerConfig
from linearsr_cli.errors import WeightsError
from tests.conftest import synthetic_photo
from tests.util import random_model, tiny_model_config

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_snippet() -> str:
    text = README.read_text()
    match = re.search(r"<!-- python-api:[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its python-api block"
    return match.group(1)


@pytest.fixture()
def prior_weights(tmp_path: Path) -> Path:
    cfg = tiny_model_config(prior_channels=6, prior_blocks=1).with_prior(("clean", "real"), (0,))
    model = random_model(cfg, seed=1)
    records = {n: {"origin": "test", "licence": "Apache-2.0"} for n in ("clean", "real")}
    return save_weights(tmp_path / "w.safetensors", model, priors=records)


def test_readme_snippet_runs_as_written(tmp_path, monkeypatch, prior_weights):
    Image.fromarray((synthetic_photo(20, 24) * 255).astype(np.uint8)).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LINEARSR_WEIGHTS", str(prior_weights))
    scope: dict = {}
    exec(compile(readme_snippet(), "README.md", "exec"), scope)
    big = scope["big"]
    assert isinstance(big, Image.Image) and big.size == (96, 80) and big.mode == "RGB"
    web = scope["web"]
    assert isinstance(web, Image.Image) and web.size == (72, 60) and web.mode == "RGB"


def test_arrays_and_images_keep_their_kind(tiny_weights: Path, tmp_path: Path):
    sr = api.load(tiny_weights, device="cpu")
    rgb8 = (synthetic_photo(9, 7) * 255).astype(np.uint8)
    out = sr.upscale(rgb8)
    assert out.shape == (36, 28, 3) and out.dtype == np.uint8
    assert np.array_equal(out, sr.upscale(rgb8))  # seeded: deterministic
    rgba16 = np.concatenate([rgb8.astype(np.uint16) * 257, np.full((9, 7, 1), 65535, np.uint16)], axis=2)
    out16 = sr.upscale(rgba16)
    assert out16.shape == (36, 28, 4) and out16.dtype == np.uint16 and out16[..., 3].min() > 60000
    gray = sr.upscale(rgb8[..., 0].astype(np.float32) / 255)
    assert gray.shape == (36, 28) and gray.dtype == np.float32
    pil = sr.upscale(Image.fromarray(rgb8).convert("LA"))
    assert pil.mode == "LA" and pil.size == (28, 36)
    with pytest.raises(Exception, match="arrays must be"):
        sr.upscale(np.zeros((4, 4, 5), np.uint8))
    src = tmp_path / "a.png"
    Image.fromarray(rgb8).save(src)
    rec = sr.upscale_file(src, tmp_path / "out" / "a.png")
    assert rec.status == "ok" and Image.open(tmp_path / "out" / "a.png").size == (28, 36)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a.png")), sr.upscale(rgb8))
    assert sr.upscale_file(src, tmp_path / "out" / "a.png").status == "skipped"


def test_tta_and_scale_options(tiny_weights: Path, monkeypatch):
    sr = api.load(tiny_weights, device="cpu")
    rgb = torch.rand(3, 7, 5)
    plain, tta = sr.upscale_rgb(rgb), sr.upscale_rgb(rgb, tta=True)
    assert plain.shape == tta.shape == (3, 28, 20) and not torch.equal(plain, tta)
    assert torch.equal(tta, sr.upscaler(rgb, SamplerConfig(steps=1), tta=True))
    monkeypatch.delenv("LINEARSR_WEIGHTS", raising=False)
    with pytest.raises(WeightsError, match="no x3 LinearSR model is shipped"):
        api.load(scale=3)


def test_options_are_typed_keywords(tiny_weights: Path):
    """upscale and upscale_rgb name their options: a misspelt one is a TypeError, not ignored."""
    sr = api.load(tiny_weights, device="cpu")
    with pytest.raises(TypeError, match="outscal"):
        sr.upscale(np.zeros((4, 4, 3), np.uint8), outscal=2)
    with pytest.raises(TypeError, match="positional"):
        sr.upscale_rgb(torch.rand(3, 4, 4), "perceptual")  # keyword-only
    assert sr.upscale_rgb(torch.rand(3, 4, 4), outscale=2).shape == (3, 8, 8)


def test_pil_modes_and_bit_depth_are_kept(tiny_weights: Path):
    """16-bit gray stays 16-bit and keeps its level (it came back almost white at 8 bits)."""
    sr = api.load(tiny_weights, device="cpu")
    gray = (synthetic_photo(10, 12)[..., 0] * 65535).astype(np.uint16)
    i16 = Image.fromarray(gray)
    assert i16.mode == "I;16"
    out = sr.upscale(i16)
    assert out.mode == "I;16" and out.size == (48, 40)
    assert abs(np.asarray(out).astype(np.float64).mean() - gray.mean()) < 0.05 * 65535
    assert np.asarray(out).max() > 255  # really 16 bits, not 8 bits stretched
    i32 = sr.upscale(Image.fromarray(gray.astype(np.int32), mode="I"))
    assert i32.mode == "I" and abs(np.asarray(i32).mean() - gray.mean()) < 0.05 * 65535
    rgb = (synthetic_photo(10, 12) * 255).astype(np.uint8)
    for mode in ("L", "LA", "RGB", "RGBA"):
        im = Image.fromarray(rgb).convert(mode)
        res = sr.upscale(im)
        assert res.mode == mode and res.size == (48, 40)
        assert abs(np.asarray(res, np.float64).mean() - np.asarray(im, np.float64).mean()) < 0.05 * 255
    rgb16 = (synthetic_photo(10, 12) * 65535).astype(np.uint16)
    res16 = sr.upscale(rgb16)
    assert res16.dtype == np.uint16 and res16.shape == (40, 48, 3)
    assert abs(res16.astype(np.float64).mean() - rgb16.mean()) < 0.05 * 65535
    la16 = np.stack([gray, np.full_like(gray, 65535)], axis=2)
    assert sr.upscale(la16).shape == (40, 48, 2)


def test_pil_exif_orientation_is_applied_like_a_file(tiny_weights: Path, tmp_path: Path):
    sr = api.load(tiny_weights, device="cpu")
    im = Image.fromarray((synthetic_photo(6, 10) * 255).astype(np.uint8))  # 10 wide, 6 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(tmp_path / "r.jpg") as opened:
        from_pil = sr.upscale(opened)
    from_path = sr.upscale(tmp_path / "r.jpg")
    assert from_pil.size == from_path.size == (24, 40)
    assert np.array_equal(np.asarray(from_pil), np.asarray(from_path))


def test_api_outscale_width_fit_and_input(tiny_weights: Path, prior_weights: Path, tmp_path: Path):
    sr = api.load(tiny_weights, device="cpu")
    rgb = (synthetic_photo(10, 20) * 255).astype(np.uint8)
    assert sr.upscale(rgb, outscale=2.5).shape == (25, 50, 3)
    assert sr.upscale(rgb, width=30).shape == (15, 30, 3)
    assert sr.upscale(rgb, width=40, height=40).shape == (20, 40, 3)  # contain
    assert sr.upscale(rgb, width=40, height=40, fit="cover").shape == (40, 40, 3)
    with pytest.raises(Exception, match="does not apply|no prior"):
        sr.upscale(rgb, input="real")
    pr = api.load(prior_weights, device="cpu")
    assert not np.array_equal(pr.upscale(rgb, input="real"), pr.upscale(rgb, input="clean"))
    src = tmp_path / "a.png"
    Image.fromarray(rgb).save(src)
    rec = pr.upscale_file(src, tmp_path / "o.png", outscale=3, input="real")
    assert rec.status == "ok" and rec.size == [60, 30] and rec.input_kind == "real"
    from linearsr_cli.engine.record import loads
    from linearsr_cli.imageio import read_record

    stored = loads(read_record(tmp_path / "o.png"))  # the requested setting and what it resolved to
    assert stored["settings"]["input"] == "real" and stored["image"]["prior"] == "real"
    assert stored["image"]["why"] == "--input"
    assert pr.upscale_file(src, tmp_path / "o.png", outscale=3, input="real").status == "skipped"
    assert pr.upscale_file(src, tmp_path / "o.png", outscale=2, input="real").note.startswith("redone")
    with pytest.raises(Exception, match="--tile must be auto"):
        api.load(tiny_weights, tile="big")
