"""The Python API for pipelines written in Python: load the model once, upscale many images.

    from linearsr_cli import api
    sr = api.load()                                   # shipped weights, device auto
    big = sr.upscale(image, preset="perceptual", seed=0)

`image` may be a PIL image (returns a PIL image of the same mode family: L/LA/RGB/RGBA), a
numpy array (H, W), (H, W, 3) or (H, W, 4) of uint8, uint16 or float in [0, 1] (returns the
same layout and dtype), or a file path (returns a PIL image). `upscale_file(src, dst)` does
what `linearsr upscale` does for one file: metadata, 16-bit, alpha, atomic write, and returns
its record. The options are the CLI's: preset, steps, solver, seed, input (the prior), tags,
tta, and, at load time, weights (or scale: the shipped x2 or x4 file), device, dtype, tile and
tile overlap. (Output sizes other than the model's scale: the CLI's --outscale/--width.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from linearsr_cli.config import TileConfig
from linearsr_cli.engine.batch import (
    BatchRun,
    FileRecord,
    Job,
    OutputConfig,
    output_format_for,
    upscale_alpha,
)
from linearsr_cli.engine.device import plan_device
from linearsr_cli.engine.upscaler import Upscaler, resolve_weights, sampler_config
from linearsr_cli.errors import ConfigError
from linearsr_cli.imageio import read_image


class Pipeline:
    """A loaded LinearSR model; see the module docstring. Not thread-safe (one model, one device)."""

    def __init__(self, upscaler: Upscaler) -> None:
        self.upscaler = upscaler
        self._guidance: Any = None

    @property
    def scale(self) -> int:
        return self.upscaler.scale

    def _tags(self, rgb: torch.Tensor, tags: Sequence[str] | str | None) -> tuple[Any, Any]:
        if tags is None:
            return None, None
        from linearsr_cli.tag.guidance import TagConfig, TagGuidance

        if self._guidance is None:
            self._guidance = TagGuidance(TagConfig(), self.upscaler.plan.device)
        names = self._guidance.auto_tags(rgb).tags if tags == "auto" else tuple(tags)
        return self._guidance.encode(names)

    def upscale_rgb(
        self, rgb: torch.Tensor, *, preset: str = "fidelity", steps: int | None = None, solver: str | None = None,
        seed: int = 0, input: str = "auto", tags: Sequence[str] | str | None = None, tta: bool = False,
    ) -> torch.Tensor:
        """(3, h, w) float RGB in [0, 1] -> (3, s h, s w) float32 in [0, 1] on the CPU; `tta`:
        the 8-transform self-ensemble (8x the time)."""
        sampler = sampler_config(preset, steps=steps, solver=solver, seed=seed)
        route = self.upscaler.choose_input(input, rgb, sampler=sampler)  # an unknown prior fails before the tags
        cond = self.upscaler.conditioning(route.prior)
        if self.upscaler.uses_tags(sampler):
            cond = cond.with_tags(*self._tags(rgb, tags))
        return self.upscaler(rgb, sampler, cond, tta=tta)

    def upscale(self, image: Image.Image | np.ndarray | str | Path, **options: Any) -> Image.Image | np.ndarray:
        """Upscale a PIL image, a numpy array or an image file (options as upscale_rgb)."""
        if isinstance(image, str | Path):
            data = read_image(image)
            rgb = self.upscale_rgb(data.rgb, **options)
            alpha = None if data.alpha is None else upscale_alpha(data.alpha, self.scale)
            return _to_pil(rgb, alpha, gray=False)
        if isinstance(image, Image.Image):
            gray = image.mode in ("L", "LA", "I;16", "I")
            has_alpha = image.mode in ("LA", "RGBA", "PA") or "transparency" in image.info
            arr = np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
            rgb, alpha = _split(arr)
            out = self.upscale_rgb(rgb, **options)
            up_alpha = None if alpha is None else upscale_alpha(alpha, self.scale)
            return _to_pil(out, up_alpha, gray=gray)
        if isinstance(image, np.ndarray):
            return self._upscale_array(image, **options)
        raise ConfigError(f"cannot upscale a {type(image).__name__}: give a PIL image, a numpy array or a path")

    def _upscale_array(self, arr: np.ndarray, **options: Any) -> np.ndarray:
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise ConfigError(f"arrays must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
        if arr.dtype == np.uint8:
            peak = 255.0
        elif arr.dtype == np.uint16:
            peak = 65535.0
        elif np.issubdtype(arr.dtype, np.floating):
            peak = 1.0
        else:
            raise ConfigError(f"arrays must be uint8, uint16 or float in [0, 1], got {arr.dtype}")
        x = np.clip(arr.astype(np.float32) / peak, 0.0, 1.0)
        plane = x.ndim == 2 or x.shape[2] == 1
        x = np.repeat(x.reshape(x.shape[0], x.shape[1], 1), 3, axis=2) if plane else x
        rgb, alpha = _split(x)
        out = self.upscale_rgb(rgb, **options)  # (3, H, W)
        planes = [out.mean(dim=0, keepdim=True)] if plane else [out]
        if alpha is not None:
            planes.append(upscale_alpha(alpha, self.scale))
        res = torch.cat(planes).permute(1, 2, 0).numpy()  # (H, W, C)
        res = res[..., 0] if arr.ndim == 2 else res
        if peak == 1.0:
            return res.astype(arr.dtype)
        return np.clip(np.rint(res * peak), 0, peak).astype(arr.dtype)

    def upscale_file(
        self, src: str | Path, dst: str | Path, *, fmt: str = "keep", quality: int = 95, png_level: int = 3,
        overwrite: bool = False, preset: str = "fidelity", steps: int | None = None, solver: str | None = None,
        seed: int = 0, input: str = "auto", tta: bool = False,
    ) -> FileRecord:
        """Exactly `linearsr upscale SRC DST --tags off` for one file; returns its record (status
        "ok", "skipped" or "failed" with the reason)."""
        src, dst = Path(src), Path(dst)
        output = OutputConfig(format=fmt, quality=quality, png_level=png_level, overwrite=overwrite)
        sampler = sampler_config(preset, steps=steps, solver=solver, seed=seed)
        batch = BatchRun(self.upscaler, sampler, output, None, input, tta=tta)
        return batch.process(Job(src, dst, output_format_for(dst, fmt)))


def load(
    weights: str | Path | None = None, *, scale: int = 4, device: str = "auto", dtype: str = "auto",
    tile: int | str = "auto", tile_overlap: int = 16,
) -> Pipeline:
    """Load a weights file (default: $LINEARSR_WEIGHTS, else the shipped one for `scale`) onto a device."""
    tiles = TileConfig(tile=0 if tile == "auto" else int(tile), overlap=tile_overlap)
    path = resolve_weights(Path(weights) if weights is not None else None, scale)
    return Pipeline(Upscaler.from_weights(path, plan_device(device, dtype), tiles))


def _split(arr: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(H, W, 3|4) float -> rgb (3, H, W), alpha (1, H, W) or None."""
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    return t[:3].contiguous(), (t[3:4].contiguous() if t.shape[0] == 4 else None)


def _to_pil(rgb: torch.Tensor, alpha: torch.Tensor | None, *, gray: bool) -> Image.Image:
    planes = [rgb.mean(dim=0, keepdim=True)] if gray else [rgb]
    if alpha is not None:
        planes.append(alpha)
    arr = np.rint(torch.cat(planes).clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)  # L, LA, RGB or RGBA by planes


__all__ = ["Pipeline", "load"]
