"""The Python API for pipelines written in Python: load the model once, upscale many images.

    from linearsr_cli import api
    sr = api.load()                                   # shipped weights, device auto
    big = sr.upscale(image, preset="perceptual", seed=0, outscale=3, input="real")

`image` may be a PIL image (returns a PIL image of the same mode: L, LA, RGB, RGBA, I;16 and I
at their bit depth, F as float; EXIF orientation applied as for a file), a numpy array (H, W),
(H, W, 2|3|4) of uint8, uint16 or float in [0, 1] (returns the same layout and dtype), or a file
path (returns a PIL image; 16-bit gray as I;16). `upscale_file(src, dst)` does what `linearsr
upscale` does for one file: metadata, 16-bit, alpha, settings record, atomic write, and returns
its record. The options are the CLI's: preset, steps, solver, shift, seed, input (the prior),
tags, tta, outscale / width / height / fit, and, at load time, weights (or scale), device,
dtype, tile and tile overlap. The loading, tags, pass planning and resampling are the CLI's own
code (engine/pipeline.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from linearsr_cli.checkpoints import DEFAULT_SCALE
from linearsr_cli.config import SamplerConfig, TileConfig, sampler_config
from linearsr_cli.engine.batch import BatchRun
from linearsr_cli.engine.pipeline import (
    ImageTags,
    TagResolver,
    Upscaled,
    load_models,
    model_files,
    parse_tile,
    upscale_to_size,
)
from linearsr_cli.engine.plan import Job, OutputConfig, output_format_for
from linearsr_cli.engine.report import FileRecord
from linearsr_cli.engine.resize import SizeRequest
from linearsr_cli.engine.upscaler import Upscaler
from linearsr_cli.errors import ConfigError
from linearsr_cli.imageio import LUMA, ImageData, from_pil, read_image, to_pil
from linearsr_cli.tag.config import TagConfig


@dataclass(frozen=True)
class _Options:
    """The options of one `upscale` / `upscale_rgb` call (their keywords), passed whole."""

    preset: str
    steps: int | None
    solver: str | None
    shift: float | None
    seed: int
    input: str  # auto or a prior name
    tags: Sequence[str] | str | None  # None: no guidance; "auto": the tagger; else the tags
    tta: bool
    outscale: float | None
    width: int | None
    height: int | None
    fit: str

    def sampler(self) -> SamplerConfig:
        return sampler_config(self.preset, steps=self.steps, solver=self.solver, seed=self.seed, shift=self.shift)

    def size(self) -> SizeRequest:
        return SizeRequest(outscale=self.outscale, width=self.width, height=self.height, fit=self.fit)


class Pipeline:
    """Loaded LinearSR model(s); see the module docstring. Not thread-safe (one device)."""

    def __init__(self, models: dict[int, Upscaler] | Upscaler) -> None:
        self.models = dict(sorted(models.items())) if isinstance(models, dict) else {models.scale: models}
        self._tag_resolver = TagResolver(TagConfig(), self.upscaler.plan.device)

    @property
    def upscaler(self) -> Upscaler:
        """The model a plain call runs (the only one, else x4)."""
        return self.models.get(DEFAULT_SCALE) or next(iter(self.models.values()))

    @property
    def scale(self) -> int:
        return self.upscaler.scale

    def _tags(self, rgb: torch.Tensor, tags: Sequence[str] | str | None) -> ImageTags | None:
        """The image's tags (None: no guidance; "auto": the tagger; else the given tags)."""
        if tags is None:
            return None
        if tags == "auto":
            return self._tag_resolver.for_image(None, rgb)
        return self._tag_resolver.for_image(None, rgb, given=[tags] if isinstance(tags, str) else tags)

    def _run(self, rgb: torch.Tensor, alpha: torch.Tensor | None, options: _Options,
             jpeg_quality: int | None = None) -> Upscaled:
        return upscale_to_size(self.models, rgb, alpha, options.sampler(), size=options.size(),
                               tags=self._tags(rgb, options.tags), input=options.input,
                               jpeg_quality=jpeg_quality, tta=options.tta)

    def upscale_rgb(
        self, rgb: torch.Tensor, *, preset: str = "fidelity", steps: int | None = None, solver: str | None = None,
        shift: float | None = None, seed: int = 0, input: str = "auto", tags: Sequence[str] | str | None = None,
        tta: bool = False, outscale: float | None = None, width: int | None = None, height: int | None = None,
        fit: str = "contain",
    ) -> torch.Tensor:
        """(3, h, w) float RGB in [0, 1] -> (3, H, W) float32 in [0, 1] on the CPU (H, W: the
        model's scale, or the size outscale/width/height ask for). Options: see `upscale`."""
        options = _Options(preset=preset, steps=steps, solver=solver, shift=shift, seed=seed, input=input, tags=tags,
                           tta=tta, outscale=outscale, width=width, height=height, fit=fit)
        return self._run(rgb, None, options).rgb

    def upscale(
        self, image: Image.Image | np.ndarray | str | Path, *, preset: str = "fidelity", steps: int | None = None,
        solver: str | None = None, shift: float | None = None, seed: int = 0, input: str = "auto",
        tags: Sequence[str] | str | None = None, tta: bool = False, outscale: float | None = None,
        width: int | None = None, height: int | None = None, fit: str = "contain",
    ) -> Image.Image | np.ndarray:
        """Upscale a PIL image, a numpy array or an image file. `preset` fidelity (1-NFE) or
        perceptual, `steps`, `solver` and `shift` override it; `seed` of the noise; `input` auto or
        a prior name; `tags` None (no guidance), "auto" (the tagger) or the tags; `tta` the 8
        flips/rotations averaged; the output size: the model's scale, or `outscale`, or `width`
        and/or `height` with `fit` contain|cover|stretch."""
        options = _Options(preset=preset, steps=steps, solver=solver, shift=shift, seed=seed, input=input, tags=tags,
                           tta=tta, outscale=outscale, width=width, height=height, fit=fit)
        if isinstance(image, str | Path):
            data = read_image(image)
            return to_pil(self._image(data, options))
        if isinstance(image, Image.Image):
            data, mode = from_pil(image)
            return to_pil(self._image(data, options), mode)
        if isinstance(image, np.ndarray):
            return self._upscale_array(image, options)
        raise ConfigError(f"cannot upscale a {type(image).__name__}: give a PIL image, a numpy array or a path")

    def _image(self, data: ImageData, options: _Options) -> ImageData:
        done = self._run(data.rgb, data.alpha, options, jpeg_quality=data.jpeg_quality)
        return ImageData(rgb=done.rgb, alpha=done.alpha, gray=data.gray, bit_depth=data.bit_depth,
                         format=data.format, icc=data.icc, exif=data.exif)

    def _upscale_array(self, arr: np.ndarray, options: _Options) -> np.ndarray:
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
            raise ConfigError(f"arrays must be (H, W), (H, W, 1|2|3|4), got {arr.shape}")
        if arr.dtype == np.uint8:
            peak = 255.0
        elif arr.dtype == np.uint16:
            peak = 65535.0
        elif np.issubdtype(arr.dtype, np.floating):
            peak = 1.0
        else:
            raise ConfigError(f"arrays must be uint8, uint16 or float in [0, 1], got {arr.dtype}")
        x = np.clip(arr.astype(np.float32) / peak, 0.0, 1.0)
        x = x.reshape(x.shape[0], x.shape[1], -1)  # (H, W, C)
        gray = x.shape[2] <= 2
        colour = np.repeat(x[..., :1], 3, axis=2) if gray else x[..., :3]
        rgb = torch.from_numpy(np.ascontiguousarray(colour.transpose(2, 0, 1)))  # (3, H, W)
        alpha = torch.from_numpy(np.ascontiguousarray(x[..., -1][None])) if x.shape[2] in (2, 4) else None
        done = self._run(rgb, alpha, options)
        planes = [(done.rgb.clamp(0, 1) * LUMA).sum(0, keepdim=True)] if gray else [done.rgb]
        if done.alpha is not None:
            planes.append(done.alpha)
        res = torch.cat(planes).permute(1, 2, 0).numpy()  # (H, W, C)
        res = res[..., 0] if arr.ndim == 2 else res
        if peak == 1.0:
            return res.astype(arr.dtype)
        return np.clip(np.rint(res * peak), 0, peak).astype(arr.dtype)

    def upscale_file(
        self, src: str | Path, dst: str | Path, *, fmt: str = "keep", quality: int = 95, png_level: int = 3,
        overwrite: bool = False, keep_existing: bool = False, preset: str = "fidelity", steps: int | None = None,
        solver: str | None = None, shift: float | None = None, seed: int = 0, input: str = "auto", tta: bool = False,
        outscale: float | None = None, width: int | None = None, height: int | None = None, fit: str = "contain",
    ) -> FileRecord:
        """Exactly `linearsr upscale SRC DST --tags off` for one file, rerun rule included; returns
        its record (status "ok", "skipped", "kept", "conflict" or "failed" with the reason)."""
        src, dst = Path(src), Path(dst)
        output = OutputConfig(format=fmt, quality=quality, png_level=png_level, overwrite=overwrite,
                              keep_existing=keep_existing)
        options = _Options(preset=preset, steps=steps, solver=solver, shift=shift, seed=seed, input=input, tags=None,
                           tta=tta, outscale=outscale, width=width, height=height, fit=fit)
        batch = BatchRun(self.models, options.sampler(), output, TagConfig(enabled=False), input, size=options.size(),
                         tta=tta)
        return batch.process(Job(src, dst, output_format_for(dst, fmt)))


def load(
    weights: str | Path | None = None, *, scale: int | None = None, device: str = "auto", dtype: str = "auto",
    tile: int | str = "auto", tile_overlap: int = 16,
) -> Pipeline:
    """Load a weights file (default: $LINEARSR_WEIGHTS, else the shipped file for `scale`, else
    every shipped scale so that any outscale runs the CLI's chain) onto a device."""
    tiles = TileConfig(tile=parse_tile(tile), overlap=tile_overlap)
    path = Path(weights) if weights is not None else None
    infos = model_files(path, scale, every_scale=scale is None)  # no scale: any outscale runs the CLI's chain
    return Pipeline(load_models(infos, device=device, dtype=dtype, tiles=tiles))


__all__ = ["Pipeline", "load"]
