"""SRVGGNetCompact: Real-ESRGAN's compact VGG-style network (the realesr-general-x4v3 prior).

Xintao Wang, Liangbin Xie, Chao Dong, Ying Shan, *Real-ESRGAN: Training Real-World Blind
Super-Resolution with Pure Synthetic Data*, ICCV Workshops 2021; the compact model is the one the
authors released as realesr-general-x4v3 (BSD-3-Clause). Written here from its description and
its ncnn graph (the .param file), not from the authors' code:

    f = PReLU(conv_first(x))                        3 -> F, 3x3
    f = PReLU_i(body_i(f)),  i = 1 .. convs         F -> F, 3x3, one slope per channel
    out = pixel_shuffle(conv_last(f), s) + nearest_upsample(x, s)    F -> 3 s^2, 3x3

All work happens at LR resolution; the network learns the residual over a nearest upsample.

Call contract: (B, 3, h, w) float RGB in [0, 1] -> (B, 3, s h, s w), not clamped. Zero padding
at the borders, as the convs of the original. No I/O here: weights come from
`linearsr_cli.priors` (the ncnn converter) or from a LinearSR weights file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from linearsr_cli.errors import ConfigError


@dataclass(frozen=True)
class SrvggConfig:
    """The shape of an SRVGGNetCompact: feature channels, body convs (each with its PReLU), scale.
    realesr-general-x4v3 is (64, 32, 4): 1,213,296 parameters."""

    features: int = 64
    convs: int = 32
    scale: int = 4

    def __post_init__(self) -> None:
        if self.features < 1 or self.convs < 0 or self.scale < 1:
            raise ConfigError(f"SRVGG needs features >= 1, convs >= 0 and scale >= 1, got {self}")

    def num_parameters(self) -> int:
        """Weights + biases of every conv and one PReLU slope per channel per activation."""
        f, s2 = self.features, self.scale * self.scale
        first = 3 * f * 9 + f + f
        body = self.convs * (f * f * 9 + f + f)
        last = f * 3 * s2 * 9 + 3 * s2
        return first + body + last


class Srvgg(nn.Module):
    """SRVGGNetCompact with PReLU activations (see the module docstring for the graph)."""

    def __init__(self, cfg: SrvggConfig) -> None:
        super().__init__()
        self.cfg = cfg
        f = cfg.features
        self.conv_first = nn.Conv2d(3, f, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(f, f, 3, padding=1) for _ in range(cfg.convs))
        self.acts = nn.ModuleList(nn.PReLU(f) for _ in range(cfg.convs + 1))  # acts[0] follows conv_first
        self.conv_last = nn.Conv2d(f, 3 * cfg.scale * cfg.scale, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        f = self.acts[0](self.conv_first(x))  # (B, F, h, w)
        for conv, act in zip(self.body, self.acts[1:], strict=True):
            f = act(conv(f))
        out = F.pixel_shuffle(self.conv_last(f), self.cfg.scale)  # (B, 3 s^2, h, w) -> (B, 3, s h, s w)
        return out + F.interpolate(x, scale_factor=self.cfg.scale, mode="nearest")
