"""When records go out: each as soon as its file is written (not after the next file's compute),
the finished files' records and an `interrupted:` summary on Ctrl-C / SIGTERM before exit 130,
and --json's records alone on stdout while the progress bars stay on stderr."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from linearsr_cli.cli import EXIT_INTERRUPTED, console, upscale_report
from linearsr_cli.engine.plan import Job
from linearsr_cli.engine.report import BatchSummary, FileRecord
from tests.test_batch_pipelines import _batch, _Collect, folder

REPO = Path(__file__).resolve().parents[1]


class _Finished(_Collect):
    """Collects events, sets `first` when the first record arrives and keeps the final summary."""

    def __init__(self) -> None:
        super().__init__()
        self.first = threading.Event()
        self.summary: BatchSummary | None = None

    def image_done(self, record) -> None:
        super().image_done(record)
        self.first.set()

    def finish(self, summary) -> None:
        self.summary = summary


def test_a_record_goes_out_when_its_file_is_written_not_after_the_next_compute(tmp_path: Path, tiny_weights: Path) -> None:
    src, out, log = folder(tmp_path / "in", n=3), tmp_path / "out", tmp_path / "run.log"
    batch, jobs = _batch(tiny_weights, src, out)
    compute, reported = batch.compute, _Finished()
    seen_by_second: list[object] = []

    def second_waits_for_first_record(prepared, progress=None):
        if prepared.job.input.name == "p1.png":  # the model holds file 2 until file 1's record is out
            seen_by_second.append(reported.first.wait(timeout=30))  # (30 s: the old bug, records after the next compute)
            seen_by_second.append(log.read_text())
        return compute(prepared, progress)

    batch.compute = second_waits_for_first_record
    with open(log, "a", encoding="utf-8") as fh:
        summary = batch.run(jobs, upscale_report.TeeReporter(upscale_report.LineReporter(fh), reported), prefetch=2)
    assert seen_by_second[0] is True
    assert str(seen_by_second[1]).startswith(f"ok    {src / 'p0.png'} -> {out / 'p0.png'}  ")
    assert [r.status for r in summary.records] == ["ok"] * 3
    assert [name for kind, name in reported.events if kind == "done"] == ["p0.png", "p1.png", "p2.png"]


def test_interrupted_pipeline_writes_and_reports_what_was_computed_then_the_summary(tmp_path: Path, tiny_weights: Path) -> None:
    src, out = folder(tmp_path / "in", n=6), tmp_path / "out"
    batch, jobs = _batch(tiny_weights, src, out)
    compute, reported = batch.compute, _Finished()

    def interrupted_at_the_fourth(prepared, progress=None):
        if prepared.job.input.name == "p3.png":
            raise KeyboardInterrupt
        return compute(prepared, progress)

    batch.compute = interrupted_at_the_fourth
    with pytest.raises(KeyboardInterrupt):
        batch.run(jobs, reported, prefetch=2)
    assert reported.summary is not None and reported.summary.interrupted
    assert [Path(r.input).name for r in reported.summary.records] == ["p0.png", "p1.png", "p2.png"]
    assert reported.summary.not_started == 3  # p3 was in the model: no record, a rerun does it
    assert upscale_report.summary_line(reported.summary) == "interrupted: 3 done, 3 not started"
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]  # no temp file


# A CLI run whose model never finishes the 2nd file (until a signal interrupts it): the 1st file's
# line is out before the signal, deterministically. SIGINT is reset first, as a shell that starts
# a background job with SIGINT ignored would otherwise keep Python from turning it into Ctrl-C.
_STALL_SECOND_FILE = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from linearsr_cli.engine.batch import BatchRun
compute, calls = BatchRun.compute, []
def stalled(self, prepared, progress=None):
    calls.append(prepared)
    while len(calls) == 2:
        time.sleep(1)
    return compute(self, prepared, progress)
BatchRun.compute = stalled
from linearsr_cli.cli import main
main()
"""


@pytest.mark.parametrize(("sig", "json_lines"), [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGTERM, True)],
                         ids=["sigint", "sigterm", "sigterm-json"])
def test_signal_reports_finished_files_and_a_summary_then_exits_130(tmp_path: Path, tiny_weights: Path, sig: int, json_lines: bool) -> None:
    src, out, log = folder(tmp_path / "in", n=4), tmp_path / "out", tmp_path / "run.log"
    cmd = [sys.executable, "-c", _STALL_SECOND_FILE, "upscale", str(src), str(out), "--weights", str(tiny_weights),
           "--tags", "off", "--log", str(log), *(["--json"] if json_lines else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    first = f"ok    {src / 'p0.png'} -> {out / 'p0.png'}  "
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().startswith(first)):  # p0 is written, p1 is in the model
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    summary = "interrupted: 1 done, 3 not started"
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith(first) and lines[1] == summary
    if json_lines:  # records on stdout only; stderr has what --quiet shows
        assert [json.loads(line)["input"] for line in stdout.splitlines()] == [str(src / "p0.png")]
        assert first not in stderr
    else:
        assert stdout == "" and stderr.splitlines()[0] == lines[0]
    assert summary in stderr.splitlines() and "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["p0.png"]  # no temp file left


# ----------------------------------------------------------------------------- --json and the bars


@pytest.mark.parametrize(("stderr_tty", "stdout_tty", "json_lines", "quiet", "expected"), [
    (True, False, True, False, ["RichReporter", "JsonReporter"]),  # --json > records.jsonl on a terminal
    (True, True, True, False, ["QuietReporter", "JsonReporter"]),  # records on the terminal: no bars between them
    (False, False, True, False, ["QuietReporter", "JsonReporter"]),
    (True, False, True, True, ["QuietReporter", "JsonReporter"]),
    (True, False, False, False, ["RichReporter"]),
    (False, False, False, False, ["LineReporter"]),
    (True, False, False, True, ["QuietReporter"]),
])
def test_upscale_reporter_choices(monkeypatch: pytest.MonkeyPatch, stderr_tty: bool, stdout_tty: bool, json_lines: bool,
                                  quiet: bool, expected: list[str]) -> None:
    monkeypatch.setattr(console, "err_console", Console(file=io.StringIO(), force_terminal=stderr_tty))
    monkeypatch.setattr(sys, "stdout", _Stream(tty=stdout_tty))
    chosen = console.upscale_reporter(json_lines=json_lines, quiet=quiet)
    reporters = chosen.reporters if isinstance(chosen, upscale_report.TeeReporter) else (chosen,)
    assert [type(r).__name__ for r in reporters] == expected


def test_json_records_stay_on_stdout_while_the_bars_draw_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(console, "err_console", Console(file=err, force_terminal=True, color_system=None, width=100))
    stdout = _Stream(tty=False)
    monkeypatch.setattr(sys, "stdout", stdout)
    reporter = console.upscale_reporter(json_lines=True)
    record = FileRecord(input="in/a.png", output="out/a.png", status="ok", seconds=0.5)
    reporter.start(1)
    reporter.image_start(Job(Path("in/a.png"), Path("out/a.png"), "png"), 0)
    reporter.image_done(record)
    reporter.finish(BatchSummary(records=[record], total=1))
    assert [json.loads(line) for line in stdout.getvalue().splitlines()] == [record.to_dict()]
    assert "batch" in err.getvalue() and "1 upscaled" in err.getvalue()  # the bars and the summary
    assert "{" not in err.getvalue()


class _Stream(io.StringIO):
    def __init__(self, *, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty
