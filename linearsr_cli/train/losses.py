"""The image loss terms of training and the weights that turn them on.

`LossWeights` holds what every run can weigh: ST-LPIPS and the U-Net critic's adversarial term
(train/adversarial.py), on HR or its unsharp mask. `PriorLossWeights` adds what only the prior
takes: L1 against the target and against a teacher's outputs (train/teacher.py). The denoiser
has neither: its reconstruction term is the x0-MSE, and the teacher's outputs are cached for
stage-0 crops only.
"""

from __future__ import annotations

from dataclasses import dataclass

from linearsr_cli.errors import ConfigError


@dataclass(frozen=True)
class LossWeights:
    """The weights (0 = off) of the image terms every run can add, and their settings.
    Real-ESRGAN's texture recipe is L1 1, ST-LPIPS 1, GAN 0.1 on the unsharp-masked HR."""

    lpips_weight: float = 0.0  # + w * ST-LPIPS(output, target): a perceptual loss
    lpips_samples: int = 8  # ... on the first N samples of each batch (0 = all)
    gan_weight: float = 0.0  # + w * the adversarial loss of a U-Net discriminator
    disc_lr: float = 1e-4
    disc_channels: int = 32
    usm_target: bool = False  # regress onto the unsharp-masked HR (the critic still sees plain HR)

    def __post_init__(self) -> None:
        if self.lpips_weight < 0 or self.lpips_samples < 0:
            raise ConfigError("lpips_weight and lpips_samples must be >= 0")
        if self.gan_weight < 0 or self.disc_lr <= 0 or self.disc_channels < 1:
            raise ConfigError("gan_weight must be >= 0, disc_lr > 0, disc_channels >= 1")


@dataclass(frozen=True)
class PriorLossWeights(LossWeights):
    """The prior's weights: those of every run, and L1 against the target and the teacher."""

    l1_weight: float = 1.0  # + w * L1 of the output against the target
    distill_weight: float = 0.0  # + w * L1 against a teacher's output (train/teacher.py)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.l1_weight < 0 or self.distill_weight < 0:
            raise ConfigError("l1_weight and distill_weight must be >= 0")
