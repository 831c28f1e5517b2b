"""`linearsr tag`: show (and write as sidecars) the tags that guide each image."""

from __future__ import annotations

import typer

from linearsr_cli.cli.app import EXIT_OK, EXIT_PARTIAL, app, project_errors


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
    from linearsr_cli.tag.guidance import TagConfig, TagGuidance
    from linearsr_cli.tag.run import collect_images, table_row, tag_images

    table = Table("image", "source", "tags", "sidecar", title=f"tags: {source}")
    failed = 0
    with project_errors():
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
    if not json_out:
        Console().print(table)
    raise typer.Exit(EXIT_PARTIAL if failed else EXIT_OK)
