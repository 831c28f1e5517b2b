"""The batch runner: the models loaded once, then every job through a bounded pipeline (read
ahead, compute, write behind), each output written atomically with its settings record.

Outputs are written to a hidden temp file in the destination folder and renamed into place, so
an interrupted run never leaves a half-written image under the final name. Nothing here prints;
progress goes through the `Reporter` protocol (engine/report.py). Planning is engine/plan.py,
the rerun decision engine/rerun.py.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from linearsr_cli.config import SamplerConfig
from linearsr_cli.engine import record as settings_record
from linearsr_cli.engine.device import release_cpu_memory, use_cpu_threads
from linearsr_cli.engine.pipeline import TagResolver, load_models, upscale_to_size
from linearsr_cli.engine.plan import (
    Job,
    OutputConfig,
    RunPlan,
    RunRecord,
    UpscaleRequest,
    check_out,
    prepare,
    run_record,
)
from linearsr_cli.engine.report import (
    BatchSummary,
    FileRecord,
    Reporter,
    SerializedReporter,
    report_done,
    reporting,
)
from linearsr_cli.engine.rerun import triage
from linearsr_cli.engine.resize import SizeRequest
from linearsr_cli.engine.upscaler import Upscaler
from linearsr_cli.errors import ConfigError, DeviceError, ImageReadError, ImageWriteError, TagError
from linearsr_cli.fileio import remove_stale_temps, temp_path, write_atomic
from linearsr_cli.imageio import ImageData, encode_image, read_image, with_pixels
from linearsr_cli.tag.config import TagConfig

PREFETCH = 2  # files decoded ahead of the model, and finished files waiting to be written


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a hidden temp file in the same folder, fsync, then rename."""
    try:
        if path.parent.is_dir():
            remove_stale_temps(path)
        write_atomic(path, data, tmp=temp_path(path))
    except OSError as exc:
        raise ImageWriteError(f"cannot write {path}: {exc.strerror or exc}") from None


class BatchRun:
    """One batch run: the native models, the sampler and tag settings, the output size and rules."""

    def __init__(
        self,
        models: dict[int, Upscaler] | Upscaler,
        sampler: SamplerConfig,
        output: OutputConfig,
        tags: TagConfig | None = None,
        input: str = "auto",
        size: SizeRequest = SizeRequest(),
        tta: bool = False,
        record: RunRecord | None = None,
    ) -> None:
        """`models` maps scale -> a loaded model (or one model); `tags` how tags are found
        (pipeline.TagResolver; None: no tags at all); `input` the --input of the first pass
        (engine/route.choose_input; a later pass sees a clean image and gets the file's first
        prior); `size` the output size (engine/resize.py); `tta` the 8-transform self-ensemble;
        `record` what every output records and existing ones are compared with (engine/record.py;
        default: made from the above, plan.run_record)."""
        self.models = dict(sorted(models.items())) if isinstance(models, dict) else {models.scale: models}
        self.sampler = sampler
        self.output = output
        self.input = input
        self.size = size
        self.tta = tta
        self.tags = TagResolver(tags, next(iter(self.models.values())).plan.device)
        self.record = record or run_record(
            {s: up.info.path for s, up in self.models.items() if up.info is not None},
            [up.cfg for up in self.models.values()], sampler, size, input, tags, tta,
        )

    def run(self, jobs: Sequence[Job], reporter: Reporter, *, prefetch: int = PREFETCH) -> BatchSummary:
        """Every job, in order, as a bounded pipeline: a reader thread triages and decodes the next
        `prefetch` files and a writer thread encodes and writes finished ones while the model runs
        the current one, so a folder costs about N x model time. At most `prefetch` decoded inputs
        and `prefetch` finished outputs wait at any time.

        Each record goes to the reporter as soon as its file is done: the writer thread reports it
        right after the rename (a file that needs no write, as soon as the files before it are
        reported). Records keep job order, so one waits for earlier files' writes, never for a
        later file's compute. The reporter's calls never overlap (`SerializedReporter`).

        On Ctrl-C / SIGTERM (KeyboardInterrupt) the reads ahead are dropped, the images already
        computed are written and reported (atomic: a whole file or none), the reporter finishes
        with the summary marked interrupted, and the exception propagates; the file in the model
        gets no record. On any other exception (a closed pipe) the writer's queue is dropped
        too. `prefetch` 0: one file at a time, all in this thread."""
        reporter = SerializedReporter(reporter)
        with reporting(reporter, len(jobs)) as summary:
            if prefetch < 1:
                for index, job in enumerate(jobs):
                    reporter.image_start(job, index)
                    report_done(reporter, summary, self.process(job, reporter))
            else:
                self._pipeline(jobs, reporter, summary, prefetch)
        return summary

    def _pipeline(self, jobs: Sequence[Job], reporter: Reporter, summary: BatchSummary, prefetch: int) -> None:
        """`run` with prefetch >= 1: reader thread, model here, writer thread (see `run`)."""
        reader = ThreadPoolExecutor(1, thread_name_prefix="linearsr-read")
        writer = ThreadPoolExecutor(1, thread_name_prefix="linearsr-write")
        reads: dict[int, Future[_Decoded]] = {}
        queued: deque[Future[None]] = deque()  # the writer's tasks, in job order
        stop = threading.Event()  # a writer task failed (a closed pipe): the rest of its queue does nothing

        def write_and_report(decoded: _Decoded, out: ImageData | None) -> None:
            """The writer's task: write the image (when there is one), then report the record."""
            if stop.is_set():
                return
            try:
                if out is not None:
                    self.write(decoded, out)
                report_done(reporter, summary, decoded.record)
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
                        reads[ahead] = reader.submit(self.read, jobs[ahead])
                decoded = reads.pop(index).result()
                reporter.image_start(job, index)
                out = None if decoded.image is None else self.compute(decoded, reporter.image_progress)
                queued.append(writer.submit(write_and_report, decoded, out))
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
        tags = self.tags.for_image(path, img.rgb)
        done = upscale_to_size(self.models, img.rgb, img.alpha, self.sampler, size=self.size, tags=tags,
                               input=self.input, jpeg_quality=img.jpeg_quality, tta=self.tta,
                               progress=progress, max_canvas=self.output.max_canvas, compact=True)
        record.passes, record.tta = list(done.passes), self.tta
        record.input_kind, record.input_why, record.prior = done.route.input, done.route.why or None, done.route.prior
        record.warnings = done.warnings
        if tags is not None and tags.source is not None:
            record.tags, record.tag_source = tags.tags, tags.source
        else:
            record.tag_source = "unused" if self.tags.enabled else "off"
        return done.rgb, done.alpha

    def image_record(self, record: FileRecord) -> str:
        """The settings record text for an output (what was asked + what this image resolved to)."""
        image = {"input_kind": record.input_kind, "prior": record.prior, "why": record.input_why, "tags": record.tags,
                 "tag_source": record.tag_source, "passes": record.passes, "size": record.size}
        return settings_record.dumps(self.record.settings, image)

    def read(self, job: Job) -> _Decoded:
        """Triage and decode one job (the reader's part): a finished record (skipped, failed...),
        or the decoded image with the record to fill."""
        started = time.perf_counter()
        done, replaces = triage(job, self.output, self.record)
        if done is not None:
            return _Decoded(job, done, None)
        record = FileRecord(input=str(job.input), output=str(job.output), status="failed", note=replaces)
        try:
            img = read_image(job.input, max_pixels=self.output.max_pixels)
        except ImageReadError as exc:
            record.error = str(exc)
            img = None
        record.seconds = time.perf_counter() - started
        return _Decoded(job, record, img)

    def compute(self, decoded: _Decoded, progress: Any = None) -> ImageData | None:
        """The model's part: the upscaled image, or None with the record failed."""
        started = time.perf_counter()
        record = decoded.record
        try:
            rgb, alpha = self.upscale(decoded.image, decoded.job.input, record, progress)
        except (TagError, DeviceError, ConfigError) as exc:
            record.error = str(exc)
            record.seconds = round(record.seconds + time.perf_counter() - started, 3)
            return None
        finally:
            decoded.image_done()
        record.size = [int(rgb.shape[-1]), int(rgb.shape[-2])]
        record.seconds += time.perf_counter() - started
        return with_pixels(decoded.original, rgb, alpha)

    def write(self, decoded: _Decoded, out: ImageData) -> None:
        """Encode and write atomically (the writer's part); fills the record's status."""
        started = time.perf_counter()
        record = decoded.record
        try:
            data = encode_image(out, decoded.job.format, quality=self.output.quality,
                                png_level=self.output.png_level, record=self.image_record(record))
            atomic_write(decoded.job.output, data)
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
        decoded = self.read(job)
        if decoded.image is None:
            decoded.record.seconds = round(decoded.record.seconds, 3)
            return decoded.record
        out = self.compute(decoded, reporter.image_progress if reporter is not None else None)
        if out is not None:
            self.write(decoded, out)
        return decoded.record


@dataclass
class _Decoded:
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


def load_batch(req: UpscaleRequest, plan: RunPlan) -> BatchRun:
    """The planned weights of a request loaded once onto its device (DeviceError for a device or
    dtype this machine lacks), as a BatchRun with the plan's record."""
    models = load_models(plan.weights, device=req.device, dtype=req.dtype, tiles=req.tiles)
    return BatchRun(models, req.sampler, req.output, req.tags, req.input, req.size, req.tta, record=plan.record)


def upscale_batch(
    req: UpscaleRequest, reporter: Reporter, stdin_lines: Iterable[str] | None = None
) -> BatchSummary:
    """Plan the request, load the models once, check (and make) OUT, run the batch.

    Raises ConfigError (NoInputError for an IN without input) / WeightsError / DeviceError for
    setup problems (nothing is written, OUT is not made); per-file problems end up in the
    summary's records.
    """
    plan = prepare(req, stdin_lines)
    use_cpu_threads(req.threads)
    batch = load_batch(req, plan)  # weights, device, dtype: every setup error comes before OUT is made
    check_out(req.out, plan.jobs)
    return batch.run(plan.jobs, reporter)
