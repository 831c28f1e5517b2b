"""ST-LPIPS: our AlexNet module with the wheel's weights equals the stlpips-pytorch package, and
behaves like a distance."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from linearsr_cli.errors import ConfigError
from linearsr_cli.perceptual import LpipsScorer, load_stlpips, weights_path


def _reason() -> str:
    try:
        weights_path()
    except ConfigError as exc:
        return str(exc)
    return ""


pytestmark = pytest.mark.skipif(bool(_reason()), reason=_reason() or "available")


def _photo(size: int = 96) -> torch.Tensor:
    img = np.asarray(Image.open("samples/astronaut.png").convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(img[:size, :size].transpose(2, 0, 1).copy())[None]  # (1, 3, s, s)


def _package_lpips(monkeypatch):
    """The package's own ST-LPIPS. Its modules import torchvision, IPython and torchsummary at the
    top but the shift-tolerant AlexNet uses none of them, so inert stand-ins are enough."""
    for name in ("torchvision", "IPython", "torchsummary"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["torchvision"].models = types.SimpleNamespace()
    sys.modules["IPython"].embed = lambda *a, **k: None
    sys.modules["torchsummary"].summary = lambda *a, **k: None
    for mod in [m for m in sys.modules if m.startswith("stlpips_pytorch")]:
        monkeypatch.delitem(sys.modules, mod)
    from stlpips_pytorch import stlpips

    return stlpips.LPIPS(net="alex", variant="shift_tolerant", verbose=False).eval()


def test_matches_the_package_on_image_pairs(monkeypatch):
    ref = _package_lpips(monkeypatch)
    ours = load_stlpips()
    img = _photo()
    gen = torch.Generator().manual_seed(0)
    others = [
        (img + 0.05 * torch.randn(img.shape, generator=gen)).clamp(0, 1),
        torch.nn.functional.avg_pool2d(img, 3, 1, 1, count_include_pad=False),
        img.roll(2, dims=-1),
        torch.rand(img.shape, generator=gen),
    ]
    with torch.no_grad():
        for other in others:
            expected = float(ref(2 * img - 1, 2 * other - 1).flatten()[0])
            assert float(ours(img, other)[0]) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_is_a_sensible_distance():
    score = LpipsScorer()
    img = _photo(64)[0].numpy()
    noisy = np.clip(img + 0.1 * np.random.default_rng(0).standard_normal(img.shape), 0, 1).astype(np.float32)
    assert score(img, img) == pytest.approx(0.0, abs=1e-7)
    assert score(img, noisy) == pytest.approx(score(noisy, img), rel=1e-5)
    shifted = np.roll(img, 1, axis=-1)
    assert score(img, shifted) < score(img, noisy)  # shift-tolerant: a 1-px shift is nearly free
