"""The visual comparison: one row of same-place crops per image, one labelled column per method.

Pure array code: crops are (3, c, c) float RGB in [0, 1]; the grid is (H, W, 3) uint8 RGB.
Layout, with `pad` pixels between and around cells and a `header` strip for the labels:

    height = header + rows * cell + (rows + 1) * pad
    width  = cols * cell + (cols + 1) * pad
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from linearsr_cli.errors import ConfigError, ImageWriteError
from linearsr_cli.fileio import write_atomic

BACKGROUND = 255
TEXT_COLOUR = (0, 0, 0)


def pick_crop(hr: np.ndarray, size: int, align: int = 1) -> tuple[int, int]:
    """Top-left (y, x) of the size x size window with the most gradient energy, on a stride of
    size / 4 and aligned to `align` (the scale, so the window is whole LR pixels)."""
    _, h, w = hr.shape
    size = min(size, h, w)
    gray = np.asarray(hr, dtype=np.float64).mean(axis=0)  # (H, W)
    energy = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1, :]
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # (H, W) summed-area table
    stride = max(align, (size // 4) // align * align)
    best, best_yx = -1.0, (0, 0)
    for y in range(0, h - size + 1, stride):
        for x in range(0, w - size + 1, stride):
            y1, x1 = min(y + size, h - 1), min(x + size, w - 1)
            total = integral[y1, x1] - integral[y, x1] - integral[y1, x] + integral[y, x]
            if total > best:
                best, best_yx = total, (y, x)
    return best_yx


def crop(img: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """The (3, size, size) window at (y, x) of a (3, H, W) image, edge-padded if it runs out."""
    out = np.asarray(img)[:, y : y + size, x : x + size]
    ph, pw = size - out.shape[1], size - out.shape[2]
    if ph or pw:
        out = np.pad(out, ((0, 0), (0, ph), (0, pw)), mode="edge")
    return out


def nearest_up(img: np.ndarray, scale: int) -> np.ndarray:
    """Pixel replication of a (3, h, w) image, to show LR pixels at HR size."""
    return np.repeat(np.repeat(np.asarray(img), scale, axis=1), scale, axis=2)


def grid_size(rows: int, cols: int, cell: int, pad: int, header: int) -> tuple[int, int]:
    """(height, width) of the grid image."""
    return header + rows * cell + (rows + 1) * pad, cols * cell + (cols + 1) * pad


def comparison_grid(
    rows: list[list[np.ndarray]], labels: list[str], *, pad: int = 4, header: int = 24
) -> np.ndarray:
    """Assemble rows of equal-size crops under a header of column labels; (H, W, 3) uint8 RGB."""
    if not rows or not labels:
        raise ConfigError("a comparison grid needs at least one row and one column")
    cols = len(labels)
    cell = int(rows[0][0].shape[-1])
    for row in rows:
        if len(row) != cols or any(c.shape != (3, cell, cell) for c in row):
            raise ConfigError(f"every row needs {cols} crops of shape (3, {cell}, {cell})")
    height, width = grid_size(len(rows), cols, cell, pad, header)
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    for j, label in enumerate(labels):
        x0 = pad + j * (cell + pad)
        text = label
        fscale = 0.45
        while fscale > 0.25 and cv2.getTextSize(text, font, fscale, thickness)[0][0] > cell:
            fscale -= 0.05
        (tw, th), _ = cv2.getTextSize(text, font, fscale, thickness)
        org = (x0 + max(0, (cell - tw) // 2), (header + th) // 2 + pad // 2)
        cv2.putText(canvas, text, org, font, fscale, TEXT_COLOUR, thickness, cv2.LINE_AA)
    for i, row in enumerate(rows):
        y0 = header + pad + i * (cell + pad)
        for j, cell_img in enumerate(row):
            x0 = pad + j * (cell + pad)
            rgb8 = np.round(np.clip(cell_img, 0.0, 1.0) * 255.0).astype(np.uint8)  # (3, c, c)
            canvas[y0 : y0 + cell, x0 : x0 + cell] = rgb8.transpose(1, 2, 0)  # (c, c, 3)
    return canvas


def write_png(path: str | os.PathLike[str], rgb8: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB array as PNG atomically (temp file + rename)."""
    path = Path(path)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb8[..., ::-1]))
    if not ok:
        raise ImageWriteError(f"{path}: PNG encoding failed")
    try:
        write_atomic(path, buf.tobytes())
    except OSError as exc:
        raise ImageWriteError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return path
