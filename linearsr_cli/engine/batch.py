"""Batches: walk the inputs, name the outputs, skip/resume, write atomically, one record per file.

A batch never stops for one bad file: every input ends as a `FileRecord` with status "ok",
"skipped" (the output already exists) or "failed" (with the reason). Outputs are written to a
hidden temp file in the destination folder and renamed into place, so an interrupted run never
leaves a half-written image under the final name, and a rerun skips what is already done.
Nothing here prints; progress goes through the `Reporter` protocol (see console.py).
"""

from __future__ import annotations

import math
import os
import socket
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from linearsr_cli.checkpoints import WeightsInfo, read_info
from linearsr_cli.config import SamplerConfig, TileConfig, check_input_name
from linearsr_cli.engine.device import plan_device
from linearsr_cli.engine.upscaler import (
    DEFAULT_SCALE,
    WEIGHTS_ENV,
    Upscaler,
    installed_scales,
    resolve_weights,
    upscale_chain,
)
from linearsr_cli.errors import (
    ConfigError,
    DeviceError,
    ImageReadError,
    ImageWriteError,
    TagError,
    WeightsError,
)
from linearsr_cli.fileio import write_atomic
from linearsr_cli.imageio import (
    DEFAULT_MAX_PIXELS,
    EXTENSIONS,
    FORMATS,
    PNG_LEVEL,
    READABLE_SUFFIXES,
    encode_image,
    read_image,
    with_pixels,
)
from linearsr_cli.resize import SizeRequest, needed_factor, plan_passes, resample

TEMP_TAG = ".linearsr-tmp"
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

    def __post_init__(self) -> None:
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


@dataclass
class FileRecord:
    """What happened to one input: the per-file line of --json."""

    input: str
    output: str
    status: str  # "ok" | "skipped" | "failed"
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BatchSummary:
    records: list[FileRecord] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def failed(self) -> int:
        return self.count("failed")


class Reporter(Protocol):
    """Progress sink (console.py implements it): the batch calls these, never print."""

    def start(self, total: int) -> None: ...

    def image_start(self, job: Job, index: int) -> None: ...

    def image_progress(self, done: int, total: int) -> None: ...

    def image_done(self, record: FileRecord) -> None: ...

    def finish(self, summary: BatchSummary) -> None: ...


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


def walk_folder(root: Path, exclude: Path | None = None) -> list[Path]:
    """Image files under `root`, recursively, sorted; hidden files/folders and `exclude` skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and (exclude is None or (here / d).resolve() != exclude)
        )
        found.extend(here / f for f in sorted(filenames) if _is_image_name(here / f))
    return found


def _stdin_relative(path: Path) -> Path:
    """Where a path read from stdin lands under OUT: mirrored when relative and inside the
    current folder, else just its name."""
    if not path.is_absolute() and ".." not in path.parts:
        return path
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return Path(path.name)


def plan_jobs(
    source: str, out: Path, cfg: OutputConfig, stdin_lines: Iterable[str] | None = None
) -> list[Job]:
    """The jobs for IN = a file, a folder (tree mirrored under OUT) or '-' (paths on stdin).

    Raises ConfigError for a missing IN or an OUT that contradicts --format; per-file problems
    (missing listed file, output equal to the input, two inputs on one output) go into
    Job.problem so the batch reports them and carries on.
    """
    pairs: list[tuple[Path, Path]] = []  # (input, output folder relative placement)
    jobs: list[Job] = []
    if source == "-":
        for line in stdin_lines or ():
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            path = Path(name)
            pairs.append((path, out / _stdin_relative(path).parent))
    else:
        src = Path(source)
        if src.is_dir():
            for path in walk_folder(src, exclude=out.resolve()):
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


def triage(job: Job, output: OutputConfig) -> FileRecord | None:
    """The record of a job that needs no model: failed (a planning problem) or skipped (the
    output exists and --overwrite is off). None: it has to run."""
    if job.problem:
        return FileRecord(input=str(job.input), output=str(job.output), status="failed", error=job.problem)
    if job.output.exists() and not output.overwrite:
        return FileRecord(input=str(job.input), output=str(job.output), status="skipped")
    return None


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


def upscale_alpha(alpha: torch.Tensor, scale: int) -> torch.Tensor:
    """Alpha (1, h, w) in [0, 1] upscaled by bicubic interpolation and clamped."""
    return F.interpolate(alpha[None], scale_factor=scale, mode="bicubic", align_corners=False)[0].clamp_(0, 1)


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
    ) -> None:
        """`models` maps scale -> a loaded model (or one model); `tags` is a
        linearsr_cli.tag.guidance.TagConfig, or None for no tags at all;
        `input_kind` auto|clean|real picks the prior of the first pass (Upscaler.choose_input;
        a second pass sees a clean image and gets the default prior); `size` the output size
        (resize.py); `tta` the 8-transform self-ensemble."""
        self.models = dict(sorted(models.items())) if isinstance(models, dict) else {models.scale: models}
        self.sampler = sampler
        self.output = output
        self.input_kind = input_kind
        self.size = size
        self.tta = tta
        self.tags = tags
        self._tagger: Any = None

    def _guidance(self) -> Any:
        """The tag guidance (tagger + encoder), made on first use."""
        if self._tagger is None:
            from linearsr_cli.tag.guidance import TagGuidance

            self._tagger = TagGuidance(self.tags, next(iter(self.models.values())).plan.device)
        return self._tagger

    def passes(self, w: int, h: int) -> tuple[tuple[int, ...], tuple[int, int]]:
        """The native passes and the exact output (width, height) for a w x h input."""
        if not self.size.exact:
            native = next(iter(self.models)) if len(self.models) == 1 else DEFAULT_SCALE
            return (native,), (native * w, native * h)
        target = self.size.target(w, h, DEFAULT_SCALE)
        return plan_passes(needed_factor(w, h, target), tuple(self.models)), target

    def run(self, jobs: Sequence[Job], reporter: Reporter) -> BatchSummary:
        summary = BatchSummary()
        reporter.start(len(jobs))
        for index, job in enumerate(jobs):
            reporter.image_start(job, index)
            record = self.process(job, reporter)
            summary.records.append(record)
            reporter.image_done(record)
        reporter.finish(summary)
        return summary

    def upscale(self, img: Any, path: Path, record: FileRecord, progress: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The image's pixels through the native passes, then resampled to the exact size;
        fills the record's tags, prior and passes."""
        w, h = img.width, img.height
        passes, (out_w, out_h) = self.passes(w, h)
        record.passes, record.tta = list(passes), self.tta
        tags_on = self.tags is not None and self.tags.enabled
        encoded: list[tuple[Any, Any]] = []

        def tags() -> tuple[Any, Any]:  # resolved and encoded once, for the passes that use them
            if not tags_on:
                return None, None
            if not encoded:
                resolved = self._guidance().resolve(path, img.rgb)
                record.tags, record.tag_source = list(resolved.tags), resolved.source
                encoded.append(self._guidance().encode(resolved.tags))
            return encoded[0]

        chain = [self.models[scale] for scale in passes]
        rgb, route = upscale_chain(chain, img.rgb, self.sampler, tags=tags, input_kind=self.input_kind,
                                   jpeg_quality=img.jpeg_quality, tta=self.tta, progress=progress)
        record.input_kind, record.input_why, record.prior = route.input, route.why or None, route.prior
        if record.tag_source is None:
            record.tag_source = "unused" if tags_on else "off"
        total = math.prod(passes)
        alpha = None if img.alpha is None else upscale_alpha(img.alpha, total)
        return resample(rgb, alpha, (out_h, out_w))

    def process(self, job: Job, reporter: Reporter | None = None) -> FileRecord:
        """Upscale one file; every expected failure becomes a "failed" record with its reason."""
        started = time.perf_counter()
        done = triage(job, self.output)
        if done is not None:
            return done
        record = FileRecord(input=str(job.input), output=str(job.output), status="failed")
        try:
            img = read_image(job.input, max_pixels=self.output.max_pixels)
            progress = reporter.image_progress if reporter is not None else None
            rgb, alpha = self.upscale(img, job.input, record, progress)
            data = encode_image(with_pixels(img, rgb, alpha), job.format, quality=self.output.quality,
                                png_level=self.output.png_level)
            atomic_write(job.output, data)
        except (ImageReadError, ImageWriteError, TagError, DeviceError, ConfigError) as exc:
            record.error = str(exc)
            record.seconds = round(time.perf_counter() - started, 3)
            return record
        record.status = "ok"
        record.size = [int(rgb.shape[-1]), int(rgb.shape[-2])]
        record.seconds = round(time.perf_counter() - started, 3)
        return record


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

    def __post_init__(self) -> None:
        check_input_name(self.input_kind)


def model_files(req: UpscaleRequest) -> dict[int, WeightsInfo]:
    """The weights files a request runs, by scale, read and checked (WeightsError / ConfigError
    before any file is touched): --weights or $LINEARSR_WEIGHTS (its scale must be --scale's
    when given); else the shipped file of --scale; else, for --outscale/--width/--height, every
    shipped scale; else the shipped x4."""
    explicit = req.weights is not None or bool(os.environ.get(WEIGHTS_ENV))
    if explicit:
        paths = [resolve_weights(req.weights)]
    elif req.scale is not None:
        paths = [resolve_weights(None, req.scale)]
    elif req.size.exact and installed_scales():
        paths = [resolve_weights(None, s) for s in installed_scales()]
    else:
        paths = [resolve_weights(None, DEFAULT_SCALE)]
    infos = {}
    for path in paths:
        info = read_info(path)
        scale = info.config.scale
        if req.scale is not None and scale != req.scale:
            raise WeightsError(
                f"{path}: weights are for x{scale}, but --scale {req.scale} was asked for; give x{req.scale} "
                f"weights, or --outscale {req.scale} to reach x{req.scale} with this x{scale} model"
            )
        try:
            info.config.prior_index(req.input_kind)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        infos[scale] = info
    return infos


def load_batch(req: UpscaleRequest) -> BatchRun:
    """The models and settings of a request, loaded once (raises WeightsError / DeviceError /
    ConfigError before any file is touched)."""
    plan = plan_device(req.device, req.dtype)
    models = {scale: Upscaler.from_weights(info.path, plan, req.tiles, expect_scale=scale)
              for scale, info in model_files(req).items()}
    return BatchRun(models, req.sampler, req.output, req.tags, req.input_kind, req.size, req.tta)


def request_jobs(req: UpscaleRequest, stdin_lines: Iterable[str] | None = None) -> list[Job]:
    """The request's jobs, planned once (walk, name outputs, refuse overwriting inputs) and
    narrowed to its --shard."""
    return shard_jobs(plan_jobs(req.source, req.out, req.output, stdin_lines), req.out, req.shard)


def upscale_batch(
    req: UpscaleRequest, reporter: Reporter, stdin_lines: Iterable[str] | None = None
) -> BatchSummary:
    """Plan the jobs, load the model once, run the batch.

    Raises ConfigError / WeightsError / DeviceError for setup problems (nothing is written);
    per-file problems end up in the summary's records.
    """
    jobs = request_jobs(req, stdin_lines)
    return load_batch(req).run(jobs, reporter)
