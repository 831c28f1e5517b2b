"""Progress of a training run, without torch: the reporter protocol the loops call (cli/train_report.py
implements the visible ones), the per-checkpoint record of --json, and checkpoints.csv."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol


class TrainReporter(Protocol):
    """Progress sink of a training run (cli/train_report.py implements it); nothing in train/ prints."""

    def start(self, name: str, step: int, total: int) -> None: ...

    def step(self, step: int, loss: float, lr: float) -> None: ...

    def checkpoint(self, record: dict[str, Any]) -> None: ...

    def finish(self) -> None: ...


class SilentReporter:
    def start(self, name: str, step: int, total: int) -> None:
        pass

    def step(self, step: int, loss: float, lr: float) -> None:
        pass

    def checkpoint(self, record: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass


def run_name(meta: Mapping[str, Any]) -> str:
    """A short name for progress lines: "stage 1", "stage 2 expert 3/4", "stage 0"."""
    if "expert" in meta:
        return f"stage {meta.get('stage', 2)} expert {meta['expert']}/{meta.get('num_experts', '?')}"
    return f"stage {meta.get('stage', '?')}"


def checkpoint_record(training: Mapping[str, Any], ckpt: Path) -> dict[str, Any]:
    """The per-checkpoint record of --json and checkpoints.csv: stage, step, loss, lr, val."""
    keys = ("stage", "expert", "step", "loss", "lr", "val")
    return {**{k: training[k] for k in keys if k in training}, "checkpoint": str(ckpt)}


def mean_logs(lines: Sequence[Mapping[str, float]], keys: Sequence[str]) -> dict[str, float]:
    """Mean of each key over the step log lines that have it (a checkpoint's summary of them)."""
    out = {}
    for key in keys:
        values = [float(ln[key]) for ln in lines if key in ln]
        if values:
            out[key] = sum(values) / len(values)
    return out


def append_csv(path: Path, record: Mapping[str, Any]) -> None:
    """One row per checkpoint (flattened val.*), header on first write; plain csv, no dependency."""
    flat = {k: v for k, v in record.items() if k != "val"}
    flat.update({f"val_{k}": v for k, v in dict(record.get("val") or {}).items()})
    new = not path.is_file()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(flat))
        if new:
            writer.writeheader()
        writer.writerow(flat)


def trim_csv(path: Path, step: int) -> None:
    """Drop checkpoints.csv rows past `step` (the header line stays)."""
    if not path.is_file():
        return
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    col = rows[0].index("step") if "step" in rows[0] else None
    keep = [rows[0]] + [r for r in rows[1:] if col is None or int(r[col]) <= step]
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(keep)
