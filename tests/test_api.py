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
from linearsr_cli.config import SamplerConfig, tiny_model_config
from linearsr_cli.errors import WeightsError
from tests.conftest import synthetic_photo
from tests.util import random_model

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
    model.prior_records = {n: {"origin": "test", "licence": "Apache-2.0"} for n in ("clean", "real")}
    return save_weights(tmp_path / "w.safetensors", model)


def test_readme_snippet_runs_as_written(tmp_path, monkeypatch, prior_weights):
    Image.fromarray((synthetic_photo(20, 24) * 255).astype(np.uint8)).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LINEARSR_WEIGHTS", str(prior_weights))
    scope: dict = {}
    exec(compile(readme_snippet(), "README.md", "exec"), scope)
    big = scope["big"]
    assert isinstance(big, Image.Image) and big.size == (96, 80) and big.mode == "RGB"


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
