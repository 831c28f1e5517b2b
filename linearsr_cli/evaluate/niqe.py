"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan, Bovik 2013, IEEE SPL 20(3)).

A blind score: fit a multivariate Gaussian to natural-scene-statistics features of 96x96 patches
of the test image and measure its distance to the MVG of a corpus of pristine photos. Lower is
better. The pristine MVG (mean, covariance, and the 7x7 Gaussian window) is the one published
with the paper's MATLAB release, as bundled in basicsr's sdist as `niqe_pris_params.npz`
(scripts/fetch_metric_data.sh fetches it). This module is written from the paper; images are
(3, H, W) RGB in [0, 1] and are scored on BT.601 luma in [0, 255], rounded to 8 bits, like the
MATLAB reference which reads 8-bit files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import correlate
from scipy.special import gamma as gamma_fn

from linearsr_cli.errors import ConfigError
from linearsr_cli.evaluate.metrics import rgb_to_y

PARAMS_FILE = "niqe_pris_params.npz"
BLOCK = 96
_ALPHA_GRID = np.arange(0.2, 10.0 + 1e-9, 0.001)
# rho(alpha) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)), the generalised-Gaussian ratio E|x|^2 / E[x^2]
_RHO_GRID = gamma_fn(2.0 / _ALPHA_GRID) ** 2 / (gamma_fn(1.0 / _ALPHA_GRID) * gamma_fn(3.0 / _ALPHA_GRID))
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, main and anti diagonal


@dataclass(frozen=True)
class NiqeModel:
    """The pristine multivariate Gaussian: mean (36,), covariance (36, 36), window (7, 7)."""

    mu: np.ndarray
    cov: np.ndarray
    window: np.ndarray


def load_niqe_model(path: str | Path) -> NiqeModel:
    """Read the pristine parameters from an .npz with mu_pris_param, cov_pris_param, gaussian_window."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"NIQE parameters not found at {path} (run scripts/fetch_metric_data.sh)")
    with np.load(path) as data:
        try:
            mu = np.asarray(data["mu_pris_param"], dtype=np.float64).reshape(-1)
            cov = np.asarray(data["cov_pris_param"], dtype=np.float64)
            window = np.asarray(data["gaussian_window"], dtype=np.float64)
        except KeyError as exc:
            raise ConfigError(f"{path}: not a NIQE parameter file (lacks {exc})") from None
    if mu.shape != (36,) or cov.shape != (36, 36) or window.ndim != 2:
        raise ConfigError(f"{path}: unexpected NIQE parameter shapes {mu.shape}, {cov.shape}")
    return NiqeModel(mu=mu, cov=cov, window=window)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB imresize 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of MATLAB imresize bicubic along one axis, antialiased when shrinking.

    Output pixel i samples input coordinate (i + 0.5) / s - 0.5; when shrinking (s < 1) the
    kernel is stretched by 1 / s; indices outside the image are mirrored (MATLAB 'symmetric').
    """
    s = n_out / n_in
    width = 4.0 / s if s < 1 else 4.0
    centers = (np.arange(n_out) + 0.5) / s - 0.5  # (n_out,)
    taps = int(np.ceil(width)) + 2
    first = np.floor(centers - width / 2).astype(int) + 1  # (n_out,)
    idx = first[:, None] + np.arange(taps)[None, :]  # (n_out, taps)
    dist = centers[:, None] - idx
    weights = s * _cubic(s * dist) if s < 1 else _cubic(dist)  # (n_out, taps)
    weights /= weights.sum(axis=1, keepdims=True)
    period = 2 * n_in
    mirrored = np.mod(idx, period)
    mirrored = np.where(mirrored >= n_in, period - 1 - mirrored, mirrored)
    mat = np.zeros((n_out, n_in))
    np.add.at(mat, (np.repeat(np.arange(n_out), taps), mirrored.ravel()), weights.ravel())
    return mat


def imresize(img: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """MATLAB-style bicubic resize of a 2-D array (antialiased when shrinking), separable."""
    rows = resize_matrix(img.shape[0], out_hw[0])  # (H', H)
    cols = resize_matrix(img.shape[1], out_hw[1])  # (W', W)
    return rows @ img.astype(np.float64) @ cols.T  # (H', W')


def mscn(img: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted contrast-normalised coefficients (I - mu) / (sigma + 1) (Mittal 2012 eq. 1)
    with a Gaussian-weighted local mean and deviation, replicate borders; returns (mscn, sigma)."""
    mu = correlate(img, window, mode="nearest")
    var = correlate(img * img, window, mode="nearest") - mu * mu
    sigma = np.sqrt(np.abs(var))
    return (img - mu) / (sigma + 1.0), sigma


def fit_aggd(x: np.ndarray) -> tuple[float, float, float]:
    """Moment-matching fit of an asymmetric generalised Gaussian (Lasmar et al. 2009): (alpha, beta_l, beta_r)."""
    x = x.ravel()
    left, right = x[x < 0], x[x > 0]
    std_l = np.sqrt(np.mean(left**2)) if left.size else 0.0
    std_r = np.sqrt(np.mean(right**2)) if right.size else 0.0
    mean_sq = np.mean(x**2)
    if std_l == 0 or std_r == 0 or mean_sq == 0:
        return float("nan"), float("nan"), float("nan")
    g = std_l / std_r
    r_hat = np.mean(np.abs(x)) ** 2 / mean_sq
    r_norm = r_hat * (g**3 + 1.0) * (g + 1.0) / (g**2 + 1.0) ** 2
    alpha = float(_ALPHA_GRID[np.argmin((_RHO_GRID - r_norm) ** 2)])
    k = np.sqrt(gamma_fn(1.0 / alpha) / gamma_fn(3.0 / alpha))
    return alpha, float(std_l * k), float(std_r * k)


def block_features(coeffs: np.ndarray) -> np.ndarray:
    """The 18 NIQE features of one patch of MSCN coefficients (Mittal 2013, sec. III-B/C).

    GGD shape and scale of the coefficients, then AGGD (shape, mean, left and right scale) of
    the products of each coefficient with its 4 neighbours.
    """
    alpha, bl, br = fit_aggd(coeffs)
    feats = [alpha, (bl + br) / 2.0]
    for dy, dx in _SHIFTS:
        pair = coeffs * np.roll(coeffs, shift=(dy, dx), axis=(0, 1))  # circular, as MATLAB circshift
        a, pl, pr = fit_aggd(pair)
        mean = (pr - pl) * gamma_fn(2.0 / a) / gamma_fn(1.0 / a)
        feats += [a, mean, pl, pr]
    return np.asarray(feats, dtype=np.float64)


def patch_features(y: np.ndarray, window: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """(patches, 36) features: 18 at full scale on block x block patches, 18 at half scale."""
    h, w = (y.shape[0] // block) * block, (y.shape[1] // block) * block
    if h == 0 or w == 0:
        raise ConfigError(f"NIQE needs at least {block}x{block} pixels, got {y.shape[0]}x{y.shape[1]}")
    img = y[:h, :w].astype(np.float64)
    scales = []
    for level in range(2):
        coeffs, _ = mscn(img, window)
        b = block // (2**level)
        rows = [
            block_features(coeffs[i : i + b, j : j + b])
            for i in range(0, coeffs.shape[0] - b + 1, b)
            for j in range(0, coeffs.shape[1] - b + 1, b)
        ]
        scales.append(np.stack(rows))  # (patches, 18), row-major patch order at both scales
        img = imresize(img, (img.shape[0] // 2, img.shape[1] // 2))
    return np.concatenate(scales, axis=1)  # (patches, 36)


def niqe_from_y(y: np.ndarray, model: NiqeModel) -> float:
    """NIQE of a luma image in [0, 255]: sqrt((mu_p - mu_d)^T ((S_p + S_d) / 2)^+ (mu_p - mu_d)) (Mittal 2013 eq. 10)."""
    feats = patch_features(y, model.window)
    feats = feats[~np.isnan(feats).any(axis=1)]
    if feats.shape[0] < 2:
        raise ConfigError("NIQE: too few usable patches (image too small or flat)")
    mu_d = feats.mean(axis=0)
    cov_d = np.cov(feats, rowvar=False)
    diff = model.mu - mu_d
    inv = np.linalg.pinv((model.cov + cov_d) / 2.0)
    return float(np.sqrt(max(diff @ inv @ diff, 0.0)))


def niqe(img: np.ndarray, model: NiqeModel, border: int = 0) -> float:
    """NIQE of a (3, H, W) RGB image in [0, 1] on 8-bit BT.601 luma, `border` pixels cropped."""
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ConfigError(f"expected a (3, H, W) image, got shape {arr.shape}")
    y = np.round(rgb_to_y(np.clip(arr, 0.0, 1.0)))
    if border:
        y = y[border:-border, border:-border]
    return niqe_from_y(y, model)
