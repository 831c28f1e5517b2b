"""Console output: rich progress bars, JSON lines for scripts, quiet mode for cron.

With the cli/ package the only module that prints. Progress and messages go to stderr; with
--json, stdout carries exactly one JSON object per input file (upscale) or per checkpoint
(train) and nothing else.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from linearsr_cli.engine.plan import Job
from linearsr_cli.engine.report import BatchSummary, FileRecord
from linearsr_cli.engine.rerun import planned_record
from linearsr_cli.train.report import SilentReporter

# soft_wrap: rich never breaks a printed line (it would at 80 columns in a pipe or a file, where
# it cannot know a width, and split paths that grep looks for); a terminal wraps on its own
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """`error: MESSAGE` on stderr, one line whatever its length (red on a terminal)."""
    err_console.print(f"[bold red]error:[/] {escape(_one_line(message))}")


def info(message: str) -> None:
    """A message on stderr, never wrapped."""
    err_console.print(escape(message))


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


def _one_line(text: object) -> str:
    """Text on one line whatever it holds (a newline in a file name is written as \\n)."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


def problem_lines(record: FileRecord) -> list[str]:
    """The lines --quiet prints for a record: its failure or conflict, and its warnings."""
    lines = []
    if record.status == "failed":
        lines.append(f"failed: {_one_line(record.input)}: {_one_line(record.error)}")
    elif record.status == "conflict":
        lines.append(f"conflict: {_one_line(record.input)} -> {_one_line(record.output)}: {_one_line(record.note)}")
    lines.extend(f"warning: {_one_line(record.input)}: {_one_line(w)}" for w in record.warnings)
    return lines


def record_line(record: FileRecord) -> str | None:
    """The plain log line of a finished file (None for ignored ones): `ok|skip|keep  IN -> OUT
    1.23s` plus why, or the --quiet lines of a failure or conflict."""
    if record.status == "ignored":
        return None
    if record.status in ("failed", "conflict"):
        return "\n".join(problem_lines(record))
    word = {"ok": "ok", "skipped": "skip", "kept": "keep"}.get(record.status, record.status)
    line = f"{word:<4}  {_one_line(record.input)} -> {_one_line(record.output)}  {record.seconds:.2f}s"
    if record.note and record.status != "skipped":
        line += f"  ({_one_line(record.note)})"
    return "\n".join([line, *problem_lines(record)])


def _progress(console: Console, *middle: ProgressColumn) -> Progress:
    """A bar with description, M/N, the given columns and an ETA, on `console`. stdout is left
    alone (rich would route it above the bars, onto stderr): it carries --json's records."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *middle, TextColumn("eta"),
        TimeRemainingColumn(), console=console, transient=False, redirect_stdout=False,
    )


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


def upscale_reporter(*, json_lines: bool = False, quiet: bool = False, log: Any = None) -> Any:
    """stderr: progress bars on a terminal (not with --quiet, nor with --json when stdout is that
    terminal too: bars redrawn between records garble both), else plain lines when it is a pipe or
    a file, or with --quiet / --json only failures, conflicts, warnings and an interrupted run's
    summary. stdout: with --json one record per file, nothing else. With `log` (an open text
    file) the plain lines go there too."""
    if err_console.is_terminal and not quiet and not (json_lines and _is_terminal(sys.stdout)):
        shown: list[Any] = [RichReporter()]
    elif quiet or json_lines:
        shown = [QuietReporter()]
    else:
        shown = [LineReporter()]
    if log is not None:
        shown.append(LineReporter(log))  # before stdout's records: a closed stdout still leaves the log whole
    if json_lines:
        shown.append(JsonReporter())
    return shown[0] if len(shown) == 1 else TeeReporter(*shown)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no descriptor, or closed
        return False


class JsonReporter(QuietReporter):
    """--json: one JSON object per file on stdout (input, output, size, seconds, status, tags);
    nothing on stderr (upscale_reporter pairs it with the reporter that owns stderr)."""

    def image_done(self, record: FileRecord) -> None:
        print(json.dumps(record.to_dict()), flush=True)

    def finish(self, summary: BatchSummary) -> None:
        pass


class RichReporter:
    """Two rich progress bars on stderr: the batch (files, overall ETA) and the current image
    (network evaluations x tiles, per-image ETA); failures printed above the bars."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or err_console
        self.progress = _progress(self.console, TimeElapsedColumn())
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


# ----------------------------------------------------------------------------- training


class QuietTrainReporter(SilentReporter):
    """--quiet training: nothing while it runs (errors still reach stderr through the CLI)."""

    def message(self, text: str) -> None:
        pass


class JsonTrainReporter(QuietTrainReporter):
    """--json training: one JSON object per checkpoint on stdout (stage, step, loss, lr, val)."""

    def checkpoint(self, record: dict[str, Any]) -> None:
        print(json.dumps(_finite(record)), flush=True)


def _finite(value: Any) -> Any:
    """NaN/inf -> None, recursively: JSON lines that every parser reads."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RichTrainReporter:
    """A rich progress bar on stderr per run: step/total, steps/s, smoothed loss, lr, ETA and
    the latest checkpoint's validation PSNR; one line per checkpoint above the bar."""

    SMOOTH = 0.98  # EMA factor of the displayed loss

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or err_console
        fields = ("{task.fields[speed]} it/s", "loss {task.fields[loss]}", "lr {task.fields[lr]}", "val {task.fields[val]}")
        self.progress = _progress(self.console, *(TextColumn(f) for f in fields))
        self.task = None
        self.smoothed: float | None = None
        self.started = 0.0
        self.first_step = 0

    def start(self, name: str, step: int, total: int) -> None:
        self.smoothed = None
        self.started, self.first_step = time.monotonic(), step
        self.progress.start()
        self.task = self.progress.add_task(
            escape(name), total=total, completed=step, speed="-", loss="-", lr="-", val="-"
        )

    def step(self, step: int, loss: float, lr: float) -> None:
        if math.isfinite(loss):
            self.smoothed = loss if self.smoothed is None else self.SMOOTH * self.smoothed + (1 - self.SMOOTH) * loss
        rate = (step - self.first_step) / max(time.monotonic() - self.started, 1e-9)
        self.progress.update(
            self.task, completed=step, speed=f"{rate:.2f}",
            loss="-" if self.smoothed is None else f"{self.smoothed:.4f}", lr=f"{lr:.1e}",
        )

    def checkpoint(self, record: dict[str, Any]) -> None:
        val = record.get("val") or {}
        psnr = next((v for k, v in val.items() if k.startswith("psnr") and isinstance(v, float)), None)
        shown = "-" if psnr is None or not math.isfinite(psnr) else f"{psnr:.2f} dB"
        self.progress.update(self.task, val=shown)
        self.progress.console.print(
            f"checkpoint step {record.get('step')}: loss {record.get('loss', math.nan):.4f}, val {shown} "
            f"-> {escape(Path(str(record.get('checkpoint', ''))).name)}"
        )

    def finish(self) -> None:
        self.progress.stop()

    def message(self, text: str) -> None:
        self.console.print(escape(text))


def train_reporter(*, quiet: bool = False, json_lines: bool = False) -> QuietTrainReporter | JsonTrainReporter | RichTrainReporter:
    """The training reporter for --quiet / --json / the default progress bar."""
    if json_lines:
        return JsonTrainReporter()
    if quiet:
        return QuietTrainReporter()
    return RichTrainReporter()
