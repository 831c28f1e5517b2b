"""Test helpers: tiny random models that produce non-trivial output, with no downloads."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from linearsr_cli.checkpoints import save_weights
from linearsr_cli.config import ModelConfig
from linearsr_cli.engine.route import Router
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


def noise_router() -> Router:
    """A gate that routes by noise and the file's JPEG quality: real above sigma 10 or below q 85."""
    return Router((1.0, 0.0, 0.0, 0.0, 30.0, 0.0, 0.0), -10.0, (0.0,) * 7, (1.0,) * 7)


def routed_prior_weights(path: Path) -> Path:
    """Tiny weights with clean, real and texture priors, a bare structure expert (the fidelity
    preset uses no tags) and `noise_router`, written to `path`."""
    cfg = tiny_model_config(num_experts=4).with_prior(("clean", "real", "texture"), (0,))
    cfg = dataclasses.replace(cfg, prior_channels=6, prior_blocks=1, bare_experts=(0,))
    torch.manual_seed(0)
    model = LinearSR(cfg)
    record = {"origin": "test", "licence": "Apache-2.0", "attribution": "test", "fine_tuning": []}
    return save_weights(path, model, priors={"clean": record, "real": record, "texture": record},
                        router=noise_router().to_dict())
