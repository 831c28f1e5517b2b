"""The options `linearsr upscale` and `linearsr eval` share, each defined once (type, flag, help),
as cli/train.py defines its own: how LinearSR samples, which prior and transforms serve it, and
what it loads where. In eval they drive the LinearSR methods; its --methods help says which preset
each method is. Options that share only a flag (--scale, --tags, --json, --quiet) mean different
things in the two commands and stay with their command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from linearsr_cli.config import SOLVER_NAMES

Steps = Annotated[int | None, typer.Option(help="Sampling steps: 1 = 1-NFE; more = perceptual. Default: the preset's.")]
Solver = Annotated[str | None, typer.Option(help=f"{SOLVER_NAMES}. Default: the preset's.")]
Shift = Annotated[float | None, typer.Option(help="Time-grid shift of multi-step sampling: < 1 spends more steps at low noise (the texture and polishing experts). Default: the preset's.")]
Seed = Annotated[int, typer.Option(help="Noise seed; the same seed gives the same output for an image.")]
InputKind = Annotated[str, typer.Option("--input", help="auto, clean or real: which prior serves each image (weights with priors): clean = SPAN as released, for clean/bicubic-like inputs; real = for noise, blur and JPEG (camera and web photos: our fine-tuned SPAN in the fidelity preset, Real-ESRGAN's realesr-general-x4v3 under the experts in the perceptual one); auto (default) = decided per image by the weights' router from its evidence (the file's JPEG quality, and how the real prior treats the image's centre), both priors mixed where it is unsure (perceptual); each --json record names the prior and why.")]
Tta = Annotated[bool, typer.Option("--tta", help="Test-time augmentation: average the 8 flips/rotations (each with the same noise, transformed alike); 8x the time for a small PSNR gain (BENCHMARKS.md).")]
Weights = Annotated[Path | None, typer.Option(help="Weights file. Default: $LINEARSR_WEIGHTS, else the shipped file in weights/ for --scale.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N (GPU N) or mps.")]
Dtype = Annotated[str, typer.Option(help="auto, fp32, fp16 or bf16 (autocast; attention sums stay fp32).")]
