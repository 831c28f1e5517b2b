"""Full-reference metrics on the luma channel, as SR papers report them.

Images are (3, H, W) float tensors or arrays in [0, 1], RGB. Y is ITU-R BT.601 luma in
[16, 235] / 255 (MATLAB's rgb2ycbcr), a `border` of pixels is cropped from every side.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of a (3, H, W) RGB array in [0, 1], scaled to [0, 255] (MATLAB rgb2ycbcr)."""
    r, g, b = (img[i].astype(np.float64) * 255.0 for i in range(3))
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def _as_y(img: np.ndarray | torch.Tensor, border: int) -> np.ndarray:
    arr = img.detach().float().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {arr.shape}")
    y = rgb_to_y(np.clip(arr, 0.0, 1.0))
    if border:
        y = y[border:-border, border:-border]
    return y


def psnr_y(sr: np.ndarray | torch.Tensor, hr: np.ndarray | torch.Tensor, border: int = 4) -> float:
    """PSNR (dB) on Y in [0, 255] after cropping `border` pixels: 10 log10(255^2 / MSE)."""
    a, b = _as_y(sr, border), _as_y(hr, border)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim_y(sr: np.ndarray | torch.Tensor, hr: np.ndarray | torch.Tensor, border: int = 4) -> float:
    """SSIM (Wang et al. 2004) on Y with an 11x11 Gaussian window, sigma 1.5, as in the SR literature."""
    a, b = _as_y(sr, border), _as_y(hr, border)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    return float(
        structural_similarity(
            a, b, data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )
