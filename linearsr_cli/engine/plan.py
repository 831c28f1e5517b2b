"""Planning a batch: what `linearsr upscale` was asked (`UpscaleRequest`), the jobs it makes
(walk IN, name the outputs, refuse to overwrite an input, --shard), the check that OUT can take
files, and the settings record a request writes into every output (engine/record.py).

Nothing here reads an image or loads a model; the runner (engine/batch.py) and the Ray path
(engine/ray.py) both start from these jobs.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linearsr_cli.checkpoints import WeightsInfo
from linearsr_cli.config import ModelConfig, SamplerConfig, TileConfig
from linearsr_cli.engine import record as settings_record
from linearsr_cli.engine.device import check_dtype_name, parse_device
from linearsr_cli.engine.pipeline import DEFAULT_MAX_CANVAS, model_files
from linearsr_cli.engine.resize import SizeRequest
from linearsr_cli.engine.route import check_input, choose_input
from linearsr_cli.engine.upscaler import runs_network
from linearsr_cli.errors import ConfigError
from linearsr_cli.fileio import TEMP_TAG, host_name
from linearsr_cli.imageio import (
    DEFAULT_MAX_PIXELS,
    EXTENSIONS,
    FORMATS,
    PNG_LEVEL,
    READABLE_SUFFIXES,
)
from linearsr_cli.tag.config import TagConfig

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
    probe = folder / f".linearsr-probe.{host_name()}-{os.getpid()}{TEMP_TAG}"
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
    tags: TagConfig | None
    device: str = "auto"
    dtype: str = "auto"
    input: str = "auto"  # --input: auto, or the prior to serve every image (engine/route.choose_input)
    shard: tuple[int, int] = (0, 1)  # --shard K/N
    size: SizeRequest = SizeRequest()  # --outscale / --width / --height
    tta: bool = False
    threads: int | None = None  # --threads: CPU threads (None: PyTorch's choice); not in the record

    def __post_init__(self) -> None:
        """The names and numbers that need no machine to check: before anything is read or made."""
        check_input(self.input)
        parse_device(self.device)
        check_dtype_name(self.dtype)
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")


@dataclass(frozen=True)
class RunRecord:
    """What every output of a run records and every existing output is compared with
    (engine/record.py): the settings asked for, and what the run uses for every image where that
    is known before an image is read (planned_use)."""

    settings: dict[str, Any]
    use: dict[str, Any]


def run_record(
    paths: dict[int, Path], configs: Sequence[ModelConfig], sampler: SamplerConfig, size: SizeRequest,
    input: str, tags: TagConfig | None, tta: bool,
) -> RunRecord:
    """The RunRecord of a run of the weights files `paths` (by scale) whose configs are `configs`."""
    return RunRecord(
        settings_record.settings(models=paths, size=size, sampler=sampler, input=input, tags=tags, tta=tta),
        planned_use(configs, sampler, input, tags),
    )


@dataclass(frozen=True)
class RunPlan:
    """A request, planned: its jobs, its weights files (read and checked once, by scale) and its
    record. The local runner and the Ray driver both start from one."""

    jobs: list[Job]
    weights: dict[int, WeightsInfo]
    record: RunRecord


def prepare(req: UpscaleRequest, stdin_lines: Iterable[str] | None = None) -> RunPlan:
    """Everything decided before OUT is touched or a model loaded, the same for the local and the
    Ray path: the jobs (request_jobs), the weights files (pipeline.model_files: the shipped file
    of --scale, or every shipped scale for an exact output size; a named --input must be a prior
    of each) and the settings record. The request's names and numbers (device, dtype, --input)
    were checked when it was made. Raises ConfigError (NoInputError) / WeightsError."""
    jobs = request_jobs(req, stdin_lines)
    infos = model_files(req.weights, req.scale, every_scale=req.size.exact, input=req.input)
    record = run_record({s: i.path for s, i in infos.items()}, [i.config for i in infos.values()], req.sampler,
                        req.size, req.input, req.tags, req.tta)
    return RunPlan(jobs, infos, record)


def planned_use(
    configs: Sequence[ModelConfig], sampler: SamplerConfig, input: str, tags: TagConfig | None
) -> dict[str, Any]:
    """What a run with models of `configs` uses for every image, where that is known before an
    image is read (engine/record.used spells it alike): "prior" for a named --input (the prior it
    serves, route.choose_input; None for weights without priors), "tags" = "unused" when no pass can
    take tags, else [] for --tags off and the tags of --tags "a, b". --input auto and --tags auto
    are decided per image, so they are left out (compared as asked)."""
    use: dict[str, Any] = {}
    if input != "auto":
        priors = {choose_input(cfg, None, input, sampler=sampler).prior for cfg in configs}
        if len(priors) == 1:
            use["prior"] = priors.pop()
    if not any(runs_network(cfg, sampler) for cfg in configs):
        use["tags"] = "unused"
    elif tags is None or not tags.enabled:
        use["tags"] = []
    elif tags.tags:
        use["tags"] = list(tags.tags)
    return use


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

