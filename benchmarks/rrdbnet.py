"""RRDBNet, the generator of ESRGAN / Real-ESRGAN x4plus, written for a framework-fair speed peer.

Real-ESRGAN x4plus runs in `ncnn` (linearsr_cli/evaluate/peers.py); this is the same architecture in PyTorch
so that it can be timed with the same framework, threads and autocast as LinearSR. The weights
are not needed for timing (cost does not depend on the values), so the module is built with
PyTorch's default initialisation and is never loaded from a file here.

Architecture (Wang et al. 2018, ESRGAN, Fig. 4; Wang et al. 2021, Real-ESRGAN): a 3x3 conv to
`num_feat` channels, `num_block` residual-in-residual dense blocks (three 5-conv dense blocks
each, residuals scaled by 0.2), a 3x3 conv with a long skip, then two (nearest x2 upsample ->
3x3 conv -> LeakyReLU 0.2) stages, a 3x3 conv, LeakyReLU and a 3x3 conv to RGB. All the heavy
work runs at LR resolution; only the upsampling convs see the 2x and 4x grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from linearsr_cli.errors import ConfigError


@dataclass(frozen=True)
class RRDBConfig:
    """RRDBNet hyper-parameters; the defaults are Real-ESRGAN x4plus (16.7 M parameters)."""

    num_feat: int = 64
    num_block: int = 23
    num_grow: int = 32
    scale: int = 4

    def __post_init__(self) -> None:
        if self.scale not in (2, 4):
            raise ConfigError(f"RRDBNet upsamples by nearest x2 stages: scale 2 or 4, got {self.scale}")
        if min(self.num_feat, self.num_block, self.num_grow) < 1:
            raise ConfigError("RRDBNet num_feat, num_block and num_grow must be >= 1")


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2)


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each fed the concatenation of the block input and all earlier outputs
    (dense connectivity), output scaled by 0.2 and added to the input (ESRGAN RDB)."""

    def __init__(self, num_feat: int, num_grow: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(num_feat + i * num_grow, num_grow if i < 4 else num_feat, 3, padding=1)
            for i in range(5)
        )

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for conv in self.convs[:4]:
            feats.append(_lrelu(conv(torch.cat(feats, dim=1))))  # (B, num_feat + i * grow, h, w) in
        out = self.convs[4](torch.cat(feats, dim=1))  # (B, num_feat, h, w)
        return out * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block: three RDBs in a chain, residual scaled by 0.2 (ESRGAN)."""

    def __init__(self, num_feat: int, num_grow: int) -> None:
        super().__init__()
        self.rdbs = nn.Sequential(*(ResidualDenseBlock(num_feat, num_grow) for _ in range(3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.rdbs(x) * 0.2 + x


class RRDBNet(nn.Module):
    """The ESRGAN / Real-ESRGAN x4plus generator: (B, 3, h, w) -> (B, 3, scale h, scale w)."""

    def __init__(self, cfg: RRDBConfig) -> None:
        super().__init__()
        self.cfg = cfg
        nf = cfg.num_feat
        self.conv_first = nn.Conv2d(3, nf, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(nf, cfg.num_grow) for _ in range(cfg.num_block)))
        self.conv_body = nn.Conv2d(nf, nf, 3, padding=1)
        self.ups = nn.ModuleList(nn.Conv2d(nf, nf, 3, padding=1) for _ in range(cfg.scale // 2))
        self.conv_hr = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_last = nn.Conv2d(nf, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv_first(x)  # (B, nf, h, w)
        feat = feat + self.conv_body(self.body(feat))
        for conv in self.ups:
            feat = _lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))  # (B, nf, 2h, 2w)
        return self.conv_last(_lrelu(self.conv_hr(feat)))  # (B, 3, scale h, scale w)
