"""ST-LPIPS network: the shift-tolerant LPIPS distance (Ghildyal & Liu 2022, *Shift-tolerant
Perceptual Similarity Metric*, ECCV), AlexNet variant. Lower = perceptually closer.

LPIPS (Zhang et al. 2018) on an AlexNet trunk made shift-tolerant: conv1 at stride 1 followed by
blur-pooling (a [1, 2, 1]^2 / 16 binomial filter at stride 2 after reflect padding by 2), and
every max-pool at stride 1 followed by the same blur-pool. Per layer l the unit-normalised
features of both images are compared, (f0 - f1)^2 is weighted per channel by a learned 1x1
conv, averaged over space, and the five layers are summed. Weights: linearsr_cli.perceptual.
Differentiable, so it also serves as a training loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CHANNELS = (64, 192, 384, 256, 256)
# LPIPS v0.1 input scaling of [-1, 1] RGB (Zhang et al. 2018)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class BlurPool(nn.Module):
    """Anti-aliased downsampling (Zhang 2019): reflect-pad 2, depthwise [1,2,1]^2/16, stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        kernel = (a[:, None] * a[None, :]) / 16.0  # (3, 3)
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.kernel, stride=2, groups=x.shape[1])


class ShiftTolerantAlexNet(nn.Module):
    """The five ReLU feature maps of the shift-tolerant AlexNet trunk."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 11, stride=1, padding=2)
        self.blur1 = BlurPool(64)
        self.blur2 = BlurPool(64)
        self.conv2 = nn.Conv2d(64, 192, 5, padding=2)
        self.blur3 = BlurPool(192)
        self.conv3 = nn.Conv2d(192, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 256, 3, padding=1)
        self.conv5 = nn.Conv2d(256, 256, 3, padding=1)

    def forward(self, x: Tensor) -> list[Tensor]:
        h1 = F.relu(self.blur1(self.conv1(x)))
        h2 = F.relu(self.conv2(self.blur2(F.max_pool2d(h1, 3, stride=1))))
        h3 = F.relu(self.conv3(self.blur3(F.max_pool2d(h2, 3, stride=1))))
        h4 = F.relu(self.conv4(h3))
        h5 = F.relu(self.conv5(h4))
        return [h1, h2, h3, h4, h5]


def unit_normalise(x: Tensor, eps: float = 1e-10) -> Tensor:
    """Features divided by their L2 norm over channels (LPIPS Eq. 1)."""
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class STLPIPS(nn.Module):
    """distance(a, b): (B, 3, H, W) RGB in [0, 1] each -> (B,) ST-LPIPS distances."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = ShiftTolerantAlexNet()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        fa = self.trunk(((2.0 * a - 1.0) - self.shift) / self.scale)
        fb = self.trunk(((2.0 * b - 1.0) - self.shift) / self.scale)
        total = a.new_zeros(a.shape[0])
        for lin, x, y in zip(self.lins, fa, fb, strict=True):
            total = total + lin((unit_normalise(x) - unit_normalise(y)) ** 2).mean(dim=(1, 2, 3))
        return total
