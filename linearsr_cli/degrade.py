"""HR -> LR degradations for training pairs: pure functions of their inputs and a numpy Generator.

- `bicubic_downscale`: MATLAB `imresize` bicubic with antialiasing (Keys cubic, a = -0.5, the
  kernel stretched by the scale factor when shrinking, symmetric borders), as SR benchmarks use.
- `realistic_degrade`: the second-order pipeline of Real-ESRGAN (Wang et al. 2021, Sec. 3):
  [blur -> resize -> noise -> JPEG] twice, then resize to the LR size + sinc filter and a final
  JPEG in random order. Everything runs in OpenCV/numpy on HWC float32 RGB in [0, 1].

No I/O here and no global random state: every random draw comes from the `rng` argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import j1

from linearsr_cli.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# MATLAB-style antialiased bicubic
# ---------------------------------------------------------------------------------------------


def cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys (1981) cubic convolution kernel with a = -0.5, as in MATLAB imresize."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (a + 2.0) * ax3 - (a + 3.0) * ax2 + 1.0
    far = a * ax3 - 5.0 * a * ax2 + 8.0 * a * ax - 4.0 * a
    return np.where(ax <= 1.0, near, np.where(ax <= 2.0, far, 0.0))


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    """MATLAB 'symmetric' padding of indices: -1 -> 0, -2 -> 1, n -> n - 1 (edge repeated)."""
    period = 2 * n
    idx = np.mod(idx, period)
    return np.where(idx < n, idx, period - 1 - idx)


@lru_cache(maxsize=256)
def resize_taps(n_in: int, n_out: int, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Taps of MATLAB imresize bicubic along one axis (antialiased): indices and weights, both
    (n_out, taps).

    Output pixel i samples input coordinate u = (i + 0.5) / factor - 0.5; when shrinking
    (factor < 1) the kernel is widened to factor * cubic(factor * x) (MATLAB's antialiasing).
    Weights are normalised per row; taps outside [0, n_in) are mirrored back in.
    """
    shrink = min(factor, 1.0)
    width = 4.0 / shrink
    centre = (np.arange(n_out, dtype=np.float64) + 0.5) / factor - 0.5  # (n_out,)
    left = np.floor(centre - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # (n_out, taps)
    w = shrink * cubic(shrink * (centre[:, None] - idx))  # (n_out, taps)
    w /= w.sum(axis=1, keepdims=True)
    idx = _mirror(idx.astype(np.int64), n_in)
    w = w.astype(np.float32)
    idx.setflags(write=False)
    w.setflags(write=False)
    return idx, w


@lru_cache(maxsize=64)
def resize_matrix(n_in: int, n_out: int, factor: float) -> np.ndarray:
    """The same resize as a dense (n_out, n_in) matrix (for small images and torch)."""
    idx, w = resize_taps(n_in, n_out, factor)
    mat = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.repeat(np.arange(n_out), idx.shape[1])
    np.add.at(mat, (rows, idx.ravel()), w.ravel())
    mat.setflags(write=False)
    return mat


def _resize_rows(x: np.ndarray, n_out: int, factor: float) -> np.ndarray:
    """Resize axis 0 of x (H, ...) to n_out rows by summing the weighted taps (banded, any size)."""
    idx, w = resize_taps(x.shape[0], n_out, factor)
    out = np.zeros((n_out,) + x.shape[1:], dtype=np.float32)
    extra = (1,) * (x.ndim - 1)
    for k in range(idx.shape[1]):
        out += w[:, k].reshape((n_out,) + extra) * x[idx[:, k]]  # (n_out, ...)
    return out


def bicubic_downscale(hr: np.ndarray | torch.Tensor, scale: int) -> np.ndarray | torch.Tensor:
    """MATLAB imresize(hr, 1/scale, 'bicubic') with antialiasing; output side = ceil(side/scale).

    numpy input is (H, W) or (H, W, C): uint8 -> uint8 (rounded, clipped), float -> float32.
    torch input is (..., H, W) (e.g. (3, H, W) or (B, 3, H, W)) -> float32 tensor, not clipped.
    """
    if scale < 1:
        raise ConfigError(f"scale must be >= 1, got {scale}")
    factor = 1.0 / scale
    if isinstance(hr, torch.Tensor):
        h, w = hr.shape[-2:]
        mh = torch.from_numpy(resize_matrix(h, math.ceil(h / scale), factor).copy())
        mw = torch.from_numpy(resize_matrix(w, math.ceil(w / scale), factor).copy())
        x = hr.float()
        return mh.to(x.device) @ x @ mw.to(x.device).T  # (..., h', H) @ (..., H, W) @ (W, w')
    arr = np.asarray(hr)
    h, w = arr.shape[:2]
    x = arr.astype(np.float32)
    out = _resize_rows(x, math.ceil(h / scale), factor)  # (h', W, ...)
    out = _resize_rows(np.swapaxes(out, 0, 1), math.ceil(w / scale), factor)  # (w', h', ...)
    out = np.ascontiguousarray(np.swapaxes(out, 0, 1))  # (h', w', ...)
    if arr.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Real-ESRGAN-style second-order degradation
# ---------------------------------------------------------------------------------------------

BLUR_KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso")
RESIZE_MODES = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)


@dataclass(frozen=True)
class DegradeConfig:
    """Ranges of the second-order pipeline; defaults follow Real-ESRGAN x4plus (no plateau kernels,
    their probability is given to the generalized Gaussians)."""

    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    blur_probs: tuple[float, float, float, float] = (0.45, 0.25, 0.15, 0.15)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    beta: tuple[float, float] = (0.5, 4.0)
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 30.0)  # in 8-bit levels
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_quality: tuple[int, int] = (30, 95)
    # second order
    second_blur_prob: float = 0.8
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    resize_probs2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    noise_sigma2: tuple[float, float] = (1.0, 25.0)
    poisson_scale2: tuple[float, float] = (0.05, 2.5)
    jpeg_quality2: tuple[int, int] = (30, 95)
    final_sinc_prob: float = 0.8

    def __post_init__(self) -> None:
        if any(k % 2 == 0 or k < 3 for k in self.kernel_sizes):
            raise ConfigError(f"kernel sizes must be odd and >= 3, got {self.kernel_sizes}")
        for name in ("blur_probs", "resize_probs", "resize_probs2"):
            if abs(sum(getattr(self, name)) - 1.0) > 1e-6:
                raise ConfigError(f"{name} must sum to 1, got {getattr(self, name)}")


DEFAULT_DEGRADE = DegradeConfig()


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    return np.meshgrid(r, r, indexing="xy")  # xx, yy: (size, size)


def gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float, theta: float, beta: float = 1.0
) -> np.ndarray:
    """(Generalized) anisotropic Gaussian exp(-0.5 (x^T S^-1 x)^beta), S = R diag(sx^2, sy^2) R^T
    (Real-ESRGAN Eq. 2-3; beta = 1 is the plain Gaussian)."""
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    inv = np.linalg.inv(cov)
    xx, yy = _grid(size)
    quad = inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy
    k = np.exp(-0.5 * np.power(quad, beta))
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (B, C, H, W) tensor with reflect padding (radius 3 sigma, cut
    to what reflect padding allows on tiny images)."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    r = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (r / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if pad < radius:  # tiny images: crop the kernel to what reflect padding allows
        k = k[radius - pad : radius + pad + 1] / k[radius - pad : radius + pad + 1].sum()
    y = F.pad(x, (pad, pad, 0, 0), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # (B, C, H, W)
    y = F.pad(y, (0, 0, pad, pad), mode="reflect")
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)  # (B, C, H, W)


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """Circular low-pass (2D sinc / jinc) omega_c J1(omega_c r) / (2 pi r) (Real-ESRGAN Eq. 5)."""
    xx, yy = _grid(size)
    r = np.hypot(xx, yy)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = cutoff * j1(cutoff * r) / (2.0 * math.pi * r)
    k[r == 0] = cutoff**2 / (4.0 * math.pi)
    return (k / k.sum()).astype(np.float32)


def random_blur_kernel(
    rng: np.random.Generator, sigma: tuple[float, float], sinc_prob: float, cfg: DegradeConfig
) -> np.ndarray:
    """Draw one blur kernel: sinc with prob `sinc_prob`, else an (an)isotropic (generalized) Gaussian."""
    size = int(rng.choice(cfg.kernel_sizes))
    if rng.random() < sinc_prob:
        lo = math.pi / 3 if size < 13 else math.pi / 5
        return sinc_kernel(size, float(rng.uniform(lo, math.pi)))
    kind = BLUR_KINDS[int(rng.choice(len(BLUR_KINDS), p=cfg.blur_probs))]
    sx = float(rng.uniform(*sigma))
    if kind.endswith("aniso"):
        sy, theta = float(rng.uniform(*sigma)), float(rng.uniform(-math.pi, math.pi))
    else:
        sy, theta = sx, 0.0
    beta = float(rng.uniform(*cfg.beta)) if kind.startswith("generalized") else 1.0
    return gaussian_kernel(size, sx, sy, theta, beta)


def _filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def _resize(img: np.ndarray, height: int, width: int, mode: int) -> np.ndarray:
    out = cv2.resize(img, (max(1, width), max(1, height)), interpolation=mode)
    return out if out.ndim == 3 else out[:, :, None]


def add_noise(
    img: np.ndarray,
    rng: np.random.Generator,
    gaussian_prob: float,
    sigma: tuple[float, float],
    poisson_scale: tuple[float, float],
    gray_prob: float,
) -> np.ndarray:
    """Gaussian (sigma in 8-bit levels) or Poisson shot noise, colour or gray (Real-ESRGAN Sec. 3.1)."""
    h, w, c = img.shape
    gray = rng.random() < gray_prob
    if rng.random() < gaussian_prob:
        std = float(rng.uniform(*sigma)) / 255.0
        shape = (h, w, 1) if gray else (h, w, c)
        noise = rng.standard_normal(shape).astype(np.float32) * std
    else:
        amount = float(rng.uniform(*poisson_scale))
        levels = 255.0
        base = img.mean(axis=2, keepdims=True) if gray else img
        base = np.clip(base, 0.0, 1.0)
        noise = (rng.poisson(base * levels) / levels - base).astype(np.float32) * amount
    return np.clip(img + noise, 0.0, 1.0)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode/decode as 8-bit JPEG at `quality` with OpenCV; HWC RGB float in [0, 1]."""
    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not JPEG-encode the image")
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return dec.astype(np.float32) / 255.0


def _random_resize(
    img: np.ndarray,
    rng: np.random.Generator,
    base_h: float,
    base_w: float,
    probs: tuple[float, float, float],
    rng_range: tuple[float, float],
) -> np.ndarray:
    kind = int(rng.choice(3, p=probs))
    if kind == 0:
        factor = float(rng.uniform(1.0, rng_range[1]))  # up
    elif kind == 1:
        factor = float(rng.uniform(rng_range[0], 1.0))  # down
    else:
        factor = 1.0  # keep
    mode = RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))]
    return _resize(img, int(base_h * factor), int(base_w * factor), mode)


def _as_float(hr: np.ndarray) -> np.ndarray:
    arr = np.asarray(hr)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def realistic_degrade(
    hr: np.ndarray, scale: int, rng: np.random.Generator, *, cfg: DegradeConfig = DEFAULT_DEGRADE
) -> np.ndarray:
    """Real-ESRGAN second-order degradation (Wang et al. 2021): HWC RGB uint8 or float in [0, 1]
    of size (H, W) -> float32 (ceil(H/scale), ceil(W/scale), 3) in [0, 1], 8-bit quantised."""
    img = _as_float(hr)
    h, w = img.shape[:2]
    lr_h, lr_w = math.ceil(h / scale), math.ceil(w / scale)
    # first order
    img = _filter(img, random_blur_kernel(rng, cfg.blur_sigma, cfg.sinc_prob, cfg))
    img = _random_resize(img, rng, img.shape[0], img.shape[1], cfg.resize_probs, cfg.resize_range)
    img = add_noise(
        img, rng, cfg.gaussian_noise_prob, cfg.noise_sigma, cfg.poisson_scale, cfg.gray_noise_prob
    )
    img = jpeg_roundtrip(img, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    # second order
    if rng.random() < cfg.second_blur_prob:
        img = _filter(img, random_blur_kernel(rng, cfg.blur_sigma2, cfg.sinc_prob2, cfg))
    img = _random_resize(img, rng, lr_h, lr_w, cfg.resize_probs2, cfg.resize_range2)
    img = add_noise(
        img, rng, cfg.gaussian_noise_prob, cfg.noise_sigma2, cfg.poisson_scale2, cfg.gray_noise_prob
    )
    # final: [resize to LR + sinc] and JPEG, in random order
    mode = RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))]
    if rng.random() < cfg.final_sinc_prob:
        size = int(rng.choice(cfg.kernel_sizes))
        final_kernel = sinc_kernel(size, float(rng.uniform(math.pi / 3, math.pi)))
    else:
        final_kernel = None
    quality = int(rng.integers(cfg.jpeg_quality2[0], cfg.jpeg_quality2[1] + 1))

    def resize_and_sinc(x: np.ndarray) -> np.ndarray:
        x = _resize(x, lr_h, lr_w, mode)
        return _filter(x, final_kernel) if final_kernel is not None else x

    if rng.random() < 0.5:
        img = jpeg_roundtrip(resize_and_sinc(img), quality)
    else:
        img = resize_and_sinc(jpeg_roundtrip(img, quality))
    return (np.clip(np.rint(img * 255.0), 0, 255) / 255.0).astype(np.float32)
