"""Pixel identity of `linearsr upscale` on the bundled samples with the shipped weights.

Refactors must not change what users get: this runs the CLI (in process) on samples/ for the
fidelity preset, the perceptual preset, --scale 2 and --outscale 3 and compares the SHA-256 of
every output's decoded pixels (mode, size and pixel bytes) with tests/data/output_hashes.json.
Pixels, not file bytes: every output also carries a settings record (engine/record.py) that
names the package version and the weights' digest, which changes bytes but never pixels.

The stored hashes are CPU fp32 results; they change only when the model, the weights or the
output encoding change on purpose. To regenerate them after such a change (and say why in the
commit message):

    LINEARSR_REGEN_HASHES=1 python -m pytest -q tests/test_output_hashes.py

`--input clean` is given explicitly (the default of --input may change); `--device cpu --dtype
fp32` keeps the numbers independent of an accelerator and of the CPU bf16 decision, which is
timed (engine/device.cpu_bf16) and can flip on a loaded machine whose CPU reports bf16.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from linearsr_cli.cli import EXIT_OK, app

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
HASHES = Path(__file__).resolve().parent / "data" / "output_hashes.json"
REGEN = os.environ.get("LINEARSR_REGEN_HASHES") == "1"

CASES: dict[str, list[str]] = {
    "fidelity": [],
    "perceptual": ["--preset", "perceptual"],
    "scale2": ["--scale", "2"],
    "outscale3": ["--outscale", "3"],
}


def _run_case(args: list[str], out: Path) -> dict[str, str]:
    res = CliRunner().invoke(
        app,
        ["upscale", str(SAMPLES), str(out), "--input", "clean", "--device", "cpu", "--dtype", "fp32", "--quiet", *args],
    )
    assert res.exit_code == EXIT_OK, res.output
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert files, "no outputs written"
    return {p.relative_to(out).as_posix(): pixel_hash(p) for p in files}


def pixel_hash(path: Path) -> str:
    """SHA-256 of an image's mode, size and decoded pixel bytes (metadata ignored)."""
    with Image.open(path) as im:
        return hashlib.sha256(im.mode.encode() + str(im.size).encode() + np.asarray(im).tobytes()).hexdigest()


@pytest.mark.parametrize("case", sorted(CASES))
def test_upscale_outputs_byte_identical(case: str, tmp_path: Path) -> None:
    got = _run_case(CASES[case], tmp_path / case)
    stored = json.loads(HASHES.read_text()) if HASHES.exists() else {}
    if REGEN:
        stored[case] = got
        HASHES.parent.mkdir(parents=True, exist_ok=True)
        HASHES.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
        return
    assert case in stored, f"no stored hashes for {case!r}: run with LINEARSR_REGEN_HASHES=1"
    assert got == stored[case], (
        f"upscale {case} output changed (args {CASES[case]}); if on purpose, regenerate with "
        "LINEARSR_REGEN_HASHES=1 and say why in the commit"
    )
