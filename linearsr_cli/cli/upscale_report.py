"""The reporters of an upscale batch (engine/report.py's `Reporter` protocol): rich bars, plain
lines, --quiet, --json, and a tee of them; the lines and the summary they print.

cli/console.py's `upscale_reporter` picks them for a run.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import TimeElapsedColumn

from linearsr_cli.cli.console import one_line, progress_bar
from linearsr_cli.engine.plan import Job
from linearsr_cli.engine.report import BatchSummary, FileRecord
from linearsr_cli.engine.rerun import planned_record


def summary_line(summary: BatchSummary) -> str:
    """'N upscaled (R redone: other settings, P replaced: --overwrite), S skipped (same settings),
    [K kept, C conflicts,] F failed[, I ignored]'; for a run stopped by Ctrl-C / SIGTERM
    'interrupted: N done, M not started' (BatchSummary)."""
    if summary.interrupted:
        return f"interrupted: {len(summary.records)} done, {summary.not_started} not started"
    again = [f"{summary.redone} redone: other settings"] if summary.redone else []
    again += [f"{summary.replaced} replaced: --overwrite"] if summary.replaced else []
    parts = [f"{summary.count('ok')} upscaled" + (f" ({', '.join(again)})" if again else ""),
             f"{summary.count('skipped')} skipped (same settings)"]
    if summary.count("kept"):
        parts.append(f"{summary.count('kept')} kept (--keep-existing)")
    if summary.conflicts:
        parts.append(f"{summary.conflicts} conflicts (outputs without a LinearSR record; --overwrite replaces them)")
    parts.append(f"{summary.failed} failed")
    if summary.count("ignored"):
        parts.append(f"{summary.count('ignored')} ignored (not image files)")
    return ", ".join(parts)


def ignored_record(job: Job) -> FileRecord:
    """The record of a file passed over for its extension."""
    return planned_record(job)  # type: ignore[return-value]


def problem_lines(record: FileRecord) -> list[str]:
    """The lines --quiet prints for a record: its failure or conflict, and its warnings."""
    lines = []
    if record.status == "failed":
        lines.append(f"failed: {one_line(record.input)}: {one_line(record.error)}")
    elif record.status == "conflict":
        lines.append(f"conflict: {one_line(record.input)} -> {one_line(record.output)}: {one_line(record.note)}")
    lines.extend(f"warning: {one_line(record.input)}: {one_line(w)}" for w in record.warnings)
    return lines


def record_line(record: FileRecord) -> str | None:
    """The plain log line of a finished file (None for ignored ones): `ok|skip|keep  IN -> OUT
    1.23s` plus why, or the --quiet lines of a failure or conflict."""
    if record.status == "ignored":
        return None
    if record.status in ("failed", "conflict"):
        return "\n".join(problem_lines(record))
    word = {"ok": "ok", "skipped": "skip", "kept": "keep"}.get(record.status, record.status)
    line = f"{word:<4}  {one_line(record.input)} -> {one_line(record.output)}  {record.seconds:.2f}s"
    if record.note and record.status != "skipped":
        line += f"  ({one_line(record.note)})"
    return "\n".join([line, *problem_lines(record)])


class QuietReporter:
    """--quiet: nothing but the failures, each with its path and reason, on stderr (and the
    summary of an interrupted run)."""

    def start(self, total: int) -> None:
        pass

    def image_start(self, job: Job, index: int) -> None:
        pass

    def image_progress(self, done: int, total: int) -> None:
        pass

    def image_done(self, record: FileRecord) -> None:
        for line in problem_lines(record):
            print(line, file=sys.stderr, flush=True)

    def finish(self, summary: BatchSummary) -> None:
        if summary.interrupted:
            print(summary_line(summary), file=sys.stderr, flush=True)


class LineReporter(QuietReporter):
    """stderr (or `stream`) is not a terminal: one plain line per finished file, never wrapped
    and never redrawn, then the summary line. Also what --log FILE writes."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(text + "\n")
        stream.flush()

    def image_done(self, record: FileRecord) -> None:
        line = record_line(record)
        if line is not None:
            self._write(line)

    def finish(self, summary: BatchSummary) -> None:
        self._write(summary_line(summary))


class TeeReporter:
    """Every call to each of `reporters` (the console one, then --log's)."""

    def __init__(self, *reporters: Any) -> None:
        self.reporters = reporters

    def start(self, total: int) -> None:
        for r in self.reporters:
            r.start(total)

    def image_start(self, job: Job, index: int) -> None:
        for r in self.reporters:
            r.image_start(job, index)

    def image_progress(self, done: int, total: int) -> None:
        for r in self.reporters:
            r.image_progress(done, total)

    def image_done(self, record: FileRecord) -> None:
        for r in self.reporters:
            r.image_done(record)

    def finish(self, summary: BatchSummary) -> None:
        for r in self.reporters:
            r.finish(summary)


class JsonReporter(QuietReporter):
    """--json: one JSON object per file on stdout (input, output, size, seconds, status, tags);
    nothing on stderr (upscale_reporter pairs it with the reporter that owns stderr)."""

    def image_done(self, record: FileRecord) -> None:
        print(json.dumps(record.to_dict()), flush=True)

    def finish(self, summary: BatchSummary) -> None:
        pass


class RichReporter:
    """Two rich progress bars on `console` (stderr): the batch (files, overall ETA) and the
    current image (network evaluations x tiles, per-image ETA); failures printed above the bars."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = progress_bar(self.console, TimeElapsedColumn())
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
        for line in problem_lines(record):
            word, _, rest = line.partition(":")
            self.progress.console.print(f"[red]{word}[/]:{escape(rest)}")
        self.progress.advance(self.batch_task)

    def finish(self, summary: BatchSummary) -> None:
        self.progress.stop()
        self.console.print(summary_line(summary))
