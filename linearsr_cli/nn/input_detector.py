"""The input detector: is an LR image clean (bicubic-like) or degraded the real-world way (noise,
blur, JPEG)? It picks which prior serves an image under `--input auto`.

A small CNN (about 12k parameters) on the LR image: three 3x3 convs (the last two at stride 2)
with SiLU, then the mean and the standard deviation of the last feature map over all positions
(so any image size works and a whole photo is judged at once), and a linear head giving the
logit of p(real-world). Call contract: (B, 3, h, w) float RGB in [0, 1], h, w >= 4 -> (B,) logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class InputDetector(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1)
        self.head = nn.Linear(4 * width, 1)

    def forward(self, lr: Tensor) -> Tensor:
        x = 2.0 * lr.float() - 1.0
        x = F.silu(self.conv3(F.silu(self.conv2(F.silu(self.conv1(x))))))  # (B, 2w, h/4, w/4)
        flat = x.flatten(2)  # (B, 2w, N)
        pooled = torch.cat([flat.mean(dim=2), flat.std(dim=2, unbiased=False)], dim=1)  # (B, 4w)
        return self.head(pooled)[:, 0]
