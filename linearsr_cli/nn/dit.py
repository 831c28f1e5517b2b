"""The LinearSR transformer: one pixel-space linear DiT per SNR expert, routed by log-SNR.

Call contract of `Denoiser.forward` and `LinearSR.forward`:
    x_t   (B, 3, H, W) float, the noisy residual at time t, H = scale * h, W = scale * w;
    t     float or (B,) tensor in [0, 1] (1 = pure noise);
    lr    (B, 3, h, w) float in [0, 1], the low-res image;
    tags  (B, M, tag_dim) float token states or None; tag_mask (B, M) bool, True = real tag.
    prior (B,) long index into cfg.prior_inputs (which prior serves each sample), (B, P) float
          shares of the P priors (a blend: the weighted sum of their images), or None for
          the file's first prior; only experts with a prior read it. Names become indices once,
          in engine/route.py (choose_input, prior_indices), before anything reaches the model.
    Returns the x0 estimate of the residual, (B, 3, H, W), same dtype as x_t.
Any h, w >= 1 works: inputs are padded (replicate) to whole tokens inside and cropped back.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from linearsr_cli.config import ModelConfig
from linearsr_cli.nn import prior_nets
from linearsr_cli.nn.blocks import LinearDiTBlock, norm_modulate
from linearsr_cli.sampling.schedules import expert_for_log_snr, log_snr, log_snr_tensor


def timestep_features(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of 1000 t (Vaswani et al. 2017, as in DDPM/DiT); t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResidualConv(nn.Module):
    """x + conv(SiLU(conv(x))) at LR resolution: per-pixel local detail the token grid is too
    coarse for (a token covers (patch / scale)^2 LR pixels)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.silu(self.conv1(x)))


class Denoiser(nn.Module):
    """One expert: LR stem + patch embedding -> linear DiT blocks -> adaLN head -> unpatchify."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, p, k, c = cfg.dim, cfg.patch, cfg.lr_per_token, cfg.stem_channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1),
            nn.SiLU(),
            *(ResidualConv(c) for _ in range(cfg.stem_blocks)),
            nn.Conv2d(c, c, 3, padding=1),
        )
        self.embed = nn.Linear(3 * p * p + c * k * k, d)
        self.t_freq_dim = 256
        self.t_embed = nn.Sequential(nn.Linear(self.t_freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.tag_proj = nn.Linear(cfg.tag_dim, d)
        self.null_tag = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        hidden = int(round(cfg.ffn_mult * d))
        self.blocks = nn.ModuleList(
            LinearDiTBlock(d, cfg.heads, hidden, attention=cfg.attention, eps=cfg.attn_eps)
            for _ in range(cfg.depth)
        )
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_table = nn.Parameter(torch.randn(2, d) / d**0.5)
        self.head = nn.Linear(d, 3 * p * p)
        nn.init.zeros_(self.head.weight)  # start as "no residual" = bicubic
        nn.init.zeros_(self.head.bias)

    def context(self, tags: Tensor | None, tag_mask: Tensor | None, batch: int) -> tuple[Tensor, Tensor]:
        """Tag tokens projected to width d with the learned null token first; (B, 1 + M, d), mask."""
        null = self.null_tag.expand(batch, 1, -1)  # (B, 1, d)
        ones = torch.ones(batch, 1, dtype=torch.bool, device=null.device)
        if tags is None:
            return null, ones
        if tag_mask is None:
            tag_mask = torch.ones(tags.shape[:2], dtype=torch.bool, device=tags.device)
        ctx = torch.cat([null, self.tag_proj(tags.to(null.dtype))], dim=1)  # (B, 1 + M, d)
        return ctx, torch.cat([ones, tag_mask.bool()], dim=1)

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        lr: Tensor,
        tags: Tensor | None = None,
        tag_mask: Tensor | None = None,
    ) -> Tensor:
        cfg = self.cfg
        s, k, p = cfg.scale, cfg.lr_per_token, cfg.patch
        b, _, h, w = lr.shape
        if x_t.shape[-2:] != (h * s, w * s):
            raise ValueError(f"x_t is {tuple(x_t.shape[-2:])}, expected {(h * s, w * s)} for LR {(h, w)}")
        pad_h, pad_w = (-h) % k, (-w) % k
        if pad_h or pad_w:
            lr = F.pad(lr, (0, pad_w, 0, pad_h), mode="replicate")
            x_t = F.pad(x_t, (0, pad_w * s, 0, pad_h * s), mode="replicate")
        gh, gw = lr.shape[-2] // k, lr.shape[-1] // k  # token grid

        feats = F.pixel_unshuffle(self.stem(lr), k)  # (B, C k^2, gh, gw)
        pix = F.pixel_unshuffle(x_t, p)  # (B, 3 p^2, gh, gw)
        tokens = rearrange(torch.cat([pix, feats.to(pix.dtype)], dim=1), "b c h w -> b (h w) c")
        x = self.embed(tokens)  # (B, N, d)

        temb = self.t_embed(timestep_features(t, self.t_freq_dim).to(x.dtype))  # (B, d)
        t_mod = rearrange(self.t_block(temb), "b (six d) -> b six d", six=6)  # (B, 6, d)
        ctx, ctx_mask = self.context(tags, tag_mask, b)
        for block in self.blocks:
            x = block(x, t_mod, ctx, ctx_mask, (gh, gw))

        shift, scale = (self.final_table[None] + temb[:, None]).chunk(2, dim=1)  # (B, 1, d) each
        out = self.head(norm_modulate(self.final_norm, x, shift, scale))  # (B, N, 3 p^2)
        out = rearrange(out, "b (h w) c -> b c h w", h=gh, w=gw)
        out = F.pixel_shuffle(out, p)  # (B, 3, gh p, gw p)
        return out[..., : h * s, : w * s]


class BareExpert(nn.Module):
    """An expert without a network (ModelConfig.bare_experts): it adds nothing to its prior.
    No parameters, so a weights file holds nothing for it."""

    def forward(self, x_t: Tensor, t: Tensor, lr: Tensor, tags: Tensor | None = None,
                tag_mask: Tensor | None = None) -> Tensor:
        return torch.zeros_like(x_t)


class LinearSR(nn.Module):
    """The SNR mixture of experts: `num_experts` denoisers, exactly one active per sample and step.

    With a prior, the experts in cfg.prior_experts estimate x0 as prior_residual(LR) + their
    network's output (the network learns a correction to the prior). Each prior is a SPAN or an
    SRVGG network (cfg.prior_archs). The priors always run in fp32 (autocast off): SPAN scales
    its input by 255. The priors' provenance records and the router live in the weights file's
    metadata (checkpoints.WeightsInfo), not here. `prior_calls` may replace a prior's forward at inference, with grad off (input name -> a
    callable with the same contract, e.g. the ncnn backend the upscaler picks on a CPU); empty,
    or with grad on, the modules run.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.experts = nn.ModuleList(
            BareExpert() if i in cfg.bare_experts else Denoiser(cfg) for i in range(cfg.num_experts)
        )
        self.priors = nn.ModuleDict({
            name: prior_nets.build(prior_nets.net_config(cfg, arch))
            for name, arch in zip(cfg.prior_inputs, cfg.prior_archs, strict=True)
        })
        self.prior_calls: dict[str, Callable[[Tensor], Tensor]] = {}

    def _run_prior(self, name: str, lr32: Tensor) -> Tensor:
        """The prior `name` on lr32: its `prior_calls` replacement when grad is off, else the module
        (training needs the module's gradients and current weights)."""
        run = None if torch.is_grad_enabled() else self.prior_calls.get(name)
        return (run or self.priors[name])(lr32).to(lr32.device)

    def prior_image(self, lr: Tensor, prior: Tensor | None = None) -> Tensor:
        """prior(LR), each sample through its prior (or its blend of them): (B, 3, H, W) float32,
        not clamped (the priors' own contract), on lr's device."""
        cfg = self.cfg
        lr32 = lr.float()
        with torch.autocast(lr.device.type, enabled=False):
            if prior is not None and prior.is_floating_point():  # (B, P) shares: a blend of the priors
                shares = prior.to(device=lr.device, dtype=torch.float32)[:, :, None, None, None]
                used = (prior != 0).any(0).nonzero().flatten().tolist()
                return sum(shares[:, k] * self._run_prior(cfg.prior_inputs[k], lr32) for k in used)
            indices = [0] if prior is None else prior.unique().tolist()  # None: the file's first prior
            if len(indices) == 1:
                return self._run_prior(cfg.prior_inputs[int(indices[0])], lr32)  # (B, 3, H, W)
            up = lr32.new_empty(lr.shape[0], 3, lr.shape[2] * cfg.scale, lr.shape[3] * cfg.scale)
            for k in indices:
                idx = (prior == k).nonzero().squeeze(1).to(lr.device)
                up[idx] = self._run_prior(cfg.prior_inputs[int(k)], lr32[idx])
            return up

    def prior_residual(self, lr: Tensor, prior: Tensor | None = None) -> Tensor:
        """(prior(LR) - bicubic(LR)) / residual_scale, each sample through its prior; (B, 3, H, W) float32."""
        up = self.prior_image(lr, prior)
        with torch.autocast(lr.device.type, enabled=False):
            return (up - bicubic_upsample(lr.float(), self.cfg.scale)) / self.cfg.residual_scale

    def _expert(
        self, e: int, x_t: Tensor, t: Tensor, lr: Tensor, tags: Tensor | None, tag_mask: Tensor | None,
        prior: Tensor | None,
    ) -> Tensor:
        if e in self.cfg.bare_experts:  # the prior alone: no network to run
            return self.prior_residual(lr, prior).to(x_t.dtype)
        out = self.experts[e](x_t, t, lr, tags, tag_mask)
        if e in self.cfg.prior_experts:
            out = (out.float() + self.prior_residual(lr, prior)).to(x_t.dtype)
        return out

    def expert_index(self, t: float) -> int:
        """The expert for time t: the one whose log-SNR interval holds lambda(t)."""
        return expert_for_log_snr(log_snr(float(t)), self.cfg.expert_boundaries)

    def forward(
        self,
        x_t: Tensor,
        t: float | Tensor,
        lr: Tensor,
        tags: Tensor | None = None,
        tag_mask: Tensor | None = None,
        prior: Tensor | None = None,
    ) -> Tensor:
        b = x_t.shape[0]
        t64 = torch.as_tensor(t, dtype=torch.float64).detach().cpu().reshape(-1).expand(b)
        if not bool(((t64 >= 0.0) & (t64 <= 1.0)).all()):  # a NaN log-SNR would pick the last expert
            raise ValueError(f"t must lie in [0, 1], got {t64.tolist()}")
        bounds = torch.tensor(self.cfg.expert_boundaries, dtype=torch.float64)
        route = torch.bucketize(log_snr_tensor(t64), bounds, right=True)  # (B,) expert per sample
        tt = t64.to(device=x_t.device, dtype=torch.float32)
        if bool((route == route[0]).all()):
            return self._expert(int(route[0]), x_t, tt, lr, tags, tag_mask, prior)
        out = torch.empty_like(x_t)
        for e in route.unique().tolist():
            idx = (route == e).nonzero().squeeze(1).to(x_t.device)
            sub_tags = None if tags is None else tags[idx]
            sub_mask = None if tag_mask is None else tag_mask[idx]
            sub_prior = None if prior is None else prior[idx.cpu()]
            out[idx] = self._expert(e, x_t[idx], tt[idx], lr[idx], sub_tags, sub_mask, sub_prior)
        return out


def bicubic_upsample(lr: Tensor, scale: int) -> Tensor:
    """Bicubic (a = -0.75, PyTorch's kernel) upsample of (B, C, h, w) by an integer scale."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)


BICUBIC_REACH = 2  # LR pixels on each side that a bicubic output pixel reads (taps floor - 1 .. floor + 2)


def bicubic_region(lr: Tensor, box: tuple[int, int, int, int], scale: int) -> Tensor:
    """bicubic_upsample(lr, scale) over the LR box (y0, x0, y1, x1) only: the same values, from a
    crop of `lr` with BICUBIC_REACH pixels of context (fewer at the image border, where the
    whole-image upsample clamps the same way). (B, C, s (y1 - y0), s (x1 - x0))."""
    y0, x0, y1, x1 = box
    h, w = lr.shape[-2:]
    a0, b0 = max(y0 - BICUBIC_REACH, 0), max(x0 - BICUBIC_REACH, 0)
    a1, b1 = min(y1 + BICUBIC_REACH, h), min(x1 + BICUBIC_REACH, w)
    up = bicubic_upsample(lr[..., a0:a1, b0:b1], scale)
    return up[..., (y0 - a0) * scale : (y1 - a0) * scale, (x0 - b0) * scale : (x1 - b0) * scale]


def residual_target(hr: Tensor, lr: Tensor, cfg: ModelConfig) -> Tensor:
    """x0 of the flow: (HR - bicubic(LR)) / residual_scale, roughly unit variance."""
    return (hr - bicubic_upsample(lr, cfg.scale)) / cfg.residual_scale


def compose_unclamped(lr: Tensor, x0: Tensor, cfg: ModelConfig, box: tuple[int, int, int, int] | None = None) -> Tensor:
    """bicubic(LR) + residual_scale * x0 without clamping (differentiable everywhere), float32;
    with `box`, x0 is the tile of the LR box (y0, x0, y1, x1) and bicubic that region of LR
    (bicubic_region)."""
    base = bicubic_upsample(lr, cfg.scale) if box is None else bicubic_region(lr, box, cfg.scale)
    return base.float() + cfg.residual_scale * x0.float()


def compose_output(lr: Tensor, x0: Tensor, cfg: ModelConfig) -> Tensor:
    """The HR image from an x0 estimate: bicubic(LR) + residual_scale * x0, clamped to [0, 1]."""
    base = bicubic_upsample(lr, cfg.scale).float()  # (B, 3, H, W), a fresh tensor
    return base.add_(x0.float(), alpha=cfg.residual_scale).clamp_(0.0, 1.0)  # fused, in place

