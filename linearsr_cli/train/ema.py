"""Exponential moving average of model weights, with the usual warm-up of the decay."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def ema_decay(step: int, decay: float) -> float:
    """Warm-started EMA decay min(decay, (1 + step) / (10 + step)) (as in TF/timm ModelEma)."""
    return min(decay, (1.0 + step) / (10.0 + step))


class EMA:
    """An fp32 shadow copy of every floating-point tensor of a model's state dict."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow: dict[str, Tensor] = {
            k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()
        }

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = ema_decay(step, self.decay)
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1.0 - d)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into `model` (same architecture)."""
        state = model.state_dict()
        for k, v in self.shadow.items():
            state[k].copy_(v.to(state[k].dtype))

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.clone() for k, v in self.shadow.items()}

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(tensors))
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} tensors, e.g. {missing[0]}")
        for k in self.shadow:
            self.shadow[k] = tensors[k].float().clone()
