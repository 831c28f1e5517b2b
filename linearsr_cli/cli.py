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

from linearsr_cli import __version__

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_PARTIAL = 2

app = typer.Typer(
    name="linearsr",
    help="Batch image upscaler on a linear-attention diffusion super-resolution model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print the LinearSR version."""
    print(__version__)


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


@app.command("eval")
def eval_cmd(
    hr: Annotated[Path, typer.Argument(metavar="HR", help="HR image or folder (recursive).")],
    lr: Annotated[Path | None, typer.Option(help="Folder of LR inputs matching HR by relative path/stem (default: make them).")] = None,
    methods: Annotated[str, typer.Option(help="Comma list of bicubic, span, realesrgan, linearsr-1, linearsr-ms.")] = "bicubic,span,realesrgan,linearsr-1,linearsr-ms",
    degradation: Annotated[str, typer.Option(help="LR made from HR: bicubic (MATLAB x4) or realistic (Real-ESRGAN, seeded).")] = "bicubic",
    scale: Annotated[int, typer.Option(help="Upscaling factor.")] = 4,
    border: Annotated[int, typer.Option(help="Pixels cropped per side for PSNR/SSIM.")] = 4,
    steps: Annotated[int | None, typer.Option(help="linearsr-ms steps (default: the perceptual preset's).")] = None,
    solver: Annotated[str | None, typer.Option(help="linearsr-ms solver: euler, heun or dpmpp2m.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler noise and the realistic degradation.")] = 0,
    tags: Annotated[str, typer.Option(help="auto (tagger on the LR image) or off.")] = "auto",
    noref: Annotated[str, typer.Option(help="No-reference metrics: comma list of niqe, brisque, or empty.")] = "niqe,brisque",
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
            noref=split(noref), metric_data=metric_data, device=device, dtype=dtype, tags=tags, limit=limit,
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


# --- commands above this line (add new commands just before it) ---


def main() -> None:
    app()
