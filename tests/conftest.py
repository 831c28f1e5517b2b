"""Shared fixtures: a tiny random LinearSR weights file (no downloads) and synthetic images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from linearsr_cli.checkpoints import save_weights
from tests.util import random_model, tiny_model_config


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A x4 weights file of the tiny test config with random (non-zero-head) parameters."""
    path = tmp_path_factory.mktemp("weights") / "tiny-x4.safetensors"
    save_weights(path, random_model(tiny_model_config(), seed=0, std=0.15))
    return path


def synthetic_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An (h, w, 3) float image in [0, 1] with smooth gradients, edges and a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy /= max(h - 1, 1)
    xx /= max(w - 1, 1)
    r = 0.5 + 0.4 * np.sin(7 * xx + 3 * yy)
    g = 0.5 + 0.3 * np.cos(11 * yy) * (xx > 0.4)
    b = xx * yy
    img = np.stack([r, g, b], axis=-1) + 0.04 * rng.standard_normal((h, w, 3))
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.fixture()
def photo() -> np.ndarray:
    return synthetic_photo(24, 32)
