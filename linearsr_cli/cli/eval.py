"""`linearsr eval`: LinearSR and peers on the same LR inputs, scored side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from linearsr_cli.cli import options
from linearsr_cli.cli.app import (
    ABLATIONS,
    EXIT_OK,
    EXIT_PARTIAL,
    JsonFlagCommand,
    app,
    project_errors,
)
from linearsr_cli.tag.config import DEFAULT_TAGS


@app.command("eval", cls=JsonFlagCommand)
def eval_cmd(
    hr: Annotated[Path, typer.Argument(metavar="HR", help="HR image or folder (recursive).")],
    lr: Annotated[Path | None, typer.Option(help="Folder of LR inputs matching HR by relative path/stem (default: make them).")] = None,
    methods: Annotated[str, typer.Option(help="Comma list of bicubic, span, realesrgan, clearreality, spankendata, linearsr-1 (the fidelity preset), linearsr-ms (the perceptual preset; --steps, --solver and --shift change it). Default (empty): all of them.", show_default=False)] = "",
    degradation: Annotated[str, typer.Option(help="LR made from HR at --scale: bicubic (MATLAB imresize), realistic (Real-ESRGAN, seeded by --seed) or mixed (every image bicubic and realistic, each lossless and saved as a JPEG of quality 90 and 75: the --input auto test).")] = "bicubic",
    scale: Annotated[int, typer.Option(help="Upscaling factor: 4 or 2 (x4-only peers then run x4 and Lanczos down; LinearSR uses the shipped x2 weights, or --weights of another scale resampled).")] = 4,
    border: Annotated[int, typer.Option(help="Pixels cropped per side for PSNR/SSIM.")] = 4,
    steps: options.Steps = None, solver: options.Solver = None, shift: options.Shift = None, seed: options.Seed = 0,
    tags: Annotated[str, typer.Option(help="auto (tagger on the LR image) or off. Default: as upscale.")] = DEFAULT_TAGS,
    tag_kind: Annotated[str, typer.Option(help="tags, or visual: the tagger's pooled feature as one token, for weights trained with train stage2 --tag-kind visual.", rich_help_panel=ABLATIONS)] = "tags",
    input_kind: options.InputKind = "auto",
    tta: options.Tta = False,
    noref: Annotated[str, typer.Option(help="No-reference metrics: comma list of niqe, brisque, or empty.")] = "niqe,brisque",
    lpips: Annotated[bool, typer.Option("--lpips/--no-lpips", help="Full-reference ST-LPIPS (needs the stlpips-pytorch wheel's weights).")] = True,
    metric_data: Annotated[Path | None, typer.Option(help="Folder with the NIQE/BRISQUE data (default: linearsr_cli/evaluate/data).")] = None,
    weights: options.Weights = None,
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    limit: Annotated[int, typer.Option(help="Evaluate only the first N images (0 = all).")] = 0,
    json_lines: Annotated[bool, typer.Option("--json", help="Print the full report as one JSON line on stdout instead of the table.")] = False,
    json_out: Annotated[Path | None, typer.Option(help="Also write the full report as JSON to this file.")] = None,
    grid: Annotated[Path | None, typer.Option(help="Write a labelled crop grid (LR | methods | HR) PNG here.")] = None,
    grid_images: Annotated[int, typer.Option(help="Rows (images) in the grid.")] = 4,
    grid_crop: Annotated[int, typer.Option(help="Crop side in HR pixels.")] = 128,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """PSNR/SSIM (Y) and NIQE/BRISQUE of LinearSR, bicubic and peers on the same LR inputs. Exit 2: some images failed."""
    import json

    from linearsr_cli.config import sampler_config
    from linearsr_cli.evaluate.run import METHODS, EvalConfig, format_table, run_eval, write_grid

    split = lambda text: tuple(t.strip() for t in text.split(",") if t.strip())  # noqa: E731
    with project_errors():
        cfg = EvalConfig(
            hr_dir=hr, lr_dir=lr, weights=weights, methods=split(methods) or METHODS, scale=scale, degradation=degradation,
            seed=seed, border=border, multistep=sampler_config("perceptual", steps=steps, solver=solver, seed=seed, shift=shift),
            noref=split(noref), lpips=lpips, metric_data=metric_data, device=device, dtype=dtype, tags=tags, tag_kind=tag_kind, input=input_kind, tta=tta, limit=limit,
            grid_images=grid_images, grid_crop=grid_crop,
        )
        report = run_eval(cfg, progress=None if quiet else lambda msg: typer.echo(msg, err=True))
        if grid is not None:
            write_grid(report, grid)
    if json_out is not None:
        Path(json_out).write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    print(json.dumps(report.to_dict()) if json_lines else format_table(report))
    raise typer.Exit(EXIT_PARTIAL if report.errors else EXIT_OK)
