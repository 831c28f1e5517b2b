"""Console output: rich progress bars, JSON lines for scripts, quiet mode for cron.

With cli.py the only module that prints. Progress and messages go to stderr; with --json,
stdout carries exactly one JSON object per input file and nothing else.
"""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from linearsr_cli.engine.batch import BatchSummary, FileRecord, Job

err_console = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    """A plain error line on stderr."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")


def info(message: str) -> None:
    err_console.print(escape(message))


def summary_line(summary: BatchSummary) -> str:
    return (
        f"{summary.count('ok')} upscaled, {summary.count('skipped')} skipped (output exists), "
        f"{summary.failed} failed"
    )


class QuietReporter:
    """--quiet: nothing but the failures, each with its path and reason, on stderr."""

    def start(self, total: int) -> None:
        pass

    def image_start(self, job: Job, index: int) -> None:
        pass

    def image_progress(self, done: int, total: int) -> None:
        pass

    def image_done(self, record: FileRecord) -> None:
        if record.status == "failed":
            print(f"failed: {record.input}: {record.error}", file=sys.stderr, flush=True)

    def finish(self, summary: BatchSummary) -> None:
        pass


class JsonReporter(QuietReporter):
    """--json: one JSON object per file on stdout (input, output, size, seconds, status, tags)."""

    def image_done(self, record: FileRecord) -> None:
        print(json.dumps(record.to_dict()), flush=True)


class RichReporter:
    """Two rich progress bars on stderr: the batch (files, overall ETA) and the current image
    (network evaluations x tiles, per-image ETA); failures printed above the bars."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or err_console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.batch_task = None
        self.image_task = None

    def start(self, total: int) -> None:
        self.progress.start()
        self.batch_task = self.progress.add_task("batch", total=total)
        self.image_task = self.progress.add_task("image", total=1)

    def image_start(self, job: Job, index: int) -> None:
        self.progress.reset(self.image_task, total=1, description=escape(job.input.name)[:40])

    def image_progress(self, done: int, total: int) -> None:
        self.progress.update(self.image_task, completed=done, total=total)

    def image_done(self, record: FileRecord) -> None:
        if record.status == "failed":
            self.progress.console.print(
                f"[red]failed[/] {escape(record.input)}: {escape(record.error or '')}"
            )
        self.progress.advance(self.batch_task)

    def finish(self, summary: BatchSummary) -> None:
        self.progress.stop()
        self.console.print(summary_line(summary))
