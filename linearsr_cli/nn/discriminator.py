"""A U-Net discriminator with spectral normalisation: one real/fake logit per pixel.

The shape follows the discriminator of Real-ESRGAN (Wang et al., ICCV Workshops 2021, section
3.3): a conv encoder that halves the resolution three times, a decoder that doubles it back with
skip connections, spectral norm (Miyato et al., ICLR 2018) on every conv but the first and last,
so its per-pixel verdict can judge local texture as well as global structure. Width is a config
field: the CPU recipe uses a narrower network than the paper's 64 channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from linearsr_cli.errors import ConfigError


@dataclass(frozen=True)
class DiscriminatorConfig:
    channels: int = 32  # width of the first level; the next ones have 2x, 4x, 8x
    slope: float = 0.2  # LeakyReLU negative slope

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ConfigError(f"discriminator channels must be >= 1, got {self.channels}")


class UNetDiscriminator(nn.Module):
    """(B, 3, H, W) image in [0, 1] -> (B, 1, H, W) logits; H and W multiples of 8."""

    def __init__(self, cfg: DiscriminatorConfig = DiscriminatorConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels

        def sn_conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
            return spectral_norm(nn.Conv2d(cin, cout, k, stride, padding=k // 2 if stride == 1 else 1, bias=False))

        self.conv_in = nn.Conv2d(3, c, 3, 1, 1)
        self.down = nn.ModuleList([sn_conv(c, 2 * c, 4, 2), sn_conv(2 * c, 4 * c, 4, 2), sn_conv(4 * c, 8 * c, 4, 2)])
        self.up = nn.ModuleList([sn_conv(8 * c, 4 * c, 3), sn_conv(4 * c, 2 * c, 3), sn_conv(2 * c, c, 3)])
        self.refine = nn.Sequential(sn_conv(c, c, 3), nn.LeakyReLU(cfg.slope), sn_conv(c, c, 3), nn.LeakyReLU(cfg.slope))
        self.conv_out = nn.Conv2d(c, 1, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        act = self.cfg.slope
        h = F.leaky_relu(self.conv_in(x), act)  # (B, c, H, W)
        skips = [h]
        for conv in self.down:
            h = F.leaky_relu(conv(h), act)  # (B, 2c|4c|8c, H/2|H/4|H/8, ...)
            skips.append(h)
        skips.pop()  # the deepest level is h itself
        for conv in self.up:
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = F.leaky_relu(conv(h), act) + skips.pop()  # (B, 4c|2c|c, ...)
        return self.conv_out(self.refine(h))  # (B, 1, H, W)
