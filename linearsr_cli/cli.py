"""The `linearsr` command line. Commands only parse options, build configs, call one tested
function and map project errors to exit codes:

    0  everything asked for was done
    1  usage or setup error (bad option, missing weights, unusable device)
    2  the run went through but some inputs failed (each one reported)
"""

from __future__ import annotations

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


# --- commands above this line (add new commands just before it) ---


def main() -> None:
    app()
