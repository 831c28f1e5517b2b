"""What a batch reports: one `FileRecord` per input, the run's `BatchSummary`, and the
`Reporter` protocol through which progress leaves the engine (cli/upscale_report.py implements it).

A batch never stops for one bad file: every input ends as a `FileRecord` with a status:

    ok        written (`note` says when it replaced an output made with other settings)
    skipped   the output exists and its settings record matches this run
    kept      the output exists, made with other settings or by another tool; --keep-existing
    conflict  the output exists without a settings record (another tool's): never overwritten
              without --overwrite; the run exits 2
    failed    with the reason
    ignored   a file in an input folder whose extension is not an image we read
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from linearsr_cli.engine.plan import Job


@dataclass
class FileRecord:
    """What happened to one input: the per-file line of --json."""

    input: str
    output: str
    status: str  # "ok" | "skipped" | "kept" | "conflict" | "failed" | "ignored" (module docstring)
    size: list[int] | None = None  # output [width, height]
    seconds: float = 0.0
    tags: list[str] = field(default_factory=list)
    tag_source: str | None = None
    input_kind: str | None = None  # the prior that served it ("clean"/"real"); None without one
    input_why: str | None = None  # why: "--input", or the evidence --input auto saw
    prior: str | None = None  # the prior that served it: clean, real, or texture (real inputs, multi-step)
    passes: list[int] | None = None  # the native model passes, e.g. [4, 2] for --outscale 6
    tta: bool = False
    error: str | None = None
    note: str | None = None  # why skipped/kept/conflict, or what an "ok" replaced
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


REDONE = "redone: "  # the note of an output made again because it was made with other settings


REPLACED = "replaced (--overwrite)"  # the note of one --overwrite made again, nothing else calling for it


@dataclass
class BatchSummary:
    records: list[FileRecord] = field(default_factory=list)  # one per finished job, in job order
    total: int = 0  # jobs in the run
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM before every job had its record

    @property
    def not_started(self) -> int:
        """Jobs without a record: not reached, or read ahead or in the model when interrupted."""
        return max(0, self.total - len(self.records))

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def conflicts(self) -> int:
        return self.count("conflict")

    @property
    def redone(self) -> int:
        """Outputs written again because they were made with other settings."""
        return sum(r.status == "ok" and (r.note or "").startswith(REDONE) for r in self.records)

    @property
    def replaced(self) -> int:
        """Outputs written again only because --overwrite says so."""
        return sum(r.status == "ok" and (r.note or "").startswith(REPLACED) for r in self.records)


class Reporter(Protocol):
    """Progress sink (cli/upscale_report.py implements it): the batch calls these, never print. `image_done`
    comes from the writer thread of a pipelined run, as each file is written; the run serialises
    the calls (`SerializedReporter`). `finish` also ends an interrupted run (`summary.interrupted`)."""

    def start(self, total: int) -> None: ...

    def image_start(self, job: Job, index: int) -> None: ...

    def image_progress(self, done: int, total: int) -> None: ...

    def image_done(self, record: FileRecord) -> None: ...

    def finish(self, summary: BatchSummary) -> None: ...


class SerializedReporter:
    """A reporter whose calls never overlap: the pipeline reports records from its writer
    thread while the main thread starts images and shows their progress."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.lock = threading.Lock()

    def start(self, total: int) -> None:
        with self.lock:
            self.reporter.start(total)

    def image_start(self, job: Job, index: int) -> None:
        with self.lock:
            self.reporter.image_start(job, index)

    def image_progress(self, done: int, total: int) -> None:
        with self.lock:
            self.reporter.image_progress(done, total)

    def image_done(self, record: FileRecord) -> None:
        with self.lock:
            self.reporter.image_done(record)

    def finish(self, summary: BatchSummary) -> None:
        with self.lock:
            self.reporter.finish(summary)


@contextmanager
def reporting(reporter: Reporter, total: int) -> Iterator[BatchSummary]:
    """A run's summary between `reporter.start` and `reporter.finish`. On Ctrl-C / SIGTERM
    (KeyboardInterrupt) the reporter still gets `finish`, with the summary marked interrupted,
    before the exception propagates: the records it has, then what was not started."""
    summary = BatchSummary(total=total)
    reporter.start(total)
    try:
        yield summary
    except KeyboardInterrupt:
        summary.interrupted = True
        reporter.finish(summary)
        raise
    reporter.finish(summary)


def report_done(reporter: Reporter, summary: BatchSummary, record: FileRecord) -> None:
    """A finished file: its record into the summary (in job order) and out to the reporter."""
    summary.records.append(record)
    reporter.image_done(record)
