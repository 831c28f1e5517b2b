"""ESGF: Kneedle finds the known knee of synthetic loss curves (with and without a diverging
tail), the unstable peak and the divergence onset follow their definitions, and `select-knee`
handles real checkpoint folders and every kind of bad folder with a message, not a traceback."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from linearsr_cli.checkpoints import save_weights
from linearsr_cli.cli import app
from linearsr_cli.esgf.knee import Curve, KneeError, analyse, divergence_onset
from tests.util import random_model, tiny_model_config

STEPS = tuple(range(0, 10_001, 250))  # 41 checkpoints


def kneedle_knee_of_exponential(tau: float, x_max: float) -> float:
    """Where the normalised curve of exp(-x / tau) on [0, x_max] has slope -1: the noise-free
    Kneedle knee (maximum of the difference curve) of a convex decreasing exponential."""
    return tau * math.log(x_max / (tau * (1.0 - math.exp(-x_max / tau))))


def nearest(steps: tuple[int, ...], x: float) -> int:
    return int(np.argmin(np.abs(np.asarray(steps) - x)))


def decaying(seed: int, tau: float, steps=STEPS, noise: float = 0.04) -> list[float]:
    rng = np.random.default_rng(seed)
    x = np.asarray(steps, dtype=float)
    clean = 0.05 + np.exp(-x / tau)
    return list(clean * (1.0 + noise * rng.standard_normal(len(x))))


@pytest.mark.parametrize("seed,tau", [(0, 900.0), (1, 1500.0), (2, 2200.0), (3, 1200.0)])
def test_knee_of_noisy_exponential_within_one_checkpoint(seed: int, tau: float) -> None:
    report = analyse(Curve(STEPS, tuple(decaying(seed, tau))))
    truth = nearest(STEPS, kneedle_knee_of_exponential(tau, STEPS[-1]))
    assert abs(report.knee - truth) <= 1
    assert report.divergence is None
    assert report.unstable_peak is not None and report.unstable_peak > report.knee


def test_knee_of_piecewise_linear_curve_is_the_break() -> None:
    steps = tuple(range(0, 3100, 100))
    loss = tuple(1.0 - 0.09 * (s / 100) if s <= 1000 else 0.1 - 0.001 * (s - 1000) / 100 for s in steps)
    assert abs(analyse(Curve(steps, loss)).knee - steps.index(1000)) <= 1  # polynomial smoothing rounds the corner


@pytest.mark.parametrize("tail", ["nan", "spike"])
def test_knee_ignores_a_diverging_tail(tail: str) -> None:
    tau, stable = 1500.0, 33  # checkpoints 0..32 are stable, 33.. diverge
    loss = decaying(5, tau)
    for i in range(stable, len(loss)):
        loss[i] = math.nan if tail == "nan" else 0.5 * (i - stable + 1)
    psnr = [20 + 5 * (1 - math.exp(-s / tau)) for s in STEPS]
    report = analyse(Curve(STEPS, tuple(loss), psnr=tuple(psnr)))
    assert report.divergence == stable
    assert ("nan" in report.divergence_reason) if tail == "nan" else ("spike" in report.divergence_reason)
    truth = nearest(STEPS[:stable], kneedle_knee_of_exponential(tau, STEPS[stable - 1]))
    assert abs(report.knee - truth) <= 1
    # unstable peak: the best validation score after the knee, before divergence
    assert report.unstable_peak == stable - 1


def test_attention_explosion_and_nan_validation_mark_divergence() -> None:
    loss = tuple(decaying(7, 1000.0))
    act = [3.0 + 0.01 * i for i in range(len(STEPS))]
    act[30] = 500.0
    div, reason = divergence_onset(Curve(STEPS, loss, max_act=tuple(act)))
    assert div == 30 and "attention" in reason
    psnr = [25.0] * len(STEPS)
    psnr[20] = math.nan
    assert divergence_onset(Curve(STEPS, loss, psnr=tuple(psnr)))[0] == 20


def test_unstable_peak_prefers_validation_then_loss() -> None:
    loss = tuple(decaying(3, 1500.0))
    psnr = [24.0] * len(STEPS)
    psnr[25] = 26.0
    r = analyse(Curve(STEPS, loss, psnr=tuple(psnr)))
    assert r.unstable_peak == 25
    r2 = analyse(Curve(STEPS, loss))
    after = range(r2.knee + 1, len(STEPS))
    assert r2.unstable_peak == min(after, key=lambda i: loss[i])


def test_too_few_checkpoints_is_a_clear_error() -> None:
    with pytest.raises(KneeError, match="at least 3"):
        analyse(Curve((100,), (0.5,)))
    with pytest.raises(KneeError, match="divergence at step 200"):
        analyse(Curve((100, 200, 300, 400), (0.5, math.nan, math.nan, math.nan)))


# ----------------------------------------------------------------------------- the CLI


def write_checkpoints(folder: Path, losses: list[float], steps=None) -> list[Path]:
    model = random_model(tiny_model_config(num_experts=1, depth=1))
    steps = steps or [100 * (i + 1) for i in range(len(losses))]
    paths = []
    for step, loss in zip(steps, losses, strict=True):
        paths.append(save_weights(folder / f"ckpt-{step:07d}.safetensors", model,
                                  training={"stage": 1, "step": step, "loss": loss,
                                            "attn": {"max_q": 2.0, "max_k": 2.0, "min_normaliser": 1.0}}))
    return paths


def write_val_pairs(root: Path, n: int = 2) -> Path:
    rng = np.random.default_rng(0)
    (root / "lr").mkdir(parents=True)
    (root / "hr").mkdir()
    for i in range(n):
        hr = cv2.resize(rng.random((8, 8, 3)).astype(np.float32), (32, 32), interpolation=cv2.INTER_CUBIC)
        hr = (np.clip(hr, 0, 1) * 255).astype(np.uint8)
        lr = cv2.resize(hr, (8, 8), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / "hr" / f"p{i}.png"), hr)
        cv2.imwrite(str(root / "lr" / f"p{i}.png"), lr)
    return root


runner = CliRunner()


def test_select_knee_cli_table_json_plot_link_and_val(tmp_path: Path) -> None:
    ck = tmp_path / "ckpts"
    steps = [250 * (i + 1) for i in range(12)]
    losses = decaying(11, 900.0, steps=steps)
    paths = write_checkpoints(ck, losses, steps)
    save_file({"w": torch.zeros(2)}, str(ck / "foreign.safetensors"))  # someone else's file
    (ck / "broken.safetensors").write_bytes(b"\x00" * 5)
    truth = nearest(tuple(steps), kneedle_knee_of_exponential(900.0, steps[-1] - steps[0]) + steps[0])
    val = write_val_pairs(tmp_path / "val")
    res = runner.invoke(app, ["select-knee", str(ck), "--json-out", str(tmp_path / "k.json"),
                              "--plot", str(tmp_path / "knee.png"), "--link", str(tmp_path / "knee.safetensors"),
                              "--val", str(val)])
    assert res.exit_code == 0, res.output
    assert "KNEE" in res.output and "Traceback" not in res.output
    assert "skipped foreign.safetensors: not a LinearSR weights file" in res.output
    assert "skipped broken.safetensors: not a safetensors file" in res.output
    report = json.loads((tmp_path / "k.json").read_text())
    knee_step = report["knee"]["step"]
    assert abs(steps.index(knee_step) - truth) <= 1
    assert (tmp_path / "knee.safetensors").resolve() == paths[steps.index(knee_step)].resolve()
    assert all(c["measured"] and c["psnr"] > 0 and c["max_q"] > 0 for c in report["checkpoints"])
    png = cv2.imread(str(tmp_path / "knee.png"))
    assert png is not None and png.shape[0] > 200
    lines = runner.invoke(app, ["select-knee", str(ck), "--json"])  # one JSON line on stdout, no table
    assert lines.exit_code == 0 and json.loads(lines.stdout)["knee"]["step"] in steps
    old = runner.invoke(app, ["select-knee", str(ck), "--json", str(tmp_path / "k2.json")])
    assert old.exit_code == 1 and "--json-out" in old.output and not (tmp_path / "k2.json").exists()


def test_select_knee_cli_nan_tail(tmp_path: Path) -> None:
    losses = decaying(4, 600.0, steps=[100 * (i + 1) for i in range(12)]) + [math.nan] * 3
    write_checkpoints(tmp_path, losses)
    res = runner.invoke(app, ["select-knee", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "divergence from step 1300: loss is nan" in res.output
    assert "KNEE" in res.output


@pytest.mark.parametrize("case", ["empty", "missing", "single", "foreign_only", "all_nan"])
def test_select_knee_cli_bad_folders(tmp_path: Path, case: str) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    expect = {
        "empty": "no LinearSR training checkpoints",
        "missing": "not a directory",
        "single": "need at least 3",
        "foreign_only": "skipped: a.safetensors (not a LinearSR weights file",
        "all_nan": "divergence at step 100",
    }[case]
    if case == "missing":
        folder = tmp_path / "nope"
    elif case == "single":
        write_checkpoints(folder, [0.3])
    elif case == "foreign_only":
        save_file({"w": torch.zeros(1)}, str(folder / "a.safetensors"))
        (folder / "b.safetensors").write_text("not tensors at all")
    elif case == "all_nan":
        write_checkpoints(folder, [math.nan] * 4)
    res = runner.invoke(app, ["select-knee", str(folder)])
    assert res.exit_code == 1
    assert expect in res.output and "Traceback" not in res.output
