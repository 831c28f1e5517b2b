"""`linearsr select-knee`: ESGF knee selection over a folder of checkpoints."""

from __future__ import annotations

from pathlib import Path

import typer

from linearsr_cli.cli.app import JsonFlagCommand, app, project_errors


@app.command("select-knee", cls=JsonFlagCommand)
def select_knee_cmd(
    ckpts: str = typer.Argument(..., help="Directory of checkpoints (ours or any safetensors)."),
    val: str = typer.Option("", help="LR/HR pairs (DIR/lr + DIR/hr, or a photo root with val/) to re-measure PSNR/SSIM."),
    val_count: int = typer.Option(4, help="Pairs used from --val (0 = all)."),
    json_lines: bool = typer.Option(False, "--json", help="Print the curves and the choice as one JSON line on stdout instead of the table."),
    json_out: str = typer.Option("", help="Write the curves and the choice as JSON to this file."),
    plot: str = typer.Option("", help="Write the ESGF plot (PNG)."),
    link: str = typer.Option("", help="Symlink (or copy) the chosen checkpoint here, e.g. knee.safetensors."),
    sensitivity: float = typer.Option(1.0, help="Kneedle sensitivity S."),
) -> None:
    """ESGF: find the knee of the stage-1 loss curve (Kneedle) and flag the unstable peak."""
    import json

    from rich.console import Console
    from rich.table import Table

    from linearsr_cli.esgf.knee import TABLE_HEADER, table_rows
    from linearsr_cli.esgf.probe import link_checkpoint, select_knee, write_plot
    from linearsr_cli.train.recipe import knee_val_pairs

    with project_errors():
        source = (lambda scale: knee_val_pairs(val, scale, val_count)) if val else None
        sel = select_knee(ckpts, val_source=source, sensitivity=sensitivity)
    if json_lines:
        print(json.dumps(sel.to_json()))
    else:
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
        typer.echo(f"linked {link} -> {sel.knee_path.name}", err=json_lines)
