"""What the three entry points (the batch, the Python API, eval) share: parse --tile, find and
load the native models a run uses (model_files: which scales is the caller's explicit choice),
resolve and encode an image's tags once (TagResolver), and upscale one image to the asked size
(native passes, canvas guard, alpha, resample, --fit crop).

Nothing here prints or touches files besides reading weights (and sidecars through the tagger).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from linearsr_cli.checkpoints import (
    DEFAULT_SCALE,
    WEIGHTS_ENV,
    WeightsInfo,
    installed_scales,
    read_info,
    resolve_weights,
)
from linearsr_cli.config import SamplerConfig, TileConfig
from linearsr_cli.engine.device import plan_device, release_cpu_memory
from linearsr_cli.engine.resize import SizeRequest, needed_factor, plan_passes, resample
from linearsr_cli.engine.route import Route, check_input
from linearsr_cli.engine.upscaler import Progress, Upscaler, upscale_chain
from linearsr_cli.errors import ConfigError, WeightsError
from linearsr_cli.tag.config import TagConfig
from linearsr_cli.tag.sources import normalize_tags

DEFAULT_MAX_CANVAS = 1_024_000_000  # pixels of the largest canvas a chain may build (x4 of 64 MP)


def parse_tile(value: str | int) -> int:
    """--tile: 'auto' -> 0 (whole image when it fits), else a positive number of LR pixels."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip()
        if text == "auto":
            return 0
        if not text.isdigit():
            raise ConfigError(f"--tile must be auto or a number of pixels, got {value!r}")
        number = int(text)
    if number < 0:
        raise ConfigError(f"--tile must be auto or a number of pixels, got {value!r}")
    return number


def model_files(
    weights: Path | None, scale: int | None = None, *, every_scale: bool = False, any_scale: bool = False,
    input: str = "auto",
) -> dict[int, WeightsInfo]:
    """The weights files a run loads, by scale, each read and checked once (WeightsError /
    ConfigError before any image is touched). Which files: `weights` or $LINEARSR_WEIGHTS; else
    the shipped file of `scale`; else, with `every_scale` (runs that may chain native passes: an
    exact output size, or the API loaded without a scale), every shipped scale; else the shipped
    x4. A given file must be of `scale` when one is named, unless `any_scale` (eval resamples
    any file's output to its scale). A named `input` must be a prior of every file."""
    explicit = weights is not None or bool(os.environ.get(WEIGHTS_ENV))
    if explicit:
        paths = [resolve_weights(weights)]
    elif scale is not None:
        paths = [resolve_weights(None, scale)]
    elif every_scale and installed_scales():
        paths = [resolve_weights(None, s) for s in installed_scales()]
    else:
        paths = [resolve_weights(None, DEFAULT_SCALE)]
    infos = {}
    for path in paths:
        info = read_info(path)
        native = info.config.scale
        if scale is not None and native != scale and not any_scale:
            raise WeightsError(
                f"{path}: weights are for x{native}, but --scale {scale} was asked for; give x{scale} "
                f"weights, or --outscale {scale} to reach x{scale} with this x{native} model"
            )
        try:
            check_input(input, info.config.prior_inputs)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        infos[native] = info
    return infos


def load_models(
    infos: dict[int, WeightsInfo], *, device: str = "auto", dtype: str = "auto", tiles: TileConfig = TileConfig()
) -> dict[int, Upscaler]:
    """The models of `model_files`, loaded once onto one device (DeviceError / WeightsError)."""
    plan = plan_device(device, dtype)
    return {s: Upscaler.from_weights(info.path, plan, tiles, expect_scale=s) for s, info in sorted(infos.items())}


@dataclass
class ImageTags:
    """One image's tags, resolved and encoded on first use, so only passes that use tags pay.

    `resolve()` returns (tags, source); `encode(tags)` the (tokens, mask) pair.
    """

    resolve: Callable[[], tuple[tuple[str, ...], str]]
    encode: Callable[[tuple[str, ...]], tuple[Any, Any]]
    tags: list[str] = field(default_factory=list)
    source: str | None = None
    _tokens: tuple[Any, Any] | None = None

    def __call__(self) -> tuple[Any, Any]:
        if self._tokens is None:
            names, self.source = self.resolve()
            self.tags = list(names)
            self._tokens = self.encode(tuple(names))
        return self._tokens


class TagResolver:
    """The one way an image's tags are found, for the batch, the API and eval. `cfg` None or
    disabled: no tags (the model's null token); given tags: those for every image; auto: sidecar >
    metadata keywords > the tagger for a file, the tagger for pixels without a file. `visual`
    (eval's TAG ablation): the tagger's pooled feature as one token instead of tags. The tagger
    and the encoder (tag.guidance.TagGuidance) load on first use, once, on `device`."""

    def __init__(self, cfg: TagConfig | None, device: torch.device, *, visual: bool = False) -> None:
        self.cfg = cfg
        self.device = device
        self.visual = visual
        self._guidance: Any = None

    @property
    def enabled(self) -> bool:
        return self.cfg is not None and self.cfg.enabled

    def guidance(self) -> Any:
        """The tag.guidance.TagGuidance, made on first use."""
        if self._guidance is None:
            from linearsr_cli.tag.guidance import TagGuidance

            self._guidance = TagGuidance(self.cfg or TagConfig(), self.device)
        return self._guidance

    def for_image(self, path: Path | None, rgb: Tensor, *, given: Sequence[str] | None = None) -> ImageTags | None:
        """The tags of one image (3, h, w) and its file `path` (None for pixels alone), resolved
        and encoded only when a pass uses them; None when tags are off. `given`: these tags for
        this image instead (the API's per-call tags), encoded by the same encoder."""
        if given is not None:
            names = normalize_tags(given)
            return ImageTags(lambda: (names, "cli"), lambda _names: self.guidance().encode(names))
        if not self.enabled:
            return None
        if self.visual:
            def visual() -> tuple[Any, Any]:
                from linearsr_cli.tag.tagger import visual_token

                tok, mask = visual_token(self.guidance().tagger.features(rgb[None]))  # (1, 1, 384)
                return tok.to(self.device), mask.to(self.device)

            return ImageTags(lambda: (("<visual>",), "visual"), lambda _names: visual())

        def resolve() -> tuple[tuple[str, ...], str]:
            found = self.guidance().resolve(path, rgb)
            return tuple(found.tags), found.source

        return ImageTags(resolve, lambda names: self.guidance().encode(names))


@dataclass
class Upscaled:
    """An image through `upscale_to_size`: pixels at the output size and what ran."""

    rgb: Tensor  # (3, H, W) float32 in [0, 1], or a uint16 canvas (pixels.py) when asked `compact`
    alpha: Tensor | None  # (1, H, W) or None
    passes: tuple[int, ...]
    route: Route  # the first pass's input kind, prior and why (route.NO_PRIOR without priors)
    warnings: list[str] = field(default_factory=list)


def plan_size(
    models: dict[int, Upscaler], size: SizeRequest, w: int, h: int
) -> tuple[tuple[int, ...], tuple[int, int], tuple[int, int, int, int] | None]:
    """(native passes, size to resample to (W, H), --fit cover crop box or None) for w x h."""
    if not size.exact:
        native = next(iter(models)) if len(models) == 1 else DEFAULT_SCALE
        return (native,), (native * w, native * h), None
    resize_to, crop = size.resize_and_crop(w, h, DEFAULT_SCALE)
    return plan_passes(needed_factor(w, h, resize_to), tuple(models)), resize_to, crop


def check_canvas(w: int, h: int, passes: tuple[int, ...], max_canvas: int) -> None:
    """ConfigError when the chain's largest canvas (after the last pass, before resampling) has
    more than `max_canvas` pixels."""
    total = math.prod(passes)
    big_w, big_h = w * total, h * total
    if big_w * big_h > max_canvas:
        chain = " then ".join(f"x{p}" for p in passes)
        raise ConfigError(
            f"{w}x{h} through {chain} needs a {big_w}x{big_h} = {big_w * big_h / 1e6:,.0f} MP canvas before "
            f"resampling, over --max-canvas {max_canvas / 1e6:,.0f} MP; ask for a smaller size or raise --max-canvas"
        )


def upscale_alpha(alpha: Tensor, scale: int) -> Tensor:
    """Alpha (1, h, w) in [0, 1] upscaled by bicubic interpolation and clamped."""
    return F.interpolate(alpha[None], scale_factor=scale, mode="bicubic", align_corners=False)[0].clamp_(0, 1)


def upscale_to_size(
    models: dict[int, Upscaler],
    rgb: Tensor,
    alpha: Tensor | None,
    sampler: SamplerConfig,
    *,
    size: SizeRequest = SizeRequest(),
    tags: Callable[[], tuple[Any, Any]] | None = None,
    input: str = "auto",
    jpeg_quality: int | None = None,
    tta: bool = False,
    progress: Progress = None,
    max_canvas: int = DEFAULT_MAX_CANVAS,
    compact: bool = False,
) -> Upscaled:
    """rgb (3, h, w) [+ alpha] through the native passes `size` needs, then resampled (linear
    light) and, for --fit cover, centre-cropped to the exact output size. The canvas guard runs
    before the model; `tags` is called only if a pass can use tags; `input` "auto" lets the
    weights' router decide from the pixels and `jpeg_quality` (what the file says). `compact`:
    a tiled image may come back as a uint16 canvas (pixels.py), resampled band by band, so a
    12 MP photo at x4 never has a float copy of its output in memory (the batch asks for it)."""
    h, w = int(rgb.shape[-2]), int(rgb.shape[-1])
    passes, (out_w, out_h), crop = plan_size(models, size, w, h)
    check_canvas(w, h, passes, max_canvas)
    chain = [models[scale] for scale in passes]  # the first pass's choose_input refuses an unknown prior
    out, route = upscale_chain(chain, rgb, sampler, tags=tags, input=input, jpeg_quality=jpeg_quality,
                               tta=tta, progress=progress, compact=compact)
    up_alpha = None if alpha is None else upscale_alpha(alpha, math.prod(passes))
    resized, up_alpha = resample(out, up_alpha, (out_h, out_w))
    if resized is not out:  # hand the native canvas's pages back before the encoder allocates
        out = resized
        release_cpu_memory()
    if crop is not None:
        x0, y0, x1, y1 = crop
        out = out[:, y0:y1, x0:x1].contiguous()
        up_alpha = None if up_alpha is None else up_alpha[:, y0:y1, x0:x1].contiguous()
    notes = [route.warning] if route.warning else []
    if size.aspect_differs(w, h):
        notes.append(
            f"--width {size.width} --height {size.height} has another aspect ratio than the {w}x{h} input; "
            f"--fit {size.fit} gave {int(out.shape[-1])}x{int(out.shape[-2])}"
        )
    return Upscaled(out, up_alpha, passes, route, notes)


__all__ = [
    "DEFAULT_MAX_CANVAS", "ImageTags", "TagResolver", "Upscaled", "check_canvas", "load_models", "model_files",
    "parse_tile", "plan_size", "upscale_alpha", "upscale_to_size",
]
