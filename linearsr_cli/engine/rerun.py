"""The rerun decision: does a planned job need the model, or does its existing output stand?

Every output carries the settings that made it (engine/record.py), so a rerun redoes what was
made differently and skips only what it would make again.
"""

from __future__ import annotations

from linearsr_cli.engine import record as settings_record
from linearsr_cli.engine.plan import Job, OutputConfig, RunRecord
from linearsr_cli.engine.report import REDONE, REPLACED, FileRecord
from linearsr_cli.imageio import holds_record, read_record


def planned_record(job: Job) -> FileRecord | None:
    """The record of a job that planning already settled: a file of an input folder we do not
    read ("ignored") or one that cannot be attempted ("failed" with the problem); None otherwise."""
    if job.ignored:
        note = f"not an image file we read ({job.input.suffix or 'no extension'})"
        return FileRecord(input=str(job.input), output=str(job.output), status="ignored", note=note)
    if job.problem:
        return FileRecord(input=str(job.input), output=str(job.output), status="failed", error=job.problem)
    return None


def triage(job: Job, output: OutputConfig, record: RunRecord) -> tuple[FileRecord | None, str | None]:
    """(the record of a job that needs no model, or None when it has to run; what a run replaces).

    Ignored and failed (a planning problem) jobs end here (planned_record). An existing output is skipped when its
    settings record equals the run's `record.settings` (engine/record.differences: a requested
    prior or tag setting that differs is no difference where `record.use`, what this run uses for
    every image, equals what the output used); made with other settings it is redone (the second
    value says why) or, with --keep-existing, kept; without a record it is a conflict (kept with --keep-existing).
    --overwrite makes every existing output again: "redone" when made with other settings, else
    "replaced"."""
    def done(status: str, note: str | None = None, error: str | None = None) -> FileRecord:
        return FileRecord(input=str(job.input), output=str(job.output), status=status, note=note, error=error)

    settled = planned_record(job)
    if settled is not None:
        return settled, None
    if not job.output.exists():
        return None, None
    stored = settings_record.loads(read_record(job.output))
    if stored is None:
        if not holds_record(job.format):
            if output.overwrite:
                return None, f"{REPLACED}: {job.format.upper()} holds no settings record"
            return done("skipped", note=f"output exists ({job.format.upper()} holds no settings record)"), None
        if output.overwrite:
            return None, f"{REPLACED}: it had no LinearSR settings record"
        if output.keep_existing:
            return done("kept", note="output exists without a LinearSR settings record; kept (--keep-existing)"), None
        return done("conflict", note="output exists and has no LinearSR settings record (made by another tool?); "
                    "--overwrite replaces it, --keep-existing keeps it"), None
    diff = settings_record.differences(stored["settings"], record.settings, stored_use=settings_record.used(stored.get("image")),
                                       current_use=record.use)
    if not diff:
        if output.overwrite:
            return None, f"{REPLACED}: made with the same settings"
        return done("skipped", note="output exists, made with the same settings"), None
    why = "made with other settings: " + "; ".join(diff)
    if output.keep_existing:
        return done("kept", note=why + " (--keep-existing)"), None
    return None, REDONE + "output was " + why

