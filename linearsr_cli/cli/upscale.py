"""`linearsr upscale`: the batch upscaler."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from linearsr_cli.cli import options
from linearsr_cli.cli.app import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    MANY_MACHINES,
    app,
)
from linearsr_cli.tag.config import DEFAULT_TAGS


@app.command()
def upscale(
    source: Annotated[str, typer.Argument(metavar="IN", help="An image, a folder (recursive, tree mirrored) or - for a list of paths on stdin (mirrored under OUT relative to the deepest folder holding them all).")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output folder, or an output file name when IN is one image.")],
    scale: Annotated[int | None, typer.Option(help="The native model: 2 or 4 (the shipped x2 or x4 weights); must match --weights. Default: 4, or the weights' own scale.")] = None,
    outscale: Annotated[float | None, typer.Option("--outscale", "-s", help="Any output factor > 0 (1.5, 3, 6...): the native model(s) reaching the smallest scale >= it, then an antialiased resample (linear light) to exactly round(F x size).")] = None,
    width: Annotated[int | None, typer.Option(help="Output width in pixels (height follows the aspect ratio unless --height is given too).")] = None,
    height: Annotated[int | None, typer.Option(help="Output height in pixels (width follows the aspect ratio unless --width is given too).")] = None,
    fit: Annotated[str, typer.Option(help="--width with --height of another aspect ratio: contain (fit inside the box), cover (fill it, centre crop) or stretch (exactly W x H, distorted).")] = "contain",
    tta: options.Tta = False,
    preset: Annotated[str, typer.Option(help="fidelity (1-NFE) or perceptual (multi-step).")] = "fidelity",
    steps: options.Steps = None, solver: options.Solver = None, shift: options.Shift = None, seed: options.Seed = 0,
    tags: Annotated[str, typer.Option(help='TAG guidance: auto (sidecar > metadata keywords > tagger), off (the model\'s null token), or the tags for every image, e.g. "cat, grass".')] = DEFAULT_TAGS,
    no_tags: Annotated[bool, typer.Option("--no-tags", hidden=True, help="Old spelling of --tags off.")] = False,
    input_kind: options.InputKind = "auto",
    tile: Annotated[str, typer.Option("--tile", "-t", help="LR tile side in pixels, or auto (whole image when it fits the memory budget).")] = "auto",
    tile_overlap: Annotated[int, typer.Option(help="Overlap of neighbouring tiles in LR pixels.")] = 16,
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    threads: Annotated[int | None, typer.Option(help="CPU threads of the model (torch.set_num_threads), >= 1. Default: PyTorch's choice.")] = None,
    weights: options.Weights = None,
    suffix: Annotated[str, typer.Option(help="Added to each output file name before the extension.")] = "",
    fmt: Annotated[str, typer.Option("--format", "-f", help="keep (the input's), png, jpg, webp, tiff, bmp, heic or avif (heic and avif with the \\[heif] extra).")] = "keep",
    quality: Annotated[int, typer.Option(help="JPEG, WebP, HEIC and AVIF quality, 1-100.")] = 95,
    png_level: Annotated[int, typer.Option(help="PNG/16-bit PNG zlib level, 0-9: 9 smallest, 1 fastest.")] = 3,
    overwrite: Annotated[bool, typer.Option(help="Replace every existing output. Default: skip outputs made with the same settings, redo those made with others, report outputs without a LinearSR record as conflicts (exit 2).")] = False,
    keep_existing: Annotated[bool, typer.Option("--keep-existing", help="Keep existing outputs made with other settings or by another tool (reported as kept) instead of redoing them or calling them conflicts.")] = False,
    max_pixels: Annotated[int, typer.Option(help="Refuse inputs with more pixels (decompression-bomb guard).")] = 64_000_000,
    max_canvas: Annotated[int, typer.Option(help="Refuse a file whose chain of native passes would build a larger canvas, in pixels, before the final resample (--outscale 16 of 12 MP is 3 GP).")] = 1_024_000_000,
    null: Annotated[bool, typer.Option("--null", "-0", help="With IN = -: paths on stdin are separated by NUL bytes (find -print0), not lines.")] = False,
    log: Annotated[Path | None, typer.Option(help="Also append one plain line per finished file (and the summary) to this file.")] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON record per file on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only failures (for cron).")] = False,
    shard: Annotated[str, typer.Option(help="K/N: only this shard of the files (stable by output path), for N copies of one command (Slurm arrays, Kubernetes indexed Jobs).", rich_help_panel=MANY_MACHINES)] = "0/1",
    ray: Annotated[str, typer.Option(help="Run on Ray: auto (a running cluster, else a local one), local, or a Ray address. Needs the \\[ray] extra; files on a filesystem every node sees.", rich_help_panel=MANY_MACHINES)] = "",
    ray_actors: Annotated[int, typer.Option(help="Ray actors (0 = one per GPU, else one per node).", rich_help_panel=MANY_MACHINES)] = 0,
    ray_cpus: Annotated[float, typer.Option(help="CPUs per Ray actor (0 = 1 with GPUs, else all of a node's).", rich_help_panel=MANY_MACHINES)] = 0.0,
    ray_gpus: Annotated[float, typer.Option(help="GPUs per Ray actor (-1 = 1 when the cluster has GPUs, else 0).", rich_help_panel=MANY_MACHINES)] = -1.0,
    ray_batch: Annotated[int, typer.Option(help="Files per Ray task.", rich_help_panel=MANY_MACHINES)] = 1,
) -> None:
    """Upscale images. Exit 0: all done (or skipped); 1: usage/setup error or no input; 2: some files failed or conflict with existing outputs; 130: interrupted; 141: output pipe closed."""
    import signal
    import sys

    from linearsr_cli.cli import console
    from linearsr_cli.cli.upscale_report import ignored_record
    from linearsr_cli.config import TileConfig, sampler_config
    from linearsr_cli.engine.batch import upscale_batch
    from linearsr_cli.engine.pipeline import parse_tile
    from linearsr_cli.engine.plan import (
        NoInputError,
        OutputConfig,
        UpscaleRequest,
        parse_shard,
        stdin_paths,
    )
    from linearsr_cli.engine.resize import SizeRequest
    from linearsr_cli.errors import LinearSRError
    from linearsr_cli.tag.config import tag_config_for

    try:
        req = UpscaleRequest(
            source=source, out=out, weights=weights, scale=scale,
            sampler=sampler_config(preset, steps=steps, solver=solver, seed=seed, shift=shift),
            tiles=TileConfig(tile=parse_tile(tile), overlap=tile_overlap),
            output=OutputConfig(suffix=suffix, format=fmt, quality=quality, png_level=png_level, overwrite=overwrite,
                                max_pixels=max_pixels, keep_existing=keep_existing, max_canvas=max_canvas),
            tags=tag_config_for(tags, no_tags=no_tags),
            device=device, dtype=dtype, input=input_kind, shard=parse_shard(shard),
            size=SizeRequest(outscale=outscale, width=width, height=height, fit=fit), tta=tta, threads=threads,
        )
        if null and source != "-":
            raise LinearSRError("--null/-0 reads a list from stdin: give - as IN")
        log_file = open(log, "a", encoding="utf-8", errors="backslashreplace") if log is not None else None  # noqa: SIM115
    except LinearSRError as exc:
        console.error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except OSError as exc:
        console.error(f"cannot open --log {log}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_USAGE) from None
    reporter = console.upscale_reporter(json_lines=json_lines, quiet=quiet, log=log_file)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up like Ctrl-C
    try:
        stdin = stdin_paths(typer.get_text_stream("stdin"), null=null) if source == "-" else None
        if ray:
            from linearsr_cli.engine.ray import RayConfig, upscale_batch_ray

            cfg = RayConfig(address=ray, actors=ray_actors, cpus_per_actor=ray_cpus, gpus_per_actor=ray_gpus, batch_size=ray_batch)
            summary = upscale_batch_ray(req, cfg, reporter, stdin)
        else:
            summary = upscale_batch(req, reporter, stdin)
    except NoInputError as exc:
        if json_lines:  # --json lists what was passed over, then the reason
            for job in exc.ignored:
                reporter.image_done(ignored_record(job))
        console.error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except LinearSRError as exc:
        console.error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        console.error("interrupted; finished outputs are kept and a rerun resumes")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:
        console.silence_broken_pipe(sys.stdout, sys.stderr)  # `--json | head -1`: stop quietly
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        if log_file is not None:
            log_file.close()
    raise typer.Exit(EXIT_PARTIAL if summary.failed or summary.conflicts else EXIT_OK)
