"""Console output: one-line messages on stderr, the progress-bar layout, and which reporter a run
gets (rich bars on a terminal, plain lines into a pipe or a file, --quiet, --json).

Progress and messages go to stderr; with --json, stdout carries exactly one JSON object per input
file (upscale) or per checkpoint (train) and nothing else. The reporters themselves are
cli/upscale_report.py (a batch) and cli/train_report.py (a training run); they build on the
helpers here, so the functions that pick one import them when called.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from linearsr_cli.train.report import TrainReporter

# soft_wrap: rich never breaks a printed line (it would at 80 columns in a pipe or a file, where
# it cannot know a width, and split paths that grep looks for); a terminal wraps on its own
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """`error: MESSAGE` on stderr, one line whatever its length (red on a terminal)."""
    err_console.print(f"[bold red]error:[/] {escape(one_line(message))}")


def one_line(text: object) -> str:
    """Text on one line whatever it holds (a newline in a file name is written as \\n)."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


def silence_broken_pipe(*streams: Any) -> None:
    """After a BrokenPipeError: point the streams' descriptors at /dev/null so that Python's
    final flush does not print a second error (the recipe of the Python signal docs)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in streams:
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):  # not a real descriptor (a test runner's buffer)
            pass
    os.close(devnull)


def progress_bar(console: Console, *middle: ProgressColumn) -> Progress:
    """A bar with description, M/N, the given columns and an ETA, on `console`. stdout is left
    alone (rich would route it above the bars, onto stderr): it carries --json's records."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *middle, TextColumn("eta"),
        TimeRemainingColumn(), console=console, transient=False, redirect_stdout=False,
    )


def upscale_reporter(*, json_lines: bool = False, quiet: bool = False, log: Any = None) -> Any:
    """stderr: progress bars on a terminal (not with --quiet, nor with --json when stdout is that
    terminal too: bars redrawn between records garble both), else plain lines when it is a pipe or
    a file, or with --quiet / --json only failures, conflicts, warnings and an interrupted run's
    summary. stdout: with --json one record per file, nothing else. With `log` (an open text
    file) the plain lines go there too."""
    from linearsr_cli.cli.upscale_report import (
        JsonReporter,
        LineReporter,
        QuietReporter,
        RichReporter,
        TeeReporter,
    )

    if err_console.is_terminal and not quiet and not (json_lines and _is_terminal(sys.stdout)):
        shown: list[Any] = [RichReporter(err_console)]
    elif quiet or json_lines:
        shown = [QuietReporter()]
    else:
        shown = [LineReporter()]
    if log is not None:
        shown.append(LineReporter(log))  # before stdout's records: a closed stdout still leaves the log whole
    if json_lines:
        shown.append(JsonReporter())
    return shown[0] if len(shown) == 1 else TeeReporter(*shown)


def train_reporter(*, quiet: bool = False, json_lines: bool = False) -> TrainReporter:
    """The training reporter for --json / --quiet (nothing while it runs; errors still reach
    stderr through the CLI) / the default progress bar."""
    from linearsr_cli.cli.train_report import JsonTrainReporter, RichTrainReporter
    from linearsr_cli.train.report import SilentReporter

    if json_lines:
        return JsonTrainReporter()
    if quiet:
        return SilentReporter()
    return RichTrainReporter(err_console)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no descriptor, or closed
        return False
