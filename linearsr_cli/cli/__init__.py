"""The `linearsr` command line: one module per command group, each command a thin function that
builds a config and calls one tested function (see cli/app.py for the exit codes).

    upscale.py  linearsr upscale          tag.py    linearsr tag
    train.py    linearsr train ...        knee.py   linearsr select-knee
    eval.py     linearsr eval             data.py   linearsr data fetch
    info.py     linearsr info, version, --version (app.py)

Beside them: options.py (the options upscale and eval share), console.py (messages on stderr,
which reporter a run gets), upscale_report.py and train_report.py (the progress reporters).
"""

from __future__ import annotations

from linearsr_cli.cli.app import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    app,
)

# isort: off
# importing a command module registers its commands; this order is the order of `linearsr --help`
from linearsr_cli.cli import upscale, tag, train, knee, eval, data, info  # noqa: F401, E402
# isort: on

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "app", "main"]


def main() -> None:
    app()
