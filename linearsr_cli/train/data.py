"""Training pairs: random HR crops of the photos and their degraded LR versions.

Each photo is decoded once and kept in memory as uint8 (H, W, 3) RGB; a sample is cut, flipped,
rotated and degraded on the fly. Sample `i` of a split depends only on (seed, split, i), so a run
is reproducible and can resume at any index whatever the number of loader workers.

To avoid border artefacts the crop is cut with a margin of 2 * scale HR pixels on every side
(the support of the antialiased x`scale` bicubic kernel), degraded whole, and both HR and LR are
trimmed afterwards: the LR of a crop equals the LR of the whole photo at that place.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from linearsr_cli.degrade import bicubic_downscale, realistic_degrade
from linearsr_cli.errors import ConfigError, ImageReadError, TrainingError
from linearsr_cli.imageio import READABLE_SUFFIXES, read_image

Degradation = Literal["bicubic", "realistic", "mixed"]
MAX_FLAT_TRIES = 10


@dataclass(frozen=True)
class DataConfig:
    """Where the photos are and how pairs are cut from them.

    `root` holds train/ and val/ folders of HR photos (and manifest.json). `crop` is the HR side
    (a multiple of `scale`; make it a multiple of the model patch to avoid padding). Crops whose
    HR standard deviation (0..1 scale) is below `flat_std` are redrawn. `epoch_size` is the number
    of indices the map-style dataset exposes.
    """

    root: str = "data/photos"
    scale: int = 4
    crop: int = 128
    degradation: Degradation = "bicubic"
    flat_std: float = 0.02
    seed: int = 0
    epoch_size: int = 1_000_000

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ConfigError(f"scale must be >= 1, got {self.scale}")
        if self.crop < self.scale or self.crop % self.scale != 0:
            raise ConfigError(
                f"crop ({self.crop}) must be a positive multiple of scale ({self.scale})"
            )
        if self.degradation not in ("bicubic", "realistic", "mixed"):
            raise ConfigError(
                f"degradation must be bicubic, realistic or mixed, got {self.degradation!r}"
            )
        if self.flat_std < 0:
            raise ConfigError(f"flat_std must be >= 0, got {self.flat_std}")
        if self.epoch_size < 1:
            raise ConfigError(f"epoch_size must be >= 1, got {self.epoch_size}")

    @property
    def margin(self) -> int:
        """HR pixels cut beyond the crop on each side (a whole number of LR pixels)."""
        return 2 * self.scale


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) RGB (gray and 16-bit inputs are converted) with
    OpenCV, or, for a readable format this OpenCV build lacks (HEIC; GIF, AVIF in some builds),
    with imageio.read_image."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is not None:
        return np.ascontiguousarray(bgr[:, :, ::-1])
    try:
        rgb = read_image(path).rgb  # (3, H, W) float32 in [0, 1]
    except ImageReadError as exc:
        raise TrainingError(f"cannot decode training image {path}: {exc}") from None
    return np.ascontiguousarray((rgb.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8))


def list_photos(folder: Path) -> list[Path]:
    """The image files (imageio.READABLE_SUFFIXES) directly in `folder`, sorted by name."""
    if not folder.is_dir():
        raise TrainingError(f"photo folder {folder} does not exist (run `linearsr data fetch`)")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in READABLE_SUFFIXES)


def crop_std(crop: np.ndarray) -> float:
    """Standard deviation of a uint8 crop on the 0..1 scale (all pixels and channels)."""
    return float(crop.std()) / 255.0


def augment(patch: np.ndarray, rot: int, flip: bool) -> np.ndarray:
    """Rotate by rot * 90 degrees, then mirror left-right if `flip` (the 8 dihedral transforms)."""
    out = np.rot90(patch, k=rot, axes=(0, 1))
    if flip:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def degrade_patch(patch: np.ndarray, scale: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, 3) HR -> float32 (H/scale, W/scale, 3) LR in [0, 1], 8-bit quantised."""
    if kind == "realistic":
        return realistic_degrade(patch, scale, rng)
    lr = bicubic_downscale(patch.astype(np.float32) / 255.0, scale)
    return (np.clip(np.rint(lr * 255.0), 0, 255) / 255.0).astype(np.float32)


def to_tensor(img: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 or float in [0, 1] -> (3, H, W) float32 tensor."""
    arr = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (3, H, W)


def make_pair(
    patch: np.ndarray, cfg: DataConfig, kind: str, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """A padded uint8 patch (crop + 2 margin) -> (lr (3, c/s, c/s), hr (3, c, c)), both trimmed."""
    m, lm = cfg.margin, cfg.margin // cfg.scale
    lr = degrade_patch(patch, cfg.scale, kind, rng)
    return to_tensor(lr[lm:-lm, lm:-lm]), to_tensor(patch[m:-m, m:-m])


class PairDataset(Dataset):
    """Map-style dataset of random (LR, HR) training pairs; item i is a pure function of
    (cfg.seed, split, i). Items: {"lr": (3, crop/scale, crop/scale), "hr": (3, crop, crop),
    "name": photo stem, "kind": the degradation drawn (bicubic or realistic)}, float32 in [0, 1]."""

    def __init__(self, cfg: DataConfig, split: str = "train") -> None:
        self.cfg = cfg
        self.split = split
        side = cfg.crop + 2 * cfg.margin
        self.names: list[str] = []
        self.photos: list[np.ndarray] = []
        self.too_small: list[str] = []
        for path in list_photos(Path(cfg.root) / split):
            img = read_rgb(path)
            if min(img.shape[:2]) < side:
                self.too_small.append(path.name)
                continue
            self.names.append(path.stem)
            self.photos.append(img)
        if not self.photos:
            raise TrainingError(
                f"no photo in {Path(cfg.root) / split} is at least {side} px on each side"
            )
        areas = np.array([p.shape[0] * p.shape[1] for p in self.photos], dtype=np.float64)
        self.weights = areas / areas.sum()  # bigger photos give proportionally more crops
        self.split_key = zlib.crc32(split.encode())

    def __len__(self) -> int:
        return self.cfg.epoch_size

    @property
    def megapixels(self) -> float:
        return sum(p.shape[0] * p.shape[1] for p in self.photos) / 1e6

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, self.split_key, index])

    def draw_patch(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """Pick a photo (area-weighted) and a padded patch; redraw flat crops up to 10 times,
        then keep the busiest one seen."""
        cfg = self.cfg
        side, m = cfg.crop + 2 * cfg.margin, cfg.margin
        best: tuple[float, int, np.ndarray] | None = None
        for _ in range(MAX_FLAT_TRIES):
            k = int(rng.choice(len(self.photos), p=self.weights))
            photo = self.photos[k]
            y = int(rng.integers(0, photo.shape[0] - side + 1))
            x = int(rng.integers(0, photo.shape[1] - side + 1))
            patch = photo[y : y + side, x : x + side]
            std = crop_std(patch[m:-m, m:-m])
            if std >= cfg.flat_std:
                return k, patch
            if best is None or std > best[0]:
                best = (std, k, patch)
        assert best is not None
        return best[1], best[2]

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = self.rng(index)
        k, patch = self.draw_patch(rng)
        patch = augment(patch, int(rng.integers(4)), bool(rng.random() < 0.5))
        kind = self.cfg.degradation
        if kind == "mixed":
            kind = "realistic" if rng.random() < 0.5 else "bicubic"
        lr, hr = make_pair(patch, self.cfg, kind, rng)
        return {"lr": lr, "hr": hr, "name": self.names[k], "kind": kind}


def validation_pairs(
    cfg: DataConfig, *, size: int = 256, degradation: Degradation = "bicubic"
) -> list[tuple[str, Tensor, Tensor]]:
    """Fixed centre crops of the val photos: [(stem, lr (3, h, w), hr (3, H, W))], sorted by name.

    The HR side is min(size, photo side - 2 margin) rounded down to a multiple of scale; the LR is
    degraded with a generator seeded by (cfg.seed, photo position), so the list is deterministic.
    """
    if degradation not in ("bicubic", "realistic", "mixed"):
        raise ConfigError(f"degradation must be bicubic, realistic or mixed, got {degradation!r}")
    s, m = cfg.scale, cfg.margin
    pairs = []
    for pos, path in enumerate(list_photos(Path(cfg.root) / "val")):
        img = read_rgb(path)
        h, w = img.shape[:2]
        side = min(size, h - 2 * m, w - 2 * m) // s * s
        if side < s:
            continue
        # centre crop on the LR grid of the whole photo, so LR pixels keep their global places
        y0, x0 = (h - side) // 2 // s * s - m, (w - side) // 2 // s * s - m
        patch = img[y0 : y0 + side + 2 * m, x0 : x0 + side + 2 * m]
        rng = np.random.default_rng([cfg.seed, zlib.crc32(b"val-probe"), pos])
        kind = degradation
        if kind == "mixed":
            kind = "realistic" if rng.random() < 0.5 else "bicubic"
        lr, hr = make_pair(patch, cfg, kind, rng)
        pairs.append((path.stem, lr, hr))
    if not pairs:
        raise TrainingError(f"no usable validation photo in {Path(cfg.root) / 'val'}")
    return pairs
