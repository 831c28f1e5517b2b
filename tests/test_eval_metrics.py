"""Metrics of `linearsr eval`: PSNR/SSIM on Y, NIQE (own implementation) and BRISQUE."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage import data

from linearsr_cli.errors import ConfigError
from linearsr_cli.evaluate.metrics import psnr_y, ssim_y
from linearsr_cli.evaluate.niqe import fit_aggd, imresize, load_niqe_model, niqe, resize_matrix
from linearsr_cli.evaluate.noref import DEFAULT_DATA_DIR, NoReference

NIQE_FILE = DEFAULT_DATA_DIR / "niqe_pris_params.npz"
needs_niqe = pytest.mark.skipif(
    not NIQE_FILE.is_file(), reason=f"{NIQE_FILE} missing: run scripts/fetch_metric_data.sh"
)


def _brisque_reason() -> str:
    return NoReference.load(DEFAULT_DATA_DIR, ("brisque",)).unavailable.get("brisque", "")


def gray_rgb(v: np.ndarray) -> np.ndarray:
    return np.repeat(v[None], 3, axis=0)  # (3, H, W), R = G = B


def photo() -> np.ndarray:
    """skimage's astronaut, a real photograph shipped with scikit-image, (3, 512, 512) in [0, 1]."""
    return data.astronaut().astype(np.float64).transpose(2, 0, 1) / 255.0


def distorted(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    blurred = np.stack([gaussian_filter(c, 2.5) for c in img])
    noisy = np.clip(img + np.random.default_rng(0).normal(0.0, 0.08, img.shape), 0.0, 1.0)
    return blurred, noisy


def test_psnr_identical_is_infinite_and_ssim_one():
    img = np.random.default_rng(1).random((3, 40, 40))
    assert math.isinf(psnr_y(img, img))
    assert ssim_y(img, img) == pytest.approx(1.0)


def test_psnr_of_a_known_mse():
    # gray: Y = 16 + 219 v, so an offset d in v is 219 d in Y and PSNR = 20 log10(255 / (219 d))
    v = np.random.default_rng(2).uniform(0.2, 0.7, (32, 32))
    d = 0.02
    got = psnr_y(gray_rgb(v + d), gray_rgb(v), border=4)
    assert got == pytest.approx(20 * math.log10(255.0 / (219.0 * d)), abs=1e-6)


def test_psnr_border_crop_ignores_edges():
    v = np.full((32, 32), 0.5)
    w = v.copy()
    w[:4] = 0.9  # a bad top border only
    assert math.isinf(psnr_y(gray_rgb(w), gray_rgb(v), border=4))
    assert not math.isinf(psnr_y(gray_rgb(w), gray_rgb(v), border=0))


def test_matlab_bicubic_half_weights_and_constant():
    # MATLAB imresize(x, 0.5, 'bicubic'): taps 1/2 * Keys(a=-0.5) at distances 0.25..1.75 * 2
    row = resize_matrix(16, 8)[3]
    expected = np.array([-0.0234375, -0.0703125, 0.2265625, 0.8671875]) / 2
    np.testing.assert_allclose(row[3:7], expected, atol=1e-7)
    np.testing.assert_allclose(row[7:11], expected[::-1], atol=1e-7)
    flat = np.full((20, 30), 77.0)
    np.testing.assert_allclose(imresize(flat, (10, 15)), 77.0)
    np.testing.assert_allclose(resize_matrix(13, 7).sum(axis=1), 1.0)


def test_aggd_fit_recovers_the_shape():
    rng = np.random.default_rng(3)
    alpha_gauss, bl, br = fit_aggd(rng.normal(0.0, 2.0, 200_000))
    assert alpha_gauss == pytest.approx(2.0, abs=0.05)
    assert bl == pytest.approx(br, rel=0.03)
    alpha_lap, _, _ = fit_aggd(rng.laplace(0.0, 1.0, 200_000))
    assert alpha_lap == pytest.approx(1.0, abs=0.05)


@needs_niqe
def test_niqe_sharp_photo_beats_blurred_and_noisy():
    model = load_niqe_model(NIQE_FILE)
    img = photo()
    blurred, noisy = distorted(img)
    sharp = niqe(img, model)
    assert 1.0 < sharp < 6.0
    assert niqe(blurred, model) > sharp + 1.0
    assert niqe(noisy, model) > sharp + 1.0


@needs_niqe
def test_niqe_needs_one_patch():
    model = load_niqe_model(NIQE_FILE)
    with pytest.raises(ConfigError):
        niqe(np.random.default_rng(0).random((3, 64, 64)), model)


@pytest.mark.skipif(bool(_brisque_reason()), reason=_brisque_reason() or "available")
def test_brisque_sharp_photo_beats_blurred_and_noisy():
    noref = NoReference.load(DEFAULT_DATA_DIR, ("brisque",))
    img = photo()
    blurred, noisy = distorted(img)
    sharp = noref.score(img)["brisque"]
    assert sharp is not None
    assert noref.score(blurred)["brisque"] > sharp + 10
    assert noref.score(noisy)["brisque"] > sharp + 10


def test_missing_metric_data_is_reported_not_raised(tmp_path):
    noref = NoReference.load(tmp_path)
    assert set(noref.unavailable) == {"niqe", "brisque"}
    assert "fetch_metric_data" in noref.unavailable["niqe"]
    assert noref.score(np.zeros((3, 96, 96))) == {"niqe": None, "brisque": None}


def test_bad_niqe_file_is_a_config_error(tmp_path):
    bad = tmp_path / "niqe_pris_params.npz"
    np.savez(bad, something=np.zeros(3))
    with pytest.raises(ConfigError, match="lacks"):
        load_niqe_model(bad)
