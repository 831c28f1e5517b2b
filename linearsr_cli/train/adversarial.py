"""What a training run needs to ask for texture: sharpened targets and an adversary.

- `unsharp_mask`: the ground truth of Real-ESRGAN's recipe (Wang et al. 2021): HR plus half its
  high-pass, only where the high-pass is strong (a soft mask), so the generator is pulled to crisp
  edges rather than to the blurred average of what an LR crop could be.
- `Critic`: a U-Net discriminator (nn/discriminator.py) with its own Adam optimiser. It judges
  the real, unsharpened HR against the generator's output with the non-saturating GAN loss
  (Goodfellow et al. 2014; BCE on logits, as Real-ESRGAN). Its weights and optimiser state are
  saved beside the generator's resume state and resumed with it (`state_tensors`, `load`), and its
  loss is guarded like the generator's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from linearsr_cli.degrade import gaussian_blur
from linearsr_cli.nn.discriminator import DiscriminatorConfig, UNetDiscriminator
from linearsr_cli.train.optim_state import load_optimizer, optimizer_tensors

# an adversarial run's statistics in the step log: the generator's term (train/losses.py), then
# the critic's loss and the mean probabilities it gives real and fake pixels (Critic.update)
GAN_KEYS = ("g_adv", "d_loss", "d_real", "d_fake")


def unsharp_mask(x: Tensor, *, weight: float = 0.5, sigma: float = 2.0, threshold: float = 10 / 255) -> Tensor:
    """Real-ESRGAN's sharpened ground truth: x + weight * (x - blur(x)) where |x - blur(x)| >
    threshold, feathered by a blurred mask; clamped to [0, 1]."""
    high = x - gaussian_blur(x, sigma)
    mask = gaussian_blur((high.abs() > threshold).to(x.dtype), sigma)
    sharp = (x + weight * high).clamp(0.0, 1.0)
    return mask * sharp + (1.0 - mask) * x


class Critic:
    """The discriminator of an adversarial run, its optimiser, and its running statistics."""

    def __init__(self, cfg: DiscriminatorConfig, *, lr: float, device: torch.device, seed: int = 0) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 7919)  # the critic's init must not shift the run's RNG
            self.net = UNetDiscriminator(cfg).to(device).train()
        self.cfg = cfg
        self.lr = lr
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr, betas=(0.9, 0.99))

    def generator_loss(self, fake: Tensor) -> Tensor:
        """The adversarial term of the generator: -log D(fake), with D's weights frozen."""
        self.net.requires_grad_(False)
        logits = self.net(fake)
        self.net.requires_grad_(True)
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    def update(self, real: Tensor, fake: Tensor) -> dict[str, float]:
        """One discriminator step on (real HR, detached generator output); returns d_loss and the
        mean probabilities it gives real and fake pixels (what select-knee plots)."""
        self.opt.zero_grad(set_to_none=True)
        real_logits = self.net(real)
        fake_logits = self.net(fake.detach())
        loss = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + \
            F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        value = float(loss.detach())
        if math.isfinite(value):
            loss.backward()
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return {
            "d_loss": value,
            "d_real": float(torch.sigmoid(real_logits.detach()).mean()),
            "d_fake": float(torch.sigmoid(fake_logits.detach()).mean()),
        }

    def state_tensors(self) -> dict[str, Tensor]:
        """Weights and optimiser state as flat tensors (prefix 'critic.'), for the resume state."""
        out = {f"critic.net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        return {**out, **optimizer_tensors(self.opt, "critic.opt.")}

    def param_groups(self) -> list[dict]:
        return self.opt.state_dict()["param_groups"]

    def load(self, tensors: dict[str, Tensor], param_groups: list[dict], device: torch.device) -> None:
        """Restore what state_tensors saved (strict: a state without a critic raises KeyError)."""
        net = {k.removeprefix("critic.net."): v for k, v in tensors.items() if k.startswith("critic.net.")}
        if not net:
            raise KeyError("critic weights (this state was saved by a run without a discriminator)")
        self.net.load_state_dict(net, strict=True)
        load_optimizer(self.opt, tensors, "critic.opt.", param_groups, device)
        for group in self.opt.param_groups:  # the run's configured rate, also when it changed on resume
            group["lr"] = self.lr
