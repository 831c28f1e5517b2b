"""Batches: walk the inputs, name the outputs, skip/resume, write atomically, one record per file.

A batch never stops for one bad file: every input ends as a `FileRecord` with a status:

    ok        written (`note` says when it replaced an output made with other settings)
    skipped   the output exists and its settings record matches this run
    kept      the output exists, made with other settings or by another tool; --keep-existing
    conflict  the output exists without a settings record (another tool's): never overwritten
              without --overwrite; the run exits 2
    failed    with the reason
    ignored   a file in an input folder whose extension is not an image we read

Every output carries the settings that made it (engine/record.py), so a rerun redoes what was
made differently and skips only what it would make again. Outputs are written to a hidden temp
file in the destination folder and renamed into place, so an interrupted run never leaves a
half-written image under the final name. Nothing here prints; progress goes through the
`Reporter` protocol (see console.py).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from linearsr_cli.checkpoints import WeightsInfo
from linearsr_cli.config import ModelConfig, SamplerConfig, TileConfig, check_input_name, prior_for
from linearsr_cli.engine import record as settings_record
from linearsr_cli.engine.device import (
    check_dtype_name,
    parse_device,
    release_cpu_memory,
    use_cpu_threads,
)
from linearsr_cli.engine.pipeline import (
    DEFAULT_MAX_CANVAS,
    image_tags,
    load_models,
    upscale_to_size,
)
from linearsr_cli.engine.pipeline import model_files as _model_files
from linearsr_cli.engine.upscaler import Upscaler, runs_network
from linearsr_cli.errors import (
    ConfigError,
    DeviceError,
    ImageReadError,
    ImageWriteError,
    TagError,
)
from linearsr_cli.fileio import write_atomic
from linearsr_cli.imageio import (
    DEFAULT_MAX_PIXELS,
    EXTENSIONS,
    FORMATS,
    PNG_LEVEL,
    READABLE_SUFFIXES,
    ImageData,
    encode_image,
    holds_record,
    read_image,
    read_record,
    with_pixels,
)
from linearsr_cli.resize import SizeRequest

TEMP_TAG = ".linearsr-tmp"
PREFETCH = 2  # files decoded ahead of the model, and finished files waiting to be written
_SUFFIX_FORMAT = {
    ".png": "png",
    ".jpg": "jpg",
    ".jpeg": "jpg",
    ".jpe": "jpg",
    ".jfif": "jpg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".webp": "webp",
    ".bmp": "bmp",
    ".heic": "heic",
    ".heif": "heic",
    ".hif": "heic",
    ".avif": "avif",
}


@dataclass(frozen=True)
class OutputConfig:
    """How outputs are named and written."""

    suffix: str = ""
    format: str = "keep"
    quality: int = 95
    png_level: int = PNG_LEVEL
    overwrite: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    keep_existing: bool = False  # keep outputs made with other settings (or by another tool)
    max_canvas: int = DEFAULT_MAX_CANVAS  # largest canvas of a pass chain, in pixels

    def __post_init__(self) -> None:
        if self.overwrite and self.keep_existing:
            raise ConfigError("--overwrite and --keep-existing contradict each other; give one")
        if self.max_canvas < 1:
            raise ConfigError(f"--max-canvas must be >= 1, got {self.max_canvas}")
        if self.format != "keep" and self.format not in FORMATS:
            raise ConfigError(f"--format must be keep or one of {', '.join(FORMATS)}, got {self.format!r}")
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"--quality must be in 1..100, got {self.quality}")
        if not 0 <= self.png_level <= 9:
            raise ConfigError(f"--png-level must be in 0..9, got {self.png_level}")
        if self.max_pixels < 1:
            raise ConfigError(f"--max-pixels must be >= 1, got {self.max_pixels}")
        if "/" in self.suffix or os.sep in self.suffix:
            raise ConfigError(f"--suffix must not contain a path separator, got {self.suffix!r}")


@dataclass(frozen=True)
class Job:
    """One input file and the output it becomes; `problem` is set when it cannot be attempted."""

    input: Path
    output: Path
    format: str
    problem: str | None = None
    ignored: bool = False  # a file of an input folder with an extension we do not read


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
    """Progress sink (console.py implements it): the batch calls these, never print. `image_done`
    comes from the writer thread of a pipelined run, as each file is written; the run serialises
    the calls (`_Serialized`). `finish` also ends an interrupted run (`summary.interrupted`)."""

    def start(self, total: int) -> None: ...

    def image_start(self, job: Job, index: int) -> None: ...

    def image_progress(self, done: int, total: int) -> None: ...

    def image_done(self, record: FileRecord) -> None: ...

    def finish(self, summary: BatchSummary) -> None: ...


class _Serialized:
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


def output_format_for(path: Path, requested: str) -> str:
    """The format an output gets: --format, or the input's kind by its extension (else PNG)."""
    if requested != "keep":
        return requested
    return _SUFFIX_FORMAT.get(path.suffix.lower(), "png")


def output_name(path: Path, fmt: str, requested: str, suffix: str) -> str:
    """stem + suffix + extension; 'keep' keeps the input's own spelling of its extension."""
    if requested == "keep" and path.suffix.lower() in _SUFFIX_FORMAT:
        ext = path.suffix
    else:
        ext = EXTENSIONS[fmt]
    return f"{path.stem}{suffix}{ext}"


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in READABLE_SUFFIXES and not path.name.startswith(".")


def walk_folder(root: Path, exclude: Path | None = None, ignored: list[Path] | None = None) -> list[Path]:
    """Image files under `root`, recursively, sorted; hidden files/folders and `exclude` skipped.
    Other (not hidden) files are appended to `ignored` when given."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and (exclude is None or (here / d).resolve() != exclude)
        )
        for name in sorted(filenames):
            if _is_image_name(here / name):
                found.append(here / name)
            elif ignored is not None and not name.startswith("."):
                ignored.append(here / name)
    return found


def stdin_paths(stream: Any, *, null: bool = False) -> list[str]:
    """The paths listed on `stream`: one per line (blank lines and # comments skipped), or with
    `null` separated by NUL bytes as `find -print0` writes them (every name kept as is)."""
    if not null:
        return [line.strip() for line in stream if line.strip() and not line.strip().startswith("#")]
    raw = stream.buffer.read() if hasattr(stream, "buffer") else stream.read()
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    return [os.fsdecode(part) for part in data.split(b"\0") if part]


def common_parent(paths: Sequence[Path]) -> Path:
    """The deepest folder holding every path (absolute, lexically normalised: symlinks are not
    followed, so the rule does not depend on the current folder's real location)."""
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
    return Path(os.path.commonpath(folders)) if folders else Path.cwd()


def plan_jobs(
    source: str, out: Path, cfg: OutputConfig, stdin_lines: Iterable[str] | None = None
) -> list[Job]:
    """The jobs for IN = a file, a folder (tree mirrored under OUT) or '-' (paths on stdin,
    mirrored under OUT relative to the deepest folder that holds all of them).

    Raises ConfigError for a missing IN or an OUT that contradicts --format; per-file problems
    (missing listed file, output equal to the input, two inputs on one output) go into
    Job.problem so the batch reports them and carries on. Files of a folder that we do not read
    come back as `ignored` jobs (listed, never run).
    """
    pairs: list[tuple[Path, Path]] = []  # (input, output folder relative placement)
    jobs: list[Job] = []
    ignored: list[Path] = []
    if source == "-":
        listed = [Path(name) for name in (stdin_lines or ()) if name]  # parsed by stdin_paths
        root = common_parent(listed)
        for path in listed:
            rel = Path(os.path.abspath(path)).relative_to(root)
            pairs.append((path, out / rel.parent))
    else:
        src = Path(source)
        if src.is_dir():
            for path in walk_folder(src, exclude=out.resolve(), ignored=ignored):
                pairs.append((path, out / path.parent.relative_to(src)))
        elif src.is_file():
            explicit = out.suffix.lower() in _SUFFIX_FORMAT and not out.is_dir()
            if explicit:
                fmt = output_format_for(out, "keep")
                if cfg.format != "keep" and cfg.format != fmt:
                    raise ConfigError(f"OUT {out} says {fmt}, but --format {cfg.format} was given")
                return [_finish_job(Job(src, out, fmt), set())]
            pairs.append((src, out))
        else:
            raise ConfigError(f"{source}: no such file or folder")
    seen: set[Path] = set()
    planned = []
    for path, folder in pairs:
        fmt = output_format_for(path, cfg.format)
        planned.append(Job(path, folder / output_name(path, fmt, cfg.format, cfg.suffix), fmt))
    if source != "-":
        # Upscaling a folder in place with a suffix: last run's outputs are not new inputs.
        outputs = {j.output.resolve() for j in planned if j.output.resolve() != j.input.resolve()}
        planned = [job for job in planned if job.input.resolve() not in outputs]
    for job in planned:
        jobs.append(_finish_job(job, seen))
    jobs.extend(Job(path, path, "", ignored=True) for path in ignored)
    return jobs


def _finish_job(job: Job, seen: set[Path]) -> Job:
    if not job.input.is_file():
        return Job(job.input, job.output, job.format, "no such file")
    target = job.output.resolve()
    if target == job.input.resolve():
        return Job(job.input, job.output, job.format, "output would overwrite the input; use --suffix or another OUT")
    if target in seen:
        return Job(job.input, job.output, job.format, f"output {job.output} collides with another input's output")
    seen.add(target)
    return job


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace("/", "_") or "host"


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 0 <= K < N; ConfigError otherwise."""
    k, sep, n = text.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit() or not 0 <= int(k) < int(n):
        raise ConfigError(f"--shard must be K/N with 0 <= K < N (e.g. 0/4), got {text!r}")
    return int(k), int(n)


def shard_key(job: Job, out: Path) -> str:
    """A job's stable identity: its output path relative to OUT (posix)."""
    try:
        return job.output.relative_to(out).as_posix()
    except ValueError:
        return job.output.as_posix()


def shard_jobs(jobs: Sequence[Job], out: Path, shard: tuple[int, int]) -> list[Job]:
    """Shard K of N: the jobs whose CRC-32 of shard_key is K mod N. The N shards partition any
    job list; a file keeps its shard when others are added or removed."""
    k, n = shard
    if n == 1:
        return list(jobs)
    return [job for job in jobs if zlib.crc32(shard_key(job, out).encode("utf-8")) % n == k]


def triage(
    job: Job, output: OutputConfig, settings: dict[str, Any] | None = None, use: dict[str, Any] | None = None
) -> tuple[FileRecord | None, str | None]:
    """(the record of a job that needs no model, or None when it has to run; what a run replaces).

    Ignored and failed (a planning problem) jobs end here. An existing output is skipped when its
    settings record equals `settings` (engine/record.differences: a requested prior or tag
    setting that differs is no difference where `use`, what this run uses for every image, equals
    what the output used); made with other settings it is redone (the second value says why) or,
    with --keep-existing, kept; without a record it is a conflict (kept with --keep-existing).
    --overwrite makes every existing output again: "redone" when made with other settings, else
    "replaced". `settings` None: any existing output is skipped (the rule before records)."""
    def done(status: str, note: str | None = None, error: str | None = None) -> FileRecord:
        return FileRecord(input=str(job.input), output=str(job.output), status=status, note=note, error=error)

    if job.ignored:
        return done("ignored", note=f"not an image file we read ({job.input.suffix or 'no extension'})"), None
    if job.problem:
        return done("failed", error=job.problem), None
    if not job.output.exists():
        return None, None
    if settings is None:
        return (None, REPLACED) if output.overwrite else (done("skipped", note="output exists"), None)
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
    diff = settings_record.differences(stored["settings"], settings, stored_use=settings_record.used(stored.get("image")),
                                       current_use=use)
    if not diff:
        if output.overwrite:
            return None, f"{REPLACED}: made with the same settings"
        return done("skipped", note="output exists, made with the same settings"), None
    why = "made with other settings: " + "; ".join(diff)
    if output.keep_existing:
        return done("kept", note=why + " (--keep-existing)"), None
    return None, REDONE + "output was " + why


def _temp_path(path: Path) -> Path:
    """.NAME.HOST-PID.linearsr-tmp: hidden, and telling which process (on a shared filesystem,
    which machine too) is writing it."""
    return path.with_name(f".{path.name}.{_host()}-{os.getpid()}{TEMP_TAG}")


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files a killed run on this machine left for `path` (their process no longer
    exists). Other machines' temp files are left alone: hidden, never mistaken for outputs."""
    for tmp in path.parent.glob(f".{path.name}.*{TEMP_TAG}"):
        owner = tmp.name[len(path.name) + 2 : -len(TEMP_TAG)]
        host, _, pid = owner.rpartition("-")
        if host in ("", _host()) and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a hidden temp file in the same folder, fsync, then rename."""
    try:
        if path.parent.is_dir():
            _remove_stale_temps(path)
        write_atomic(path, data, tmp=_temp_path(path))
    except OSError as exc:
        raise ImageWriteError(f"cannot write {path}: {exc.strerror or exc}") from None


def check_out(out: Path, jobs: Sequence[Job]) -> None:
    """Fail fast (ConfigError) when OUT cannot take files: a file where a folder is needed, a
    folder that cannot be created, or one where a file cannot be written (probed with a hidden
    temp file). OUT is the folder of the outputs (its parent for an explicit output file name)."""
    runnable = [j for j in jobs if not j.ignored and not j.problem]
    folder = runnable[0].output.parent if len(runnable) == 1 and runnable[0].output == out else out
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"OUT {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create OUT {folder}: {exc.strerror or exc}") from None
    probe = folder / f".linearsr-probe.{_host()}-{os.getpid()}{TEMP_TAG}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"probe")
    except OSError as exc:
        raise ConfigError(f"cannot write to OUT {folder}: {exc.strerror or exc}") from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


class BatchRun:
    """One batch run: the native models, the sampler and tag settings, the output size and rules."""

    def __init__(
        self,
        models: dict[int, Upscaler] | Upscaler,
        sampler: SamplerConfig,
        output: OutputConfig,
        tags: Any | None = None,
        input_kind: str = "auto",
        size: SizeRequest = SizeRequest(),
        tta: bool = False,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """`models` maps scale -> a loaded model (or one model); `tags` is a
        linearsr_cli.tag.guidance.TagConfig, or None for no tags at all;
        `input_kind` picks the prior of the first pass (Upscaler.choose_input; a second pass
        sees a clean image and gets the default prior); `size` the output size (resize.py);
        `tta` the 8-transform self-ensemble; `settings` the record written into every output
        and compared with existing ones (engine/record.py; default: made from the above)."""
        self.models = dict(sorted(models.items())) if isinstance(models, dict) else {models.scale: models}
        self.sampler = sampler
        self.output = output
        self.input_kind = input_kind
        self.size = size
        self.tta = tta
        self.tags = tags
        self._tagger: Any = None
        self.settings = settings if settings is not None else settings_record.settings(
            models={s: up.info.path for s, up in self.models.items() if up.info is not None},
            size=size, sampler=sampler, input_kind=input_kind, tags=tags, tta=tta,
        )
        self.use = planned_use([up.cfg for up in self.models.values()], sampler, input_kind, tags)

    def _guidance(self) -> Any:
        """The tag guidance (tagger + encoder), made on first use."""
        if self._tagger is None:
            from linearsr_cli.tag.guidance import TagGuidance

            self._tagger = TagGuidance(self.tags, next(iter(self.models.values())).plan.device)
        return self._tagger

    def run(self, jobs: Sequence[Job], reporter: Reporter, *, prefetch: int = PREFETCH) -> BatchSummary:
        """Every job, in order, as a bounded pipeline: a reader thread triages and decodes the next
        `prefetch` files and a writer thread encodes and writes finished ones while the model runs
        the current one, so a folder costs about N x model time. At most `prefetch` decoded inputs
        and `prefetch` finished outputs wait at any time.

        Each record goes to the reporter as soon as its file is done: the writer thread reports it
        right after the rename (a file that needs no write, as soon as the files before it are
        reported). Records keep job order, so one waits for earlier files' writes, never for a
        later file's compute. The reporter's calls never overlap (`_Serialized`).

        On Ctrl-C / SIGTERM (KeyboardInterrupt) the reads ahead are dropped, the images already
        computed are written and reported (atomic: a whole file or none), the reporter finishes
        with the summary marked interrupted, and the exception propagates; the file in the model
        gets no record. On any other exception (a closed pipe) the writer's queue is dropped
        too. `prefetch` 0: one file at a time, all in this thread."""
        reporter = _Serialized(reporter)
        with reporting(reporter, len(jobs)) as summary:
            if prefetch < 1:
                for index, job in enumerate(jobs):
                    reporter.image_start(job, index)
                    record = self.process(job, reporter)
                    summary.records.append(record)
                    reporter.image_done(record)
            else:
                self._pipeline(jobs, reporter, summary, prefetch)
        return summary

    def _pipeline(self, jobs: Sequence[Job], reporter: Reporter, summary: BatchSummary, prefetch: int) -> None:
        """`run` with prefetch >= 1: reader thread, model here, writer thread (see `run`)."""
        reader = ThreadPoolExecutor(1, thread_name_prefix="linearsr-read")
        writer = ThreadPoolExecutor(1, thread_name_prefix="linearsr-write")
        reads: dict[int, Future[_Prepared]] = {}
        queued: deque[Future[None]] = deque()  # the writer's tasks, in job order
        stop = threading.Event()  # a writer task failed (a closed pipe): the rest of its queue does nothing

        def write_and_report(prepared: _Prepared, out: ImageData | None) -> None:
            """The writer's task: write the image (when there is one), then report the record."""
            if stop.is_set():
                return
            try:
                if out is not None:
                    self.write(prepared, out)
                summary.records.append(prepared.record)
                reporter.image_done(prepared.record)
            except BaseException:
                stop.set()
                raise

        def settle(limit: int) -> None:
            """Raise what a finished writer task raised; wait while more than `limit` are queued."""
            while queued and (queued[0].done() or len(queued) > limit):
                queued.popleft().result()

        interrupted = False
        try:
            for index, job in enumerate(jobs):
                for ahead in range(index, min(index + prefetch + 1, len(jobs))):
                    if ahead not in reads:
                        reads[ahead] = reader.submit(self.prepare, jobs[ahead])
                prepared = reads.pop(index).result()
                reporter.image_start(job, index)
                out = None if prepared.image is None else self.compute(prepared, reporter.image_progress)
                queued.append(writer.submit(write_and_report, prepared, out))
                settle(prefetch)
            settle(0)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            reader.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=not interrupted)

    def upscale(self, img: Any, path: Path | None, record: FileRecord, progress: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The image's pixels through the native passes, then resampled to the exact size;
        fills the record's tags, prior, passes and warnings."""
        tags_on = self.tags is not None and self.tags.enabled
        tags = image_tags(self._guidance, path, img.rgb) if tags_on else None
        done = upscale_to_size(self.models, img.rgb, img.alpha, self.sampler, size=self.size, tags=tags,
                               input_kind=self.input_kind, jpeg_quality=img.jpeg_quality, tta=self.tta,
                               progress=progress, max_canvas=self.output.max_canvas, compact=True)
        record.passes, record.tta = list(done.passes), self.tta
        record.input_kind, record.input_why, record.prior = done.route.input, done.route.why or None, done.route.prior
        record.warnings = done.warnings
        if tags is not None and tags.source is not None:
            record.tags, record.tag_source = tags.tags, tags.source
        else:
            record.tag_source = "unused" if tags_on else "off"
        return done.rgb, done.alpha

    def image_record(self, record: FileRecord) -> str:
        """The settings record text for an output (what was asked + what this image resolved to)."""
        image = {"input_kind": record.input_kind, "prior": record.prior, "why": record.input_why, "tags": record.tags,
                 "tag_source": record.tag_source, "passes": record.passes, "size": record.size}
        return settings_record.dumps(self.settings, image)

    def prepare(self, job: Job) -> _Prepared:
        """Triage and decode one job (the reader's part): a finished record (skipped, failed...),
        or the decoded image with the record to fill."""
        started = time.perf_counter()
        done, replaces = triage(job, self.output, self.settings, self.use)
        if done is not None:
            return _Prepared(job, done, None)
        record = FileRecord(input=str(job.input), output=str(job.output), status="failed", note=replaces)
        try:
            img = read_image(job.input, max_pixels=self.output.max_pixels)
        except ImageReadError as exc:
            record.error = str(exc)
            img = None
        record.seconds = time.perf_counter() - started
        return _Prepared(job, record, img)

    def compute(self, prepared: _Prepared, progress: Any = None) -> ImageData | None:
        """The model's part: the upscaled image, or None with the record failed."""
        started = time.perf_counter()
        record = prepared.record
        try:
            rgb, alpha = self.upscale(prepared.image, prepared.job.input, record, progress)
        except (TagError, DeviceError, ConfigError) as exc:
            record.error = str(exc)
            record.seconds = round(record.seconds + time.perf_counter() - started, 3)
            return None
        finally:
            prepared.image_done()
        record.size = [int(rgb.shape[-1]), int(rgb.shape[-2])]
        record.seconds += time.perf_counter() - started
        return with_pixels(prepared.original, rgb, alpha)

    def write(self, prepared: _Prepared, out: ImageData) -> None:
        """Encode and write atomically (the writer's part); fills the record's status."""
        started = time.perf_counter()
        record = prepared.record
        try:
            data = encode_image(out, prepared.job.format, quality=self.output.quality,
                                png_level=self.output.png_level, record=self.image_record(record))
            atomic_write(prepared.job.output, data)
        except ImageWriteError as exc:
            record.error, record.size = str(exc), None
        else:
            record.status = "ok"
        finally:
            data = None
            release_cpu_memory()  # the encoder's buffers, before the next image's tiles
        record.seconds = round(record.seconds + time.perf_counter() - started, 3)

    def process(self, job: Job, reporter: Reporter | None = None) -> FileRecord:
        """Upscale one file in this thread; every expected failure becomes a "failed" record."""
        prepared = self.prepare(job)
        if prepared.image is None:
            prepared.record.seconds = round(prepared.record.seconds, 3)
            return prepared.record
        out = self.compute(prepared, reporter.image_progress if reporter is not None else None)
        if out is not None:
            self.write(prepared, out)
        return prepared.record


@dataclass
class _Prepared:
    """A job through triage and decoding: its record, and the image when it has to run."""

    job: Job
    record: FileRecord
    image: ImageData | None
    original: ImageData | None = None  # the metadata the output is written with

    def __post_init__(self) -> None:
        self.original = self.image

    def image_done(self) -> None:
        """Drop the decoded pixels once the model has them (bounded memory); metadata stays."""
        if self.original is not None:
            self.original = replace(self.original, rgb=self.original.rgb[:, :0, :0], alpha=None)
        self.image = None


@dataclass(frozen=True)
class UpscaleRequest:
    """Everything `linearsr upscale` was asked, as configs (tags: a TagConfig or None)."""

    source: str
    out: Path
    weights: Path | None
    scale: int | None  # --scale: the native model; None = x4, or every shipped one for --outscale/--width
    sampler: SamplerConfig
    tiles: TileConfig
    output: OutputConfig
    tags: Any | None
    device: str = "auto"
    dtype: str = "auto"
    input_kind: str = "auto"
    shard: tuple[int, int] = (0, 1)  # --shard K/N
    size: SizeRequest = SizeRequest()  # --outscale / --width / --height
    tta: bool = False
    threads: int | None = None  # --threads: CPU threads (None: PyTorch's choice); not in the record

    def __post_init__(self) -> None:
        """The names and numbers that need no machine to check: before anything is read or made."""
        check_input_name(self.input_kind)
        parse_device(self.device)
        check_dtype_name(self.dtype)
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")


def model_files(req: UpscaleRequest) -> dict[int, WeightsInfo]:
    """The weights files a request runs, by scale (engine.pipeline.model_files)."""
    return _model_files(req.weights, req.scale, req.size, req.input_kind)


def request_settings(req: UpscaleRequest, infos: dict[int, WeightsInfo]) -> dict[str, Any]:
    """The settings record of a request (engine/record.py)."""
    return settings_record.settings(models={s: i.path for s, i in infos.items()}, size=req.size, sampler=req.sampler,
                                    input_kind=req.input_kind, tags=req.tags, tta=req.tta)


def planned_use(configs: Sequence[ModelConfig], sampler: SamplerConfig, input_kind: str, tags: Any | None) -> dict[str, Any]:
    """What a run with models of `configs` uses for every image, where that is known before an
    image is read (engine/record.used spells it alike): "prior" for a named --input (the prior it
    serves, config.prior_for; None for weights without priors), "tags" = "unused" when no pass can
    take tags, else [] for --tags off and the tags of --tags "a, b". --input auto and --tags auto
    are decided per image, so they are left out (compared as asked)."""
    use: dict[str, Any] = {}
    if input_kind != "auto":
        priors = {prior_for(input_kind, sampler, cfg.prior_inputs) if cfg.prior_inputs else None for cfg in configs}
        if len(priors) == 1:
            use["prior"] = priors.pop()
    if not any(runs_network(cfg, sampler) for cfg in configs):
        use["tags"] = "unused"
    elif tags is None or not tags.enabled:
        use["tags"] = []
    elif tags.tags:
        use["tags"] = list(tags.tags)
    return use


def request_use(req: UpscaleRequest, infos: dict[int, WeightsInfo]) -> dict[str, Any]:
    """planned_use of a request whose models are not loaded here (the Ray driver)."""
    return planned_use([info.config for info in infos.values()], req.sampler, req.input_kind, req.tags)


def load_batch(req: UpscaleRequest) -> BatchRun:
    """The models and settings of a request, loaded once (raises WeightsError / DeviceError /
    ConfigError before any file is touched)."""
    infos = model_files(req)
    models = load_models(infos, device=req.device, dtype=req.dtype, tiles=req.tiles)
    return BatchRun(models, req.sampler, req.output, req.tags, req.input_kind, req.size, req.tta,
                 settings=request_settings(req, infos))


def request_jobs(req: UpscaleRequest, stdin_lines: Iterable[str] | None = None) -> list[Job]:
    """The request's jobs, planned once (walk, name outputs, refuse overwriting inputs) and
    narrowed to its --shard. ConfigError when IN holds no input at all (an empty folder, one of
    files we do not read, an empty list): a run that can do nothing is not a success."""
    jobs = plan_jobs(req.source, req.out, req.output, stdin_lines)
    if not any(not job.ignored for job in jobs):
        raise NoInputError(no_input_reason(req.source, jobs), [j for j in jobs if j.ignored])
    return shard_jobs(jobs, req.out, req.shard)


class NoInputError(ConfigError):
    """IN holds nothing to upscale; `ignored` are the files passed over for their extension."""

    def __init__(self, message: str, ignored: list[Job]) -> None:
        super().__init__(message)
        self.ignored = ignored


def no_input_reason(source: str, jobs: Sequence[Job]) -> str:
    if source == "-":
        return "no input found: the list on stdin names no files"
    if not jobs:
        return f"no input found: {source} holds no image files"
    exts = sorted({j.input.suffix.lower() or "(none)" for j in jobs})
    return (f"no input found: {source} holds no image files we read, only {len(jobs)} other file(s) "
            f"({', '.join(exts[:8])}); readable: {', '.join(sorted(READABLE_SUFFIXES))}")


def upscale_batch(
    req: UpscaleRequest, reporter: Reporter, stdin_lines: Iterable[str] | None = None
) -> BatchSummary:
    """Plan the jobs, load the model once, check (and make) OUT, run the batch.

    Raises ConfigError (NoInputError for an IN without input) / WeightsError / DeviceError for
    setup problems (nothing is written, OUT is not made); per-file problems end up in the
    summary's records.
    """
    jobs = request_jobs(req, stdin_lines)
    use_cpu_threads(req.threads)
    batch = load_batch(req)  # weights, device, dtype: every setup error comes before OUT is made
    check_out(req.out, jobs)
    return batch.run(jobs, reporter)
