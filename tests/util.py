"""Test helpers: tiny random models that produce non-trivial output, with no downloads."""

from __future__ import annotations

from typing import Any

import torch

from linearsr_cli.config import ModelConfig
from linearsr_cli.nn.dit import LinearSR


def tiny_model_config(**overrides: Any) -> ModelConfig:
    """A few-thousand-parameter config for tests: same code paths, milliseconds per forward."""
    base = dict(dim=32, depth=2, heads=2, ffn_mult=2.0, stem_channels=8, num_experts=4)
    base.update(overrides)
    return ModelConfig(**base)


def random_model(cfg: ModelConfig | None = None, *, seed: int = 0, std: float = 0.1) -> LinearSR:
    """A LinearSR with every parameter drawn at random (the real init zeroes the head, which
    would make every output equal to bicubic and hide bugs)."""
    cfg = cfg or tiny_model_config()
    gen = torch.Generator().manual_seed(seed)
    model = LinearSR(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()
