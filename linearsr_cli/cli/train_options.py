"""What the `linearsr train ...` commands (cli/train.py) share: their options and helpers.

An option that several commands take is defined once here (its type and help; an option of one
command stays in its signature), and every default comes from the shipped recipe (`SHIP =
RecipeConfig()`, weights/MODEL_CARD.md), so `linearsr train recipe --out runs/x` alone
reproduces the shipped weights' recipe. The helpers turn options into the data and stage
configs and report what a command did (project errors end a command through cli/app.project_errors).
"""

from __future__ import annotations

import functools
import inspect
import time
import typing
from pathlib import Path
from typing import Annotated

import typer

from linearsr_cli.cli.app import ABLATIONS
from linearsr_cli.train.recipe import RecipeConfig

SHIP = RecipeConfig()

Out = Annotated[str, typer.Option(help="Run directory (checkpoints + resume state); rerun the same command to resume.")]
WeightsOut = Annotated[str, typer.Option(help="Weights file to write.")]
Data = Annotated[str, typer.Option(help="Photo root with train/ and val/ (linearsr data fetch).")]
Steps = Annotated[int, typer.Option(help="Optimizer steps.")]
BatchSize = Annotated[int, typer.Option(help="Batch size.")]
Crop = Annotated[int, typer.Option(help="HR crop side in pixels.")]
LearningRate = Annotated[float, typer.Option(help="AdamW learning rate.")]
Warmup = Annotated[int, typer.Option(help="Linear warm-up steps.")]
CkptEvery = Annotated[int, typer.Option(help="Checkpoint (and validate) every N steps.")]
Scale = Annotated[int, typer.Option(help="Upscaling factor.")]
Degradation = Annotated[str, typer.Option(help="bicubic | realistic | mixed (half each).")]
Tags = Annotated[bool, typer.Option(help="TAG tags with 50% dropout (the tagger and encoder packages must be installed: a missing one stops the run at its first batch).")]
TagKind = Annotated[str, typer.Option(help="tags | visual (the tagger's pooled feature as one token: TAG ablation).", rich_help_panel=ABLATIONS)]
POne = Annotated[float, typer.Option(help="Share of samples at exactly t = 1 (trains the 1-NFE pass).")]
Precision = Annotated[str, typer.Option(help="auto (bf16 only where this CPU runs it fast; see linearsr info) | fp32 | bf16 | fp16.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda.")]
MaxMinutes = Annotated[float, typer.Option(help="Stop cleanly (resumable) after this many minutes; 0 = no limit.")]
ValSize = Annotated[int, typer.Option(help="Validation crop side (HR).")]
ValCount = Annotated[int, typer.Option(help="Validation photos per checkpoint (0 = all).")]
Seed = Annotated[int, typer.Option(help="Seed of the data order, noise and init.")]
Prior = Annotated[str, typer.Option(help="The structure expert's prior: span (the released SPAN of --scale), spanx4_ch52, a prior file, or '' for none.")]
PriorClean = Annotated[str, typer.Option(help="Structure expert's prior for clean inputs: span, spanx4_ch52 or a prior file ('' = none).")]
PriorReal = Annotated[str, typer.Option(help="Structure expert's prior for real-world inputs: a stage-0 checkpoint ('' = none).")]
LpipsWeight = Annotated[float, typer.Option(help="Weight of the ST-LPIPS loss on the x0 estimate (texture experts, not expert 0).")]
LpipsSamples = Annotated[int, typer.Option(help="Samples per batch that get the ST-LPIPS loss (0 = all).")]
L1Weight = Annotated[float, typer.Option(help="Weight of the L1 loss against the target (stage 0).")]
GanWeight = Annotated[float, typer.Option(help="Weight of the adversarial loss (a U-Net discriminator with spectral norm; 0 = none). Real-ESRGAN's recipe: 0.1.")]
DiscLr = Annotated[float, typer.Option(help="Adam learning rate of the discriminator.")]
DiscChannels = Annotated[int, typer.Option(help="Width of the discriminator's first level (then 2x, 4x, 8x).")]
Usm = Annotated[bool, typer.Option(help="Regress onto the unsharp-masked HR (the discriminator still sees plain HR), as Real-ESRGAN.")]
DistillWeight = Annotated[float, typer.Option(help="Weight of L1 against Real-ESRGAN x4plus's output (stage 0; needs --teacher-crops).")]
TeacherCrops = Annotated[int, typer.Option(help="Train on this many crops and distil from Real-ESRGAN x4plus's outputs on them, computed once into the run directory (0 = no teacher).")]
EmaDecay = Annotated[float, typer.Option(help="EMA decay of the weights that checkpoints store.")]
ExportDtype = Annotated[str, typer.Option(help="Storage dtype of the experts: fp32 | fp16 | bf16 (priors stay fp32).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")]
JsonLines = Annotated[bool, typer.Option("--json", help="One JSON record per checkpoint on stdout (no progress bar).")]


MODEL_OPTIONS: dict[str, tuple[type, str]] = {
    "dim": (int, "Transformer width."),
    "depth": (int, "Transformer blocks."),
    "heads": (int, "Attention heads."),
    "patch": (int, "HR pixels per token side (a multiple of --scale)."),
    "stem_channels": (int, "Channels of the LR conv stem."),
    "stem_blocks": (int, "Residual 3x3 conv blocks in the LR stem."),
}


def with_model_options(fn):  # type: ignore[no-untyped-def]
    """Give a command the architecture options (MODEL_OPTIONS, defaults from the shipped model);
    the command receives them as one `arch: dict` keyword argument for ModelConfig."""
    sig = inspect.signature(fn)
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=getattr(SHIP.model, name),
                          annotation=Annotated[kind, typer.Option(help=text)])
        for name, (kind, text) in MODEL_OPTIONS.items()
    ]
    hints = typing.get_type_hints(fn, include_extras=True)  # the string annotations, resolved
    params = [p.replace(annotation=hints[p.name]) for p in sig.parameters.values() if p.name != "arch"]

    @functools.wraps(fn)
    def wrapper(**kwargs):  # type: ignore[no-untyped-def]
        arch = {name: kwargs.pop(name) for name in MODEL_OPTIONS}
        return fn(arch=arch, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*params, *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*params, *extra]}
    del wrapper.__wrapped__  # typer must read the new signature, not the original
    return wrapper


def key_values(items: list[str], usage: str) -> dict[str, str]:
    """A repeatable KEY=VALUE option as a dict; ConfigError(usage) for an item without '=' or a
    key given twice."""
    from linearsr_cli.errors import ConfigError

    pairs = dict(item.split("=", 1) for item in items if "=" in item)
    if len(pairs) != len(items):
        raise ConfigError(usage)
    return pairs


def reporter(quiet: bool, json_lines: bool):  # type: ignore[no-untyped-def]
    """The progress display the --quiet and --json options ask for (console.train_reporter)."""
    from linearsr_cli.cli import console

    return console.train_reporter(quiet=quiet, json_lines=json_lines)


def say_done(name: str, result, json_lines: bool) -> None:  # type: ignore[no-untyped-def]
    """One line on stderr when a training run stops (done or paused), unless --json."""
    if not json_lines:
        typer.echo(f"{name} {result.status} at step {result.step}; last checkpoint: {result.last_checkpoint}", err=True)


def say_wrote(path: Path) -> None:
    """The line of a command that wrote a weights file: its path and size."""
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


def deadline(max_minutes: float) -> float | None:
    """The time.monotonic() at which --max-minutes ends the run (None: no limit)."""
    return time.monotonic() + 60 * max_minutes if max_minutes > 0 else None


def data_config(data: str, crop: int, scale: int, degradation: str, seed: int):  # type: ignore[no-untyped-def]
    from linearsr_cli.train.data import DataConfig

    return DataConfig(root=data, scale=scale, crop=crop, degradation=degradation, seed=seed)


def stage_config(base, steps: int, batch: int, lr: float, warmup: int, ckpt_every: int, precision: str, seed: int,  # type: ignore[no-untyped-def]
                 **more):
    """The stage config `base` (from the shipped recipe) with the command's options applied."""
    return base.replace(steps=steps, batch_size=batch, lr=lr, warmup=warmup, ckpt_every=ckpt_every,
                        precision=precision, seed=seed, **more)
