"""`linearsr data fetch`: the training photos from Debian packages."""

from __future__ import annotations

from typing import Annotated

import typer

from linearsr_cli.cli.app import app, project_errors

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
    from linearsr_cli.data.photos import FetchConfig, fetch_photos

    with project_errors():
        cfg = FetchConfig(root=root, val=val, cache=cache)
        manifest = fetch_photos(cfg, log=(lambda _: None) if quiet else (lambda msg: typer.echo(msg, err=True)))
    counts, mp = manifest["counts"], manifest["megapixels"]
    typer.echo(f"train: {counts['train']} photos, {mp['train']:.1f} MP; val: {counts['val']} photos, {mp['val']:.1f} MP")
    typer.echo(f"excluded: {len(manifest['excluded'])} files (reasons in {root}/manifest.json)")


# --- commands above this line (add new commands just before it) ---
