"""The Upscaler: owns the model, the device and the dtype; turns an LR tensor into an HR tensor.

Call contract of `Upscaler.__call__(lr, sampler, ...)`:
    lr       (3, h, w) float32 in [0, 1], on any device; any h, w >= 1 (odd sizes, 1-pixel
             strips: the model pads with replicate to whole tokens and crops back, tiles too).
    returns  (3, s h, s w) float32 in [0, 1] on the CPU, s = the weights' scale; with
             compact=True, a tiled image comes back as uint16 (round(v * 65535)), the canvas
             that the batch encodes without a float copy of the whole output.
    Noise:   sampling/noise.NoiseField over the (1, 3, s h, s w) canvas from `sampler.seed`
             (identical on every device and for every tiling): drawn whole up to 33.5 MP,
             block by block beyond, so that no tile needs the whole canvas; or `noise` itself.
             Runs that visit only bare experts (runs_network) draw none. A run whose output is
             the prior's image alone (`prior_only`: one evaluation by a bare expert, the
             fidelity preset of the shipped weights) returns clamp(prior(LR)), per tile when
             tiled: bicubic + residual_scale * (prior - bicubic) / residual_scale up to
             rounding, without the two bicubic upsamples.
    tta:     the 8 dihedral transforms of the input, each sampled with the noise transformed
             alike, transformed back and averaged (engine/tta.py): 8x the cost, and the whole
             noise and a float output canvas in memory.
    Tiling:  the whole image in one pass when it fits the memory budget (auto_tile). Otherwise
             tiles of `tile` LR pixels with `overlap`, each sampled on its own from its crop of
             the noise (every step of a multi-step run, then composed with its own bicubic
             region) and blended straight into the output canvas (engine/tiling.TileCanvas), so
             memory holds that canvas plus one tile's work. An out-of-memory error halves the
             tile and starts the image over (down to TileConfig.min_tile).
    dtype:   the model runs under autocast(plan.autocast) when set; composing and blending
             stay float32, and so does the output unless `compact` (a prior always runs in
             fp32; on the CPU through PyTorch or ncnn, engine.device.cpu_prior_backend,
             decided on the prior's first call).
    cond:    the image's Conditioning: the index of the prior that serves it ("clean", "real" or
             "texture", see config.PRIOR_INPUTS; engine/route.choose_input picks it and gives
             the index: a Route), the tag tokens and their mask; tiles and sampling steps pass it
             along. None: the file's first prior, no tags.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from linearsr_cli.checkpoints import WeightsInfo, load_weights
from linearsr_cli.config import ModelConfig, SamplerConfig, TileConfig
from linearsr_cli.engine.device import (
    DevicePlan,
    is_out_of_memory,
    prefers_channels_last,
    prior_backend_setting,
    release_cpu_memory,
    tune_cpu_allocator,
)
from linearsr_cli.engine.ncnn_prior import CpuPrior
from linearsr_cli.engine.route import NO_PRIOR, Route, Router, choose_input, prior_indices
from linearsr_cli.engine.tiling import TileCanvas, plan_tiles
from linearsr_cli.engine.tta import DIHEDRAL, apply, invert
from linearsr_cli.errors import DeviceError
from linearsr_cli.nn.dit import LinearSR, compose_output, compose_unclamped
from linearsr_cli.sampling.noise import NoiseField
from linearsr_cli.sampling.samplers import count_evaluations, evaluation_times, sample
from linearsr_cli.sampling.schedules import expert_for_log_snr, log_snr

Progress = Callable[[int, int], None] | None










@dataclass(frozen=True)
class Conditioning:
    """What one image is conditioned on, beyond its pixels: the prior that serves it (an index
    into the weights' prior_inputs, or a blend's shares over them: Route.condition; None without
    priors), and its tag tokens (1, M, D) with their
    mask (1, M), True = a real tag (None, None = the null token)."""

    prior: int | tuple[float, ...] | None = None
    tags: Tensor | None = None
    tag_mask: Tensor | None = None

    def with_tags(self, tags: Tensor | None, tag_mask: Tensor | None) -> Conditioning:
        """The same prior with these tag tokens and mask."""
        return Conditioning(self.prior, tags, tag_mask)

    def to(self, device: torch.device) -> Conditioning:
        """The same conditioning with its tensors on `device`."""
        return Conditioning(
            self.prior,
            None if self.tags is None else self.tags.to(device),
            None if self.tag_mask is None else self.tag_mask.to(device),
        )

    def prior_tensor(self) -> Tensor | None:
        """What the model reads as `prior`: the (1,) long prior index, a blend's (1, P) float32
        shares, or None."""
        if self.prior is None:
            return None
        dtype = torch.long if isinstance(self.prior, int) else torch.float32
        return torch.tensor([self.prior], dtype=dtype)


def bytes_per_token(cfg: ModelConfig) -> int:
    """A conservative estimate of activation memory per token in one forward pass (measured
    about 10 KB per token for the default config on the CPU; this says ~16 KB)."""
    hidden = int(round(cfg.ffn_mult * cfg.dim))
    return 4 * (8 * cfg.dim + 6 * hidden + 6 * 3 * cfg.patch * cfg.patch)


def auto_tile(cfg: ModelConfig, tiles: TileConfig, h: int, w: int) -> int:
    """LR tile side for an h x w image: 0 (whole image) when its tokens fit the memory budget,
    else the largest token-aligned square tile that fits."""
    if tiles.tile:
        return tiles.tile
    k = cfg.lr_per_token
    budget_tokens = tiles.memory_budget_mb * 2**20 / bytes_per_token(cfg)
    if math.ceil(h / k) * math.ceil(w / k) <= budget_tokens:
        return 0
    side = int(math.sqrt(budget_tokens)) * k
    return max(side, tiles.min_tile, 2 * tiles.overlap + 2 * k)


class Upscaler:
    """A loaded model on a device, ready to upscale tensors (see the module docstring)."""

    def __init__(self, model: LinearSR, plan: DevicePlan, tiles: TileConfig, info: WeightsInfo | None = None) -> None:
        if plan.device.type == "cpu":
            tune_cpu_allocator()
        self.model = model.to(plan.device).eval()
        if prefers_channels_last(plan.device) and hasattr(self.model, "priors"):
            for prior in self.model.priors.values():  # the convolution-only SPAN priors
                prior.to(memory_format=torch.channels_last)
        if plan.device.type == "cpu" and hasattr(self.model, "priors"):
            prior_backend_setting()  # a bad LINEARSR_PRIOR_BACKEND fails here, before any image
            self.model.prior_calls = {name: CpuPrior(prior) for name, prior in self.model.priors.items()}
        self.cfg: ModelConfig = model.cfg
        self.plan = plan
        self.tiles = tiles
        self.info = info
        # --input auto's gate, from the file's metadata (a model made in memory has none)
        self.router = Router.from_dict(info.router) if info is not None and info.router else None

    @classmethod
    def from_weights(
        cls, path: str | Path, plan: DevicePlan, tiles: TileConfig, *, expect_scale: int | None = None
    ) -> Upscaler:
        """Load a weights file strictly (raises WeightsError) and move it to the device."""
        model, info = load_weights(path, expect_scale=expect_scale)
        return cls(model, plan, tiles, info)

    @property
    def scale(self) -> int:
        return self.cfg.scale

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.plan.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.plan.device.type, dtype=self.plan.autocast)

    def uses_tags(self, sampler: SamplerConfig) -> bool:
        """Whether tags can change the output of a `sampler` run (runs_network)."""
        return runs_network(self.cfg, sampler)

    def prior_only(self, sampler: SamplerConfig) -> bool:
        """Whether a `sampler` run's output is the prior's image alone (the module function)."""
        return prior_only(self.cfg, sampler)

    @torch.inference_mode()
    def real_prior_probe(self, lr: Tensor) -> Tensor:
        """The `real` prior's image of (3, h, w) `lr`, (3, s h, s w) float32 on the CPU, not
        clamped: the router's `sharpening` evidence (engine/route.measure)."""
        index = prior_indices(self.cfg, ["real"])
        return self.model.prior_image(lr.float()[None].to(self.plan.device), index)[0].float().cpu()

    def _forward(self, x_t: Tensor, t: float, lr: Tensor, cond: Conditioning, prior: Tensor | None) -> Tensor:
        """One network evaluation on (1, 3, h, w) LR and its (1, 3, s h, s w) x_t -> x0_hat, float32 on the CPU."""
        dev = self.plan.device
        with self._autocast():
            out = self.model(x_t.to(dev), t, lr.to(dev), cond.tags, cond.tag_mask, prior)
        return out.float().cpu()

    def tile_count(self, h: int, w: int) -> int:
        """Tiles one run uses for an h x w LR image under the configured tiling."""
        tile = auto_tile(self.cfg, self.tiles, h, w)
        return len(plan_tiles(h, w, tile, self.tiles.overlap, self.scale, align=self.cfg.lr_per_token))

    @torch.inference_mode()
    def __call__(
        self,
        lr: Tensor,
        sampler: SamplerConfig,
        cond: Conditioning | None = None,
        *,
        progress: Progress = None,
        tta: bool = False,
        noise: Tensor | None = None,
        compact: bool = False,
    ) -> Tensor:
        if lr.dim() != 3 or lr.shape[0] != 3:
            raise ValueError(f"lr must be (3, h, w), got {tuple(lr.shape)}")
        lr = lr.detach().float().cpu()[None].clamp(0.0, 1.0)  # (1, 3, h, w)
        h, w = lr.shape[-2:]
        s = self.scale
        shape = (1, 3, h * s, w * s)
        if noise is not None:
            if tuple(noise.shape) != shape:
                raise ValueError(f"noise must be {shape}, got {tuple(noise.shape)}")
            field = NoiseField.of(noise)
        elif runs_network(self.cfg, sampler):
            field = NoiseField(shape, sampler.seed)
        else:  # bare priors alone: the noise never reaches the output, so none is drawn
            field = NoiseField.of(torch.zeros(()).expand(shape))
        cond = Conditioning(choose_input(self.cfg, None, None).index) if cond is None else cond
        transforms = DIHEDRAL if tta else DIHEDRAL[:1]
        per_run = count_evaluations(sampler)
        total = sum(per_run * self.tile_count(*apply(lr, g).shape[-2:]) for g in transforms)
        done = [0]

        def on_tile(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(min(done[0], total), total)

        if not tta:
            return self._sample(lr, field, sampler, cond, on_tile, compact)
        full = field.full()  # the self-ensemble: same noise, transformed alike; outputs averaged
        out = None
        for g in transforms:
            sr = invert(self._sample(apply(lr, g), NoiseField.of(apply(full, g)), sampler, cond, on_tile)[None], g)
            out = sr if out is None else out.add_(sr)
        assert out is not None
        return out.div_(len(transforms))[0]

    def _sample(
        self, lr: Tensor, field: NoiseField, sampler: SamplerConfig, cond: Conditioning,
        on_tile: Callable[[int], None], compact: bool = False,
    ) -> Tensor:
        """One sampling run of (1, 3, h, w) LR from `field`'s noise -> (3, sH, sW): float32 in
        [0, 1]; uint16 (v * 65535) when tiled and `compact` (see the module docstring)."""
        h, w = lr.shape[-2:]
        k = self.cfg.lr_per_token
        cond = cond.to(self.plan.device)
        prior = cond.prior_tensor()
        tile = auto_tile(self.cfg, self.tiles, h, w)
        if len(plan_tiles(h, w, tile, self.tiles.overlap, self.scale, align=k)) == 1:
            try:
                if self.prior_only(sampler):  # the prior's image is the output: no bicubic, no residual
                    return self._prior_image(lr, prior, on_tile)[0].clamp_(0.0, 1.0)
                x0 = sample(self._evaluations(lr, cond, prior, on_tile), field.full(), sampler)
                return compose_output(lr, x0, self.cfg)[0]  # (3, sH, sW) float32 in [0, 1]
            except (RuntimeError, MemoryError) as exc:
                tile = self._smaller_tile(exc, max(h, w))
        while True:
            try:
                return self._sample_tiles(lr, field, sampler, cond, prior, on_tile, tile, compact)
            except (RuntimeError, MemoryError) as exc:
                tile = self._smaller_tile(exc, tile)

    def _evaluations(
        self, lr: Tensor, cond: Conditioning, prior: Tensor | None, on_tile: Callable[[int], None]
    ) -> Callable[[Tensor, float], Tensor]:
        """The `denoise(x_t, t) -> x0_hat` the samplers call, for one (1, 3, h, w) LR image or tile."""

        def denoise(x_t: Tensor, t: float) -> Tensor:
            out = self._forward(x_t, t, lr, cond, prior)
            on_tile(1)
            return out

        return denoise

    def _prior_image(self, lr: Tensor, prior: Tensor | None, on_tile: Callable[[int], None]) -> Tensor:
        """The prior's image of one (1, 3, h, w) LR image or tile, (1, 3, s h, s w) float32 on the
        CPU, not clamped (`prior_only` runs: the one evaluation)."""
        out = self.model.prior_image(lr.to(self.plan.device), prior).float().cpu()
        on_tile(1)
        return out

    def _smaller_tile(self, exc: BaseException, current: int) -> int:
        """The tile side to retry with after `exc` if it is an out-of-memory error (re-raised
        otherwise); DeviceError when tiles cannot shrink further."""
        if not is_out_of_memory(exc):
            raise exc
        if self.plan.device.type == "cuda":
            torch.cuda.empty_cache()
        k, overlap = self.cfg.lr_per_token, self.tiles.overlap
        smaller = max(current // 2 // k * k, 2 * overlap + 2 * k)
        if current <= self.tiles.min_tile or smaller >= current:
            raise DeviceError(
                f"out of memory even with {current}-pixel tiles; try --tile smaller, "
                "--device cpu or a smaller --tile-overlap"
            ) from None
        return smaller

    def _sample_tiles(
        self, lr: Tensor, field: NoiseField, sampler: SamplerConfig, cond: Conditioning, prior: Tensor | None,
        on_tile: Callable[[int], None], tile: int, compact: bool,
    ) -> Tensor:
        """The tiled run: each tile sampled whole from its crop of the noise, composed with its
        bicubic region and blended into a (3, sH, sW) canvas (uint16 if `compact`)."""
        h, w = lr.shape[-2:]
        s = self.scale
        plan = plan_tiles(h, w, tile, self.tiles.overlap, s, align=self.cfg.lr_per_token)
        overlap_hr = self.tiles.overlap * s
        board = TileCanvas(plan, (3, h * s, w * s), torch.uint16 if compact else torch.float32,
                           overlap_hr, margin_hr=overlap_hr // 4)
        image = self.prior_only(sampler)
        for t in plan:
            y0, x0, y1, x1 = t.lr_box
            if image:
                values = self._prior_image(lr[..., y0:y1, x0:x1], prior, on_tile)
            else:
                x0_hat = sample(self._evaluations(lr[..., y0:y1, x0:x1], cond, prior, on_tile), field.crop(t.hr_box),
                                sampler)
                values = compose_unclamped(lr, x0_hat, self.cfg, box=t.lr_box)
                del x0_hat
            board.add(t, values[0])
            del values
            release_cpu_memory()  # the tile's freed activations: tiles of other sizes, and the encoder, fit in none
        return board.canvas


def runs_network(cfg: ModelConfig, sampler: SamplerConfig) -> bool:
    """Whether a `sampler` run of a `cfg` model evaluates an expert network, so that its tags and
    its starting noise can change the output: not when every expert it visits is a bare prior
    (the fidelity preset of weights whose structure expert is the prior)."""
    experts = (expert_for_log_snr(log_snr(float(t)), cfg.expert_boundaries) for t in evaluation_times(sampler))
    return any(e not in cfg.bare_experts for e in experts)


def prior_only(cfg: ModelConfig, sampler: SamplerConfig) -> bool:
    """Whether a `sampler` run of a `cfg` model outputs the prior's image alone: one evaluation,
    by a bare expert, whose x0 is (prior - bicubic) / residual_scale, which the output turns back
    into bicubic + residual_scale * x0 = the prior's image. The noise is not read."""
    return count_evaluations(sampler) == 1 and not runs_network(cfg, sampler)


def upscale_chain(
    chain: Sequence[Upscaler],
    lr: Tensor,
    sampler: SamplerConfig,
    *,
    tags: Callable[[], tuple[Tensor | None, Tensor | None]] | None = None,
    input: str = "auto",
    jpeg_quality: int | None = None,
    tta: bool = False,
    progress: Progress = None,
    compact: bool = False,
) -> tuple[Tensor, Route]:
    """`lr` (3, h, w) through native passes one after another (e.g. x4 then x2 for --outscale 6):
    (3, S h, S w) with S the product of their scales, and the route of the first pass. The first
    pass's prior is chosen for `input` (engine/route.choose_input; auto: its router looks at
    `lr`, and `jpeg_quality` of its file); later ones see a clean image and get the file's first
    (clean) prior. `tags` returns the input's tag tokens; it is called only if a pass can use
    them. `compact`: the last pass may return a uint16 canvas (Upscaler.__call__)."""
    out, first = lr, NO_PRIOR
    for index, up in enumerate(chain):
        # the first pass: an unknown prior fails here, before any work
        route = choose_input(up.cfg, up.router, input if index == 0 else None, lr, jpeg_quality, sampler,
                             weights_name=up.info.path.name if up.info is not None else "these weights",
                             probe=up.real_prior_probe)
        first = route if index == 0 else first
        cond = Conditioning(route.condition)
        if tags is not None and up.uses_tags(sampler):
            cond = cond.with_tags(*tags())
        out = up(out, sampler, cond, progress=progress, tta=tta, compact=compact and index == len(chain) - 1)
    return out, first






