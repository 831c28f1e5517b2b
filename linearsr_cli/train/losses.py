"""The image loss terms of training, as one named list, and the weights that turn them on.

Each term (`TERMS`) is a name, the weight field that turns it on, its words for the checkpoint's
record and its function; the same list builds a run's loss (`ImageLoss`) and its description
(`describe`). The denoiser's objective (train/loop.train) is its x0-MSE plus the terms on the
composed x0 estimate; the prior's (train/prior.train_prior) is the terms on the prior's output.

`LossWeights` holds what every run can weigh: ST-LPIPS and the U-Net critic's adversarial term
(train/adversarial.py), on HR or its unsharp mask. `PriorLossWeights` adds what only the prior
takes: L1 against the target and against a teacher's outputs (train/teacher.py). The denoiser
has neither: its reconstruction term is the x0-MSE, and the teacher's outputs are cached for
stage-0 crops only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from linearsr_cli.errors import ConfigError
from linearsr_cli.train.adversarial import Critic, unsharp_mask


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


@dataclass(frozen=True)
class Term:
    """One image term: `name` (its step-log key), the weight field that turns it on, how the
    checkpoint's record names it (`label`, "{w}" = the weight), and its value on a batch."""

    name: str
    weight: str
    label: str
    value: Callable[[ImageLoss, Tensor, Tensor, Tensor | None], Tensor]  # (loss, out, target, teacher)
    guarded: bool = True  # in the value the divergence guard watches (train/loop.StepOutcome.value)


def _l1(loss: ImageLoss, out: Tensor, target: Tensor, teacher: Tensor | None) -> Tensor:
    return F.l1_loss(out, target)


def _lpips(loss: ImageLoss, out: Tensor, target: Tensor, teacher: Tensor | None) -> Tensor:
    """ST-LPIPS (Ghildyal & Liu 2022) on the first lpips_samples samples (0 = all)."""
    assert loss.perceptual is not None
    k = loss.weights.lpips_samples or out.shape[0]
    return loss.perceptual(out[:k], target[:k]).mean()


def _distill(loss: ImageLoss, out: Tensor, target: Tensor, teacher: Tensor | None) -> Tensor:
    assert teacher is not None
    return F.l1_loss(out, teacher)


def _gan(loss: ImageLoss, out: Tensor, target: Tensor, teacher: Tensor | None) -> Tensor:
    assert loss.critic is not None
    return loss.critic.generator_loss(out)


# the reconstruction terms first, then the adversarial one: the guard watches the sum before it
# (the adversarial term swings by design; a collapse shows in the others and in the critic's loss)
TERMS = (
    Term("l1", "l1_weight", "L1 {w}", _l1),
    Term("lpips", "lpips_weight", "ST-LPIPS {w}", _lpips),
    Term("distill", "distill_weight", "L1 to the teacher's output {w}", _distill),
    # the GAN term, logged as the generator's adversarial loss beside the critic's (adversarial.GAN_KEYS)
    Term("g_adv", "gan_weight", "GAN {w} (U-Net discriminator, spectral norm)", _gan, guarded=False),
)


def active_terms(weights: LossWeights) -> list[Term]:
    """The terms `weights` turn on (weight > 0); a term whose weight field they lack is off."""
    return [t for t in TERMS if getattr(weights, t.weight, 0.0) > 0]


def describe(weights: LossWeights) -> str:
    """The terms in words with their weights: "L1 1 + ST-LPIPS 1 + GAN 0.1 (...)"."""
    return " + ".join(t.label.format(w=f"{getattr(weights, t.weight):g}") for t in active_terms(weights))


class ImageLoss:
    """The terms a run's weights turn on, ready to add: with the ST-LPIPS network (frozen) when
    it is weighed, and the run's critic (train/loop.RunState) for the GAN term."""

    def __init__(self, weights: LossWeights, device: torch.device, critic: Critic | None = None) -> None:
        self.weights = weights
        self.terms = active_terms(weights)
        self.perceptual: torch.nn.Module | None = None
        if weights.lpips_weight > 0:
            from linearsr_cli.perceptual import load_stlpips

            self.perceptual = load_stlpips().to(device)
        self.critic = critic

    def target(self, hr: Tensor) -> Tensor:
        """What the output should match: HR, or its unsharp mask (usm_target)."""
        return unsharp_mask(hr) if self.weights.usm_target else hr

    def add(self, loss: Tensor, out: Tensor, target: Tensor,
            teacher: Tensor | None = None) -> tuple[Tensor, Tensor, dict[str, float]]:
        """`loss` plus each term's weight x value on `out` (fp32, like `target` and the teacher's
        outputs (B, 3, H, W)): (the total, the guarded part of it (detached), {name: value})."""
        guarded = loss.detach()
        logs = {}
        for term in self.terms:
            value = term.value(self, out, target, teacher)
            loss = loss + getattr(self.weights, term.weight) * value
            logs[term.name] = float(value.detach())
            if term.guarded:
                guarded = loss.detach()
        return loss, guarded, logs
