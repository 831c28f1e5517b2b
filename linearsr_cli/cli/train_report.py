"""The reporters of a training run (train/report.py's `TrainReporter` protocol): a rich progress
bar and --json's record per checkpoint (--quiet is train/report.py's SilentReporter).
cli/console.py's `train_reporter` picks one."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import TextColumn

from linearsr_cli.cli.console import progress_bar
from linearsr_cli.train.report import SilentReporter


class JsonTrainReporter(SilentReporter):
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
    """A rich progress bar on `console` (stderr) per run: step/total, steps/s, smoothed loss, lr,
    ETA and the latest checkpoint's validation PSNR; one line per checkpoint above the bar."""

    SMOOTH = 0.98  # EMA factor of the displayed loss

    def __init__(self, console: Console) -> None:
        self.console = console
        fields = ("{task.fields[speed]} it/s", "loss {task.fields[loss]}", "lr {task.fields[lr]}", "val {task.fields[val]}")
        self.progress = progress_bar(self.console, *(TextColumn(f) for f in fields))
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
