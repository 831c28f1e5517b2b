"""The pixels of `linearsr upscale` on the bundled samples with the shipped weights, within a
stated tolerance (tests/golden.py) on every CPU.

Refactors must not change what users get: this runs the CLI (in process) on samples/ for the
fidelity preset, the perceptual preset, --scale 2 and --outscale 3 and compares every output's
decoded pixels (mode, size, 16x16 block means, a few exact crops) with
tests/data/golden_outputs.npz. Decoded pixels, not file bytes: every output also carries a
settings record (engine/record.py) that names the package version and the weights' digest.
Not hashes: the summation order of floating-point sums differs between CPUs, so outputs may
differ by a level in a few values from one machine to another (README, "--seed").

The stored statistics are CPU fp32 results; they change only when the model, the weights or the
output encoding change on purpose. To regenerate them after such a change (and say why in the
commit message):

    LINEARSR_REGEN_GOLDEN=1 python -m pytest -q tests/test_golden_outputs.py

`--input clean` is given explicitly (the default of --input may change); `--device cpu --dtype
fp32` keeps the numbers independent of an accelerator and of the CPU bf16 decision, which is
timed (engine/device.cpu_bf16) and can flip on a loaded machine whose CPU reports bf16.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from linearsr_cli.cli import EXIT_OK, app
from tests import golden

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
GOLDEN = Path(__file__).resolve().parent / "data" / "golden_outputs.npz"
REGEN = os.environ.get("LINEARSR_REGEN_GOLDEN") == "1"

CASES: dict[str, list[str]] = {
    "fidelity": [],
    "perceptual": ["--preset", "perceptual"],
    "scale2": ["--scale", "2"],
    "outscale3": ["--outscale", "3"],
}


def _run_case(args: list[str], src: Path, out: Path) -> dict[str, dict]:
    res = CliRunner().invoke(
        app,
        ["upscale", str(src), str(out), "--input", "clean", "--device", "cpu", "--dtype", "fp32", "--quiet", *args],
    )
    assert res.exit_code == EXIT_OK, res.output
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert files, "no outputs written"
    return {p.relative_to(out).as_posix(): decoded_summary(p) for p in files}


def decoded_summary(path: Path) -> dict:
    """golden.summarize of an image file's decoded pixels (metadata ignored)."""
    with Image.open(path) as im:
        return golden.summarize(im.mode, np.asarray(im))


def load_golden() -> dict[str, dict[str, dict]]:
    """{case: {file: summary}} from GOLDEN (keys 'case/file/field')."""
    stored: dict[str, dict[str, dict]] = {}
    if GOLDEN.exists():
        with np.load(GOLDEN, allow_pickle=False) as data:
            for key in data.files:
                case, name, fld = key.split("/")
                value = data[key]
                entry = stored.setdefault(case, {}).setdefault(name, {})
                entry[fld] = str(value) if fld == "mode" else value.tolist() if fld == "size" else value
    return stored


def save_golden(stored: dict[str, dict[str, dict]]) -> None:
    arrays = {f"{case}/{name}/{fld}": np.asarray(value)
              for case, files in stored.items() for name, summary in files.items() for fld, value in summary.items()}
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GOLDEN, **arrays)


@pytest.mark.parametrize("case", sorted(CASES))
def test_upscale_outputs_match_golden(case: str, tmp_path: Path) -> None:
    got = _run_case(CASES[case], SAMPLES, tmp_path / case)
    stored = load_golden()
    if REGEN:
        stored[case] = got
        save_golden(stored)
        return
    assert case in stored, f"no stored outputs for {case!r}: run with LINEARSR_REGEN_GOLDEN=1"
    assert sorted(got) == sorted(stored[case])
    problems = {name: golden.compare(stored[case][name], got[name]) for name in got}
    assert not any(problems.values()), (
        f"upscale {case} output changed beyond the cross-CPU tolerance (args {CASES[case]}): {problems}; "
        "if on purpose, regenerate with LINEARSR_REGEN_GOLDEN=1 and say why in the commit"
    )


def test_the_comparison_fails_when_a_weight_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tolerance still catches a real change: one bias of the clean prior's last convolution
    (0.456 of 1.2 M parameters) moved by 0.001, i.e. 0.2 %, fails the fidelity comparison."""
    import linearsr_cli.engine.upscaler as upscaler

    load = upscaler.load_weights

    def perturbed(path, **kwargs):  # type: ignore[no-untyped-def]
        model, info = load(path, **kwargs)
        with torch.no_grad():
            model.priors["clean"].upsampler.bias[0] += 0.001
        return model, info

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SAMPLES / "chelsea.png", src)
    monkeypatch.setattr(upscaler, "load_weights", perturbed)
    got = _run_case(CASES["fidelity"], src, tmp_path / "out")["chelsea.png"]
    problems = golden.compare(load_golden()["fidelity"]["chelsea.png"], got)
    assert problems and "crop values changed" in " ".join(problems), problems


def test_the_rule_admits_summation_noise_and_nothing_more() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(3, 250, size=(96, 80, 3), dtype=np.uint8)
    base = golden.summarize("RGB", pixels)
    y0, x0, _, _ = golden.crop_boxes(96, 80)[1]

    def compared(where: tuple, levels: int | np.ndarray) -> list[str]:
        changed = pixels.astype(np.int16)
        changed[where] += levels
        return golden.compare(base, golden.summarize("RGB", changed.astype(np.uint8)))

    assert golden.compare(base, base) == []
    assert compared((y0, x0, 0), 2) == []  # one value 2 levels off
    assert compared((slice(y0, y0 + 4), x0, 0), 1) == []  # 4 of 9216 crop values a level off
    assert compared((y0, x0, 0), 3)  # 3 levels
    assert compared((slice(None),), (rng.random(pixels.shape) < 0.01).astype(np.int16))  # 1 % a level up
    assert compared((slice(0, 8), slice(0, 16)), 3)  # outside every crop: the block means see it
    assert compared((slice(None), slice(0, 40)), 1)  # half the image a level up
    assert golden.compare(base, golden.summarize("RGB", pixels[:95]))  # another size
