"""The weights a speed benchmark times: the shipped file if installed, else a random-weights file
of the default ModelConfig (time and memory do not depend on the weight values)."""

from __future__ import annotations

from pathlib import Path

import torch

from linearsr_cli.checkpoints import default_weights_path, save_weights
from linearsr_cli.config import ModelConfig
from linearsr_cli.nn.dit import LinearSR


def timing_weights(tmp: Path, scale: int = 4) -> tuple[Path, str]:
    """(weights path, a description for the report); a random file is written under `tmp`."""
    shipped = default_weights_path(scale)
    if shipped.is_file():
        return shipped, f"shipped weights {shipped.name}"
    gen = torch.Generator().manual_seed(0)
    model = LinearSR(ModelConfig(scale=scale))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    path = save_weights(tmp / f"random-x{scale}.safetensors", model, provenance={"note": "random, for timing"})
    return path, "random weights of the default ModelConfig (no shipped weights installed)"
