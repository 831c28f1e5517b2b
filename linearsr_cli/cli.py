"""The `linearsr` command line. Commands only parse options, build configs, call one tested
function and map project errors to exit codes:

    0  everything asked for was done
    1  usage or setup error (bad option, missing weights, unusable device)
    2  the run went through but some inputs failed (each one reported)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from linearsr_cli import __version__

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_PARTIAL = 2
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM: finished files are kept, no partial file is left


def _usage_error_types() -> tuple[type[Exception], ...]:
    """The UsageError of typer's vendored click (typer >= 0.20) and of click itself, if present."""
    types: list[type[Exception]] = []
    try:
        from typer._click.exceptions import UsageError as VendoredUsageError
    except ImportError:
        pass
    else:
        types.append(VendoredUsageError)
    try:
        from click import UsageError
    except ImportError:
        pass
    else:
        types.append(UsageError)
    return tuple(types)


_USAGE_ERRORS = _usage_error_types()


class _Group(TyperGroup):
    """Click exits 2 on a usage error; here 2 means "some inputs failed", so usage errors
    (unknown option, bad value, missing argument) exit 1 instead."""

    def make_context(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return super().make_context(*args, **kwargs)
        except _USAGE_ERRORS as exc:
            exc.exit_code = EXIT_USAGE
            raise

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except _USAGE_ERRORS as exc:
            exc.exit_code = EXIT_USAGE
            raise


app = typer.Typer(
    name="linearsr",
    cls=_Group,
    help="Batch image upscaler on a linear-attention diffusion super-resolution model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print the LinearSR version."""
    print(__version__)


# --- training and ESGF (linearsr train ..., linearsr select-knee) ---

train_app = typer.Typer(
    help="Train LinearSR: stage 1, stage 2 (one fine-tune per SNR expert), export, or the whole recipe.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")


def _train_error(exc: Exception) -> typer.Exit:
    """Report a project error in one line (no traceback) and give the usage exit code."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(EXIT_USAGE)


def _train_setup(data: str, crop: int, scale: int, degradation: str, steps: int, batch: int, lr: float,
                 ckpt_every: int, precision: str, seed: int, warmup: int, p_one: float):
    """DataConfig + TrainConfig from the shared options (raises ConfigError)."""
    from linearsr_cli.train.data import DataConfig
    from linearsr_cli.train.loop import TrainConfig

    data_cfg = DataConfig(root=data, scale=scale, crop=crop, degradation=degradation, seed=seed)
    train_cfg = TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup=warmup, ckpt_every=ckpt_every,
                            precision=precision, seed=seed, p_one=p_one)
    return data_cfg, train_cfg


@train_app.command("stage0")
def train_stage0(
    out: str = typer.Option(..., help="Run directory (prior checkpoints + resume state); resumes if present."),
    prior: str = typer.Option("span", help="Start from: span (the released SPAN of --scale), spanx4_ch52, or a prior file."),
    data: str = typer.Option("data/photos", help="Photo root with train/ and val/."),
    steps: int = typer.Option(2000), batch: int = typer.Option(16),
    crop: int = typer.Option(128, help="HR crop side (the prior sees crop/scale LR pixels)."),
    lr: float = typer.Option(1e-4), warmup: int = typer.Option(50), ckpt_every: int = typer.Option(250),
    scale: int = typer.Option(4), degradation: str = typer.Option("mixed", help="bicubic | realistic | mixed."),
    precision: str = typer.Option("auto"), device: str = typer.Option("auto"),
    max_minutes: float = typer.Option(0.0, help="Stop cleanly (resumable) after this many minutes; 0 = no limit."),
    val_size: int = typer.Option(256), val_count: int = typer.Option(5), seed: int = typer.Option(0),
) -> None:
    """Stage 0: fine-tune the pretrained prior (SPAN) on real-world degradations (L1, EMA)."""
    import time
    from pathlib import Path

    from linearsr_cli.errors import LinearSRError
    from linearsr_cli.train.recipe import run_stage0, training_device

    try:
        data_cfg, cfg = _train_setup(data, crop, scale, degradation, steps, batch, lr, ckpt_every, precision, seed,
                                     warmup, 0.0)
        deadline = time.monotonic() + 60 * max_minutes if max_minutes > 0 else None
        result = run_stage0(prior, data_cfg, cfg, Path(out), val_size=val_size, val_count=val_count,
                            device=training_device(device), deadline=deadline)
    except LinearSRError as exc:
        raise _train_error(exc) from None
    typer.echo(f"stage 0 {result.status} at step {result.step}; last checkpoint: {result.last_checkpoint}")


@train_app.command("stage1")
def train_stage1(
    out: str = typer.Option(..., help="Run directory (checkpoints + resume state); resumes if present."),
    data: str = typer.Option("data/photos", help="Photo root with train/ and val/."),
    steps: int = typer.Option(2000, help="Total optimizer steps."),
    batch: int = typer.Option(8, help="Batch size."),
    crop: int = typer.Option(128, help="HR crop side in pixels."),
    lr: float = typer.Option(2e-4, help="AdamW learning rate."),
    warmup: int = typer.Option(100, help="Linear warm-up steps."),
    ckpt_every: int = typer.Option(100, help="Checkpoint every N steps."),
    dim: int = typer.Option(96), depth: int = typer.Option(4), heads: int = typer.Option(4),
    patch: int = typer.Option(8), scale: int = typer.Option(4),
    stem_channels: int = typer.Option(32, help="Channels of the LR conv stem."),
    stem_blocks: int = typer.Option(0, help="Residual conv blocks in the LR stem."),
    degradation: str = typer.Option("mixed", help="bicubic | realistic | mixed."),
    tags: bool = typer.Option(True, "--tags/--no-tags", help="TAG tags with dropout (null tag if the tag package is missing)."),
    precision: str = typer.Option("auto", help="auto (bf16 on CPU) | fp32 | bf16 | fp16."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    max_minutes: float = typer.Option(0.0, help="Stop cleanly (resumable) after this many minutes; 0 = no limit."),
    val_size: int = typer.Option(256, help="Validation crop side (HR)."),
    val_count: int = typer.Option(4, help="Validation photos used per checkpoint (0 = all)."),
    seed: int = typer.Option(0),
    p_one: float = typer.Option(0.1, help="Share of samples at exactly t = 1 (trains the 1-NFE pass)."),
) -> None:
    """Stage 1: train the base model (one expert) over all t, with checkpoints and a divergence guard."""
    import time
    from pathlib import Path

    from linearsr_cli.config import ModelConfig
    from linearsr_cli.errors import LinearSRError
    from linearsr_cli.train.recipe import make_val_pairs, run_stage1, training_device

    try:
        data_cfg, cfg = _train_setup(data, crop, scale, degradation, steps, batch, lr, ckpt_every, precision, seed,
                                     warmup, p_one)
        model_cfg = ModelConfig(scale=scale, patch=patch, dim=dim, depth=depth, heads=heads,
                                stem_channels=stem_channels, stem_blocks=stem_blocks, num_experts=1)
        val = make_val_pairs(data_cfg, size=val_size, count=val_count)
        deadline = time.monotonic() + 60 * max_minutes if max_minutes > 0 else None
        result = run_stage1(model_cfg, data_cfg, cfg, Path(out), val_pairs=val, tags=tags,
                            device=training_device(device), deadline=deadline,
                            provenance={"command": "linearsr train stage1"})
    except LinearSRError as exc:
        raise _train_error(exc) from None
    typer.echo(f"stage 1 {result.status} at step {result.step}; last checkpoint: {result.last_checkpoint}")


@train_app.command("stage2")
def train_stage2(
    init: str = typer.Option(..., help="Stage-1 checkpoint to start every expert from (e.g. knee.safetensors)."),
    out: str = typer.Option(..., help="Directory; expert i trains in OUT/expert{i}."),
    expert: int = typer.Option(-1, help="Train only this expert (default: all)."),
    experts: int = typer.Option(4, help="Number of SNR experts (1, 2 or 4)."),
    data: str = typer.Option("data/photos"), steps: int = typer.Option(500), batch: int = typer.Option(8),
    crop: int = typer.Option(128), lr: float = typer.Option(5e-5), warmup: int = typer.Option(20),
    ckpt_every: int = typer.Option(50), degradation: str = typer.Option("mixed"),
    tags: bool = typer.Option(True, "--tags/--no-tags"),
    tag_kind: str = typer.Option("tags", help="tags | visual (the tagger's pooled feature as one token: TAG ablation)."),
    p_one: float = typer.Option(0.1, help="Share of the structure expert's samples at exactly t = 1."),
    precision: str = typer.Option("auto"),
    device: str = typer.Option("auto"), max_minutes: float = typer.Option(0.0),
    val_size: int = typer.Option(256), val_count: int = typer.Option(4), seed: int = typer.Option(0),
    prior_clean: str = typer.Option("", help="Structure expert's prior for clean inputs: span, spanx4_ch52 or a prior file."),
    prior_real: str = typer.Option("", help="Structure expert's prior for real-world inputs (a stage-0 checkpoint)."),
    lpips_weight: float = typer.Option(0.0, help="Weight of the ST-LPIPS loss on the x0 estimate (experts > 0 only)."),
    lpips_samples: int = typer.Option(8, help="Samples per batch that get the ST-LPIPS loss (0 = all)."),
) -> None:
    """Stage 2: fine-tune each expert from one stage-1 checkpoint on its log-SNR interval only."""
    import dataclasses
    import time
    from pathlib import Path

    from linearsr_cli.checkpoints import read_info
    from linearsr_cli.errors import LinearSRError
    from linearsr_cli.train.data import PairDataset
    from linearsr_cli.train.recipe import make_val_pairs, run_stage2, training_device

    try:
        scale = read_info(init).config.scale
        data_cfg, cfg = _train_setup(data, crop, scale, degradation, steps, batch, lr, ckpt_every, precision, seed,
                                     warmup, p_one)
        cfg = dataclasses.replace(cfg, lpips_weight=lpips_weight, lpips_samples=lpips_samples)
        priors = {k: v for k, v in (("clean", prior_clean), ("real", prior_real)) if v}
        val = make_val_pairs(data_cfg, size=val_size, count=val_count)
        deadline = time.monotonic() + 60 * max_minutes if max_minutes > 0 else None
        photos = PairDataset(data_cfg, "train")
        for e in [expert] if expert >= 0 else range(experts):
            r = run_stage2(Path(init), e, data_cfg, cfg, Path(out) / f"expert{e}", num_experts=experts,
                           val_pairs=val, tags=tags, tag_kind=tag_kind, device=training_device(device),
                           deadline=deadline, provenance={"command": "linearsr train stage2"}, dataset=photos,
                           priors=priors or None)
            typer.echo(f"expert {e}: {r.status} at step {r.step}; last checkpoint: {r.last_checkpoint}")
            if r.status == "paused":
                break
    except LinearSRError as exc:
        raise _train_error(exc) from None


@train_app.command("export")
def train_export(
    experts: list[str] = typer.Argument(..., help="Expert checkpoints or run dirs, expert 0 first (newest checkpoint of a dir)."),
    out: str = typer.Option(..., help="Weights file to write."),
    dtype: str = typer.Option("fp16", help="Storage dtype: fp32 | fp16 | bf16."),
) -> None:
    """Assemble stage-2 experts into one LinearSR weights file."""
    from pathlib import Path

    from linearsr_cli.errors import LinearSRError
    from linearsr_cli.train.recipe import export_model, final_checkpoint

    try:
        paths = [final_checkpoint(Path(p)) if Path(p).is_dir() else Path(p) for p in experts]
        path = export_model(paths, Path(out), dtype=dtype, provenance={"command": "linearsr train export"})
    except LinearSRError as exc:
        raise _train_error(exc) from None
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


@train_app.command("recipe")
def train_recipe(
    out: str = typer.Option(..., help="Run directory, e.g. runs/NAME; rerun the same command to continue."),
    data: str = typer.Option("data/photos"), steps: int = typer.Option(2000, help="Stage-1 steps."),
    steps2: int = typer.Option(500, help="Stage-2 steps per expert."), batch: int = typer.Option(8),
    crop: int = typer.Option(128), lr: float = typer.Option(2e-4), lr2: float = typer.Option(5e-5),
    ckpt_every: int = typer.Option(100), ckpt_every2: int = typer.Option(50),
    dim: int = typer.Option(96), depth: int = typer.Option(4), heads: int = typer.Option(4),
    patch: int = typer.Option(8), scale: int = typer.Option(4), degradation: str = typer.Option("mixed"),
    stem_channels: int = typer.Option(32), stem_blocks: int = typer.Option(0),
    init: str = typer.Option("knee", help="Stage 2 starts from the ESGF 'knee' or the 'last' stage-1 checkpoint."),
    tags: bool = typer.Option(True, "--tags/--no-tags"), precision: str = typer.Option("auto"),
    export_dtype: str = typer.Option("fp16", help="fp32 | fp16 | bf16 storage of the exported file."),
    device: str = typer.Option("auto"), max_minutes: float = typer.Option(0.0, help="Time budget of this call; 0 = none."),
    val_size: int = typer.Option(256), val_count: int = typer.Option(4), seed: int = typer.Option(0),
    p_one: float = typer.Option(0.1, help="Share of samples at exactly t = 1 (trains the 1-NFE pass)."),
) -> None:
    """The whole recipe, resumable: stage 1 -> ESGF knee -> stage 2 per expert -> export."""
    import dataclasses
    import shlex
    import sys

    from linearsr_cli.config import ModelConfig
    from linearsr_cli.errors import LinearSRError
    from linearsr_cli.train.recipe import RecipeConfig, run_recipe, training_device

    try:
        data_cfg, s1 = _train_setup(data, crop, scale, degradation, steps, batch, lr, ckpt_every, precision, seed,
                                    100, p_one)
        s2 = dataclasses.replace(s1, steps=steps2, lr=lr2, warmup=20, ckpt_every=ckpt_every2)
        cfg = RecipeConfig(model=ModelConfig(scale=scale, patch=patch, dim=dim, depth=depth, heads=heads,
                                             stem_channels=stem_channels, stem_blocks=stem_blocks),
                           data=data_cfg, stage1=s1, stage2=s2, init=init, tags=tags,
                           export_dtype=export_dtype, val_size=val_size, val_count=val_count)
        status = run_recipe(out, cfg, device=training_device(device), max_minutes=max_minutes or None,
                            notify=typer.echo, command=shlex.join(["linearsr", *sys.argv[1:]]))
    except LinearSRError as exc:
        raise _train_error(exc) from None
    typer.echo(status.message)


@app.command("select-knee")
def select_knee_cmd(
    ckpts: str = typer.Argument(..., help="Directory of checkpoints (ours or any safetensors)."),
    val: str = typer.Option("", help="LR/HR pairs (DIR/lr + DIR/hr, or a photo root with val/) to re-measure PSNR/SSIM."),
    val_count: int = typer.Option(4, help="Pairs used from --val (0 = all)."),
    json_out: str = typer.Option("", "--json", help="Write the curves and the choice as JSON."),
    plot: str = typer.Option("", help="Write the ESGF plot (PNG)."),
    link: str = typer.Option("", help="Symlink (or copy) the chosen checkpoint here, e.g. knee.safetensors."),
    sensitivity: float = typer.Option(1.0, help="Kneedle sensitivity S."),
) -> None:
    """ESGF: find the knee of the stage-1 loss curve (Kneedle) and flag the unstable peak."""
    import json
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from linearsr_cli.errors import LinearSRError
    from linearsr_cli.esgf.knee import TABLE_HEADER, table_rows
    from linearsr_cli.esgf.probe import link_checkpoint, select_knee, write_plot

    try:
        sel = select_knee(ckpts, val_root=val or None, val_count=val_count, sensitivity=sensitivity)
    except LinearSRError as exc:
        raise _train_error(exc) from None
    table = Table(*TABLE_HEADER, title=f"ESGF: {ckpts}")
    for row in table_rows(sel.report):
        table.add_row(*row)
    Console().print(table)
    for s in sel.skipped:
        typer.echo(f"skipped {s.path.name}: {s.reason}")
    r = sel.report
    if r.divergence is not None:
        typer.echo(f"divergence from step {sel.probes[r.divergence].step}: {r.divergence_reason}")
    typer.echo(f"knee: step {sel.probes[r.knee].step} -> {sel.knee_path}")
    if json_out:
        Path(json_out).write_text(json.dumps(sel.to_json(), indent=1))
    if plot:
        write_plot(sel, plot)
    if link:
        link_checkpoint(sel.knee_path, Path(link))
        typer.echo(f"linked {link} -> {sel.knee_path.name}")


@app.command("tag")
def tag_cmd(
    source: str = typer.Argument(..., help="Image file, folder (recursive), or - to read image paths from stdin."),
    json_out: bool = typer.Option(False, "--json", help="One JSON record per image and line instead of a table."),
    write_sidecars: bool = typer.Option(False, "--write-sidecars", help="Write IMAGE.tags next to each image (edit it; upscale reads it back)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="With --write-sidecars: replace sidecars that already exist."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore sidecars and metadata keywords: always run the tagger."),
    top_k: int = typer.Option(5, "--top-k", help="At most this many tagger labels per image."),
    threshold: float = typer.Option(0.1, help="Keep tagger labels with at least this probability."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or mps."),
) -> None:
    """Show the tags that guide each image (sidecar > metadata keywords > tagger); write sidecars."""
    import json
    import sys

    from rich.console import Console
    from rich.table import Table

    from linearsr_cli.engine.device import choose_device
    from linearsr_cli.errors import LinearSRError
    from linearsr_cli.tag.guidance import TagConfig, TagGuidance
    from linearsr_cli.tag.run import collect_images, table_row, tag_images

    table = Table("image", "source", "tags", "sidecar", title=f"tags: {source}")
    failed = 0
    try:
        guidance = TagGuidance(TagConfig(top_k=top_k, threshold=threshold), choose_device(device))
        paths = collect_images(source, sys.stdin if source == "-" else None)
        for rec in tag_images(paths, guidance, write_sidecars=write_sidecars, overwrite=overwrite, fresh=fresh):
            failed += rec.error is not None
            if rec.error is not None:
                typer.echo(f"error: {rec.path}: {rec.error}", err=True)
            if json_out:
                typer.echo(json.dumps(rec.to_dict(), ensure_ascii=False))
            elif rec.error is None:
                table.add_row(*table_row(rec))
    except LinearSRError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if not json_out:
        Console().print(table)
    raise typer.Exit(EXIT_PARTIAL if failed else EXIT_OK)


@app.command()
def upscale(
    source: Annotated[str, typer.Argument(metavar="IN", help="An image, a folder (recursive, tree mirrored) or - for a list of paths on stdin.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output folder, or an output file name when IN is one image.")],
    scale: Annotated[int, typer.Option(help="Upscaling factor; must match the weights.")] = 4,
    preset: Annotated[str, typer.Option(help="fidelity (1-NFE) or perceptual (multi-step).")] = "fidelity",
    steps: Annotated[int | None, typer.Option(help="Sampling steps: 1 = 1-NFE; more = perceptual. Default: the preset's.")] = None,
    solver: Annotated[str | None, typer.Option(help="euler, heun or dpmpp2m. Default: the preset's.")] = None,
    seed: Annotated[int, typer.Option(help="Noise seed; the same seed gives the same output for an image.")] = 0,
    tags: Annotated[str, typer.Option(help='Tags for every image, e.g. "cat, grass" (default: sidecar, metadata, tagger).')] = "",
    no_tags: Annotated[bool, typer.Option("--no-tags", help="No tag guidance (the model's null token).")] = False,
    input_kind: Annotated[str, typer.Option("--input", help="auto, clean or real: which prior serves each image (weights with priors): clean = SPAN as released, for clean/bicubic-like inputs; real = fine-tuned for noise, blur and JPEG; auto = the weights' input detector, else clean.")] = "auto",
    tile: Annotated[str, typer.Option(help="LR tile side in pixels, or auto (whole image when it fits the memory budget).")] = "auto",
    tile_overlap: Annotated[int, typer.Option(help="Overlap of neighbouring tiles in LR pixels.")] = 16,
    device: Annotated[str, typer.Option(help="auto, cuda, mps or cpu.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, fp32, fp16 or bf16 (autocast; attention sums stay fp32).")] = "auto",
    weights: Annotated[Path | None, typer.Option(help="Weights file (default: $LINEARSR_WEIGHTS, else weights/linearsr-x4.safetensors).")] = None,
    suffix: Annotated[str, typer.Option(help="Added to each output file name before the extension.")] = "",
    fmt: Annotated[str, typer.Option("--format", help="keep, png, jpg, webp or tiff (bmp also works).")] = "keep",
    quality: Annotated[int, typer.Option(help="JPEG/WebP quality, 1-100.")] = 95,
    png_level: Annotated[int, typer.Option(help="PNG/16-bit PNG zlib level, 0-9: 9 smallest, 1 fastest.")] = 3,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs (default: skip them, so reruns resume).")] = False,
    max_pixels: Annotated[int, typer.Option(help="Refuse inputs with more pixels (decompression-bomb guard).")] = 64_000_000,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON record per file on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only failures (for cron).")] = False,
) -> None:
    """Upscale images. Exit 0: all done (or skipped); 1: usage/setup error; 2: some files failed; 130: interrupted."""
    import signal

    from linearsr_cli import console
    from linearsr_cli.config import TileConfig
    from linearsr_cli.engine.batch import OutputConfig, UpscaleRequest, upscale_batch
    from linearsr_cli.engine.upscaler import sampler_config
    from linearsr_cli.errors import LinearSRError
    from linearsr_cli.tag.guidance import TagConfig

    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up like Ctrl-C
    reporter = console.JsonReporter() if json_lines else console.QuietReporter() if quiet else console.RichReporter()
    try:
        tile_px = 0 if tile == "auto" else int(tile)
        req = UpscaleRequest(
            source=source, out=out, weights=weights, scale=scale,
            sampler=sampler_config(preset, steps=steps, solver=solver, seed=seed),
            tiles=TileConfig(tile=tile_px, overlap=tile_overlap),
            output=OutputConfig(suffix=suffix, format=fmt, quality=quality, png_level=png_level, overwrite=overwrite, max_pixels=max_pixels),
            tags=TagConfig(enabled=False) if no_tags else TagConfig(tags=tuple(t for t in tags.split(",") if t.strip())),
            device=device, dtype=dtype, input_kind=input_kind,
        )
        stdin = typer.get_text_stream("stdin") if source == "-" else None
        summary = upscale_batch(req, reporter, stdin)
    except ValueError:
        console.error(f"--tile must be auto or a number of pixels, got {tile!r}")
        raise typer.Exit(EXIT_USAGE) from None
    except LinearSRError as exc:
        console.error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        console.error("interrupted; finished outputs are kept and a rerun resumes")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(EXIT_PARTIAL if summary.failed else EXIT_OK)


@app.command()
def info(
    weights: Annotated[Path | None, typer.Option(help="Weights file to describe (default: the installed one).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Print versions, devices, dtypes and the installed weights."""
    import json

    from linearsr_cli.engine.upscaler import system_info

    report = system_info(weights)
    if json_out:
        print(json.dumps(report, indent=1))
        return
    for key, value in report.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")


@app.command("eval")
def eval_cmd(
    hr: Annotated[Path, typer.Argument(metavar="HR", help="HR image or folder (recursive).")],
    lr: Annotated[Path | None, typer.Option(help="Folder of LR inputs matching HR by relative path/stem (default: make them).")] = None,
    methods: Annotated[str, typer.Option(help="Comma list of bicubic, span, realesrgan, clearreality, spankendata, linearsr-1, linearsr-ms.")] = "bicubic,span,realesrgan,clearreality,spankendata,linearsr-1,linearsr-ms",
    degradation: Annotated[str, typer.Option(help="LR made from HR: bicubic (MATLAB x4) or realistic (Real-ESRGAN, seeded).")] = "bicubic",
    scale: Annotated[int, typer.Option(help="Upscaling factor.")] = 4,
    border: Annotated[int, typer.Option(help="Pixels cropped per side for PSNR/SSIM.")] = 4,
    steps: Annotated[int | None, typer.Option(help="linearsr-ms steps (default: the perceptual preset's).")] = None,
    solver: Annotated[str | None, typer.Option(help="linearsr-ms solver: euler, heun or dpmpp2m.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler noise and the realistic degradation.")] = 0,
    tags: Annotated[str, typer.Option(help="auto (tagger on the LR image), off, or visual (the tagger's pooled feature as one token; for weights trained with --tag-kind visual).")] = "auto",
    input_kind: Annotated[str, typer.Option("--input", help="auto, clean or real: the prior that serves LinearSR (as upscale --input).")] = "auto",
    noref: Annotated[str, typer.Option(help="No-reference metrics: comma list of niqe, brisque, or empty.")] = "niqe,brisque",
    lpips: Annotated[bool, typer.Option("--lpips/--no-lpips", help="Full-reference ST-LPIPS (needs the stlpips-pytorch wheel's weights).")] = True,
    metric_data: Annotated[Path | None, typer.Option(help="Folder with the NIQE/BRISQUE data (default: linearsr_cli/evaluate/data).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights file (default: $LINEARSR_WEIGHTS, else weights/linearsr-x4.safetensors).")] = None,
    device: Annotated[str, typer.Option(help="auto, cuda, mps or cpu.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, fp32, fp16 or bf16.")] = "auto",
    limit: Annotated[int, typer.Option(help="Evaluate only the first N images (0 = all).")] = 0,
    json_out: Annotated[str, typer.Option("--json", help="Write the full report as JSON to this file (- = stdout, no table).")] = "",
    grid: Annotated[Path | None, typer.Option(help="Write a labelled crop grid (LR | methods | HR) PNG here.")] = None,
    grid_images: Annotated[int, typer.Option(help="Rows (images) in the grid.")] = 4,
    grid_crop: Annotated[int, typer.Option(help="Crop side in HR pixels.")] = 128,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """PSNR/SSIM (Y) and NIQE/BRISQUE of LinearSR, bicubic and peers on the same LR inputs. Exit 2: some images failed."""
    import json

    from linearsr_cli.engine.upscaler import sampler_config
    from linearsr_cli.errors import LinearSRError
    from linearsr_cli.evaluate.run import EvalConfig, format_table, run_eval, write_grid

    split = lambda text: tuple(t.strip() for t in text.split(",") if t.strip())  # noqa: E731
    try:
        cfg = EvalConfig(
            hr_dir=hr, lr_dir=lr, weights=weights, methods=split(methods), scale=scale, degradation=degradation,
            seed=seed, border=border, multistep=sampler_config("perceptual", steps=steps, solver=solver, seed=seed),
            noref=split(noref), lpips=lpips, metric_data=metric_data, device=device, dtype=dtype, tags=tags, input_kind=input_kind, limit=limit,
            grid_images=grid_images, grid_crop=grid_crop,
        )
        report = run_eval(cfg, progress=None if quiet else lambda msg: typer.echo(msg, err=True))
        if grid is not None:
            write_grid(report, grid)
    except LinearSRError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    text = json.dumps(report.to_dict(), indent=1)
    if json_out == "-":
        print(text)
    else:
        print(format_table(report))
        if json_out:
            Path(json_out).write_text(text + "\n")
    raise typer.Exit(EXIT_PARTIAL if report.errors else EXIT_OK)


data_app = typer.Typer(help="Training data: fetch the photos from Debian packages.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("fetch")
def data_fetch(
    root: Annotated[str, typer.Option(help="Output folder: train/, val/ and manifest.json.")] = "data/photos",
    val: Annotated[int, typer.Option(help="Photos held out as the validation split (fixed choice).")] = 5,
    cache: Annotated[str, typer.Option(help="Folder for the downloaded .deb files and their unpacked trees.")] = "data/debs",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the summary.")] = False,
) -> None:
    """Download the photo packages (apt-get download + dpkg -x), keep the reviewed photos, write PNGs."""
    from linearsr_cli.errors import LinearSRError
    from linearsr_cli.train.photos import FetchConfig, fetch_photos

    try:
        cfg = FetchConfig(root=root, val=val, cache=cache)
        manifest = fetch_photos(cfg, log=(lambda _: None) if quiet else (lambda msg: typer.echo(msg, err=True)))
    except LinearSRError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    counts, mp = manifest["counts"], manifest["megapixels"]
    typer.echo(f"train: {counts['train']} photos, {mp['train']:.1f} MP; val: {counts['val']} photos, {mp['val']:.1f} MP")
    typer.echo(f"excluded: {len(manifest['excluded'])} files (reasons in {root}/manifest.json)")


# --- commands above this line (add new commands just before it) ---


def main() -> None:
    app()
