"""`linearsr upscale --ray`: the same batch on a Ray cluster through Ray Data.

The driver plans the request exactly as the local run does (plan.prepare: the jobs, the weights
files read once, the settings record) and settles every job that needs no model there (planning
problems fail, existing outputs are skipped). The rest go through Ray Data to actors; each actor
loads the planned weights (and the tagger) once and runs the same `BatchRun.process` as the local
run: the same Upscaler, the same seeds, the same atomic writer (hidden .NAME.HOST-PID temp file,
fsync, rename). A worker that dies mid-file leaves only its hidden temp file, which a rerun on that
machine removes; a rerun skips the finished outputs. Records come back to the driver as they
finish and go to the same reporter (rich bar, --json, --quiet).

Inputs and outputs must be on a filesystem every node sees. Ray is an optional extra
(`pip install -e '.[ray]'`); only this module imports it, and only when --ray is given.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linearsr_cli.engine.plan import Job, RunPlan, UpscaleRequest, check_out, prepare
from linearsr_cli.engine.report import BatchSummary, FileRecord, Reporter, report_done, reporting
from linearsr_cli.engine.rerun import triage
from linearsr_cli.errors import ConfigError

INSTALL_HINT = "--ray needs Ray Data: pip install -e '.[ray]' (or pip install 'ray[data]')"


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide: `address` "auto" (a running cluster, else a local one), "local" (a
    new one on this machine) or a Ray address; 0 / -1 mean the defaults: one actor per GPU, each
    with 1 GPU and 1 CPU; without GPUs one actor per node with all of that node's CPUs."""

    address: str = "auto"
    actors: int = 0
    cpus_per_actor: float = 0.0
    gpus_per_actor: float = -1.0
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.actors < 0 or self.cpus_per_actor < 0 or self.batch_size < 1:
            raise ConfigError("--ray-actors and --ray-cpus must be >= 0, --ray-batch >= 1")


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def _connect(address: str) -> None:
    import logging

    import ray

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)  # our reporter speaks for the run
    if ray.is_initialized():
        return
    quiet = {"log_to_driver": False, "include_dashboard": False, "logging_level": "ERROR"}
    if address == "local":
        ray.init(**quiet)
    elif address == "auto":
        try:
            ray.init(address="auto", **quiet)
        except (ConnectionError, RuntimeError, ValueError):
            ray.init(**quiet)  # no running cluster: a local one
    else:
        ray.init(address=address, **quiet)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def actor_layout(resources: dict[str, float], nodes: int, cfg: RayConfig) -> tuple[int, float, float]:
    """(actors, CPUs per actor, GPUs per actor) from the cluster's total resources and node
    count, with the config's explicit values taking precedence."""
    gpus = float(resources.get("GPU", 0.0))
    cpus = float(resources.get("CPU", 1.0))
    per_gpu = cfg.gpus_per_actor if cfg.gpus_per_actor >= 0 else (1.0 if gpus >= 1 else 0.0)
    if per_gpu > 0:
        actors = cfg.actors or max(1, int(gpus // per_gpu))
        return actors, cfg.cpus_per_actor or 1.0, per_gpu
    actors = cfg.actors or max(1, nodes)
    per_cpu = cfg.cpus_per_actor or max(1.0, float(int(cpus // max(actors, 1))))
    return actors, per_cpu, 0.0


class _UpscaleActor:
    """One Ray actor: the request's planned weights loaded once; upscales the rows it is given."""

    def __init__(self, req: UpscaleRequest, plan: RunPlan, threads: int) -> None:
        import torch

        from linearsr_cli.engine.batch import load_batch

        torch.set_num_threads(max(1, threads))
        self.batch = load_batch(req, plan)

    def __call__(self, rows: dict[str, Any]) -> dict[str, list[str]]:
        records = []
        for src, dst, fmt in zip(rows["input"], rows["output"], rows["format"], strict=True):
            record = self.batch.process(Job(Path(str(src)), Path(str(dst)), str(fmt)))
            records.append(json.dumps(record.to_dict()))
        return {"record": records}


def upscale_batch_ray(
    req: UpscaleRequest, cfg: RayConfig, reporter: Reporter, stdin_lines: Iterable[str] | None = None
) -> BatchSummary:
    """The Ray run of `req` (see the module docstring); same plan (plan.prepare), summary and
    records as engine.batch.upscale_batch. Raises ConfigError without Ray, and the setup errors of
    a local run (bad weights) before any file is written."""
    if not ray_available():
        raise ConfigError(INSTALL_HINT)
    plan = prepare(req, stdin_lines)  # fail fast, on the driver, for a bad file
    check_out(req.out, plan.jobs)
    with reporting(reporter, len(plan.jobs)) as summary:  # Ctrl-C: the interrupted summary still goes out
        pending: dict[str, tuple[int, Job]] = {}
        for index, job in enumerate(plan.jobs):
            done, _ = triage(job, req.output, plan.record)
            if done is None:
                pending[str(job.output.resolve())] = (index, job)
                continue
            reporter.image_start(job, index)
            report_done(reporter, summary, done)
        if pending:
            try:
                for record in _run_on_ray(req, plan, cfg, [job for _, job in pending.values()]):
                    index, job = pending[record.output]
                    record.input, record.output = str(job.input), str(job.output)  # as the driver named them
                    reporter.image_start(job, index)
                    report_done(reporter, summary, record)
            finally:  # finished or interrupted
                _disconnect()
    return summary


def _disconnect() -> None:
    """Leave Ray now, with Ctrl-C ignored meanwhile, whether the run finished or was interrupted.
    Left to Ray's own exit hook, a SIGINT landing inside its shutdown crashed the driver (SIGSEGV,
    exit -11): after an interrupt (a second Ctrl-C) in 2 of 5 full test runs, and once after a run
    that had just finished when the Ctrl-C came."""
    import signal

    import ray

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ray.shutdown()
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_on_ray(req: UpscaleRequest, plan: RunPlan, cfg: RayConfig, jobs: list[Job]) -> Iterable[FileRecord]:
    import ray

    _connect(cfg.address)
    actors, cpus, gpus = actor_layout(ray.cluster_resources(), len([n for n in ray.nodes() if n.get("Alive")]), cfg)
    # absolute paths: actors do not share the driver's working directory
    rows = [{"input": str(j.input.resolve()), "output": str(j.output.resolve()), "format": j.format} for j in jobs]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // cfg.batch_size))
    out = ds.map_batches(
        _UpscaleActor,
        # the actors load the weights the driver planned; the jobs travel as rows, not in the plan
        fn_constructor_kwargs={"req": req, "plan": dataclasses.replace(plan, jobs=[]), "threads": req.threads or int(cpus)},
        batch_size=cfg.batch_size,
        concurrency=actors,
        num_cpus=cpus,
        num_gpus=gpus,
        batch_format="numpy",
    )
    for row in out.iter_rows():
        yield FileRecord(**json.loads(row["record"]))
