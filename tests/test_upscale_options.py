"""`linearsr upscale` options a pipeline user meets: no OUT for a run that cannot start,
--device cuda:N, --threads, the short options, --overwrite reported as "replaced", and reruns that
redo nothing when the only change has no effect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from linearsr_cli.cli import EXIT_OK, EXIT_USAGE, app
from linearsr_cli.engine import device as device_mod
from linearsr_cli.engine import record as settings_record
from linearsr_cli.errors import DeviceError
from linearsr_cli.imageio import read_record
from tests.conftest import synthetic_photo
from tests.test_batch_pipelines import folder, records, upscale
from tests.util import routed_prior_weights

# ----------------------------------------------------------------------------- runs that cannot start


def test_out_is_not_made_when_the_run_cannot_start(tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)
    src = folder(tmp_path / "in", n=1)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    for args, words in [([str(src), str(out), "--device", "cuda"], "no CUDA device"),
                        ([str(src), str(out), "--device", "cuda:1"], "--device cuda:1 asked for"),
                        ([str(src), str(out), "--dtype", "fp8"], "unknown dtype 'fp8'"),
                        ([str(notes), str(out)], "no input found"),
                        ([str(notes), str(out), "--json"], "no input found")]:
        res = upscale(args, tiny_weights)
        assert res.exit_code == EXIT_USAGE and words in res.stderr, (args, res.output)
        assert not out.exists(), args


def test_device_strings_name_one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert device_mod.parse_device("cuda:1") == ("cuda", 1) and device_mod.parse_device("cpu") == ("cpu", None)
    for bad in ("gpu", "cuda:", "cuda:x", "cpu:0", "cuda:-1"):
        with pytest.raises(DeviceError, match="cuda:N"):
            device_mod.parse_device(bad)
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)
    with pytest.raises(DeviceError, match="--device cuda:1 asked for, but no CUDA device"):
        device_mod.choose_device("cuda:1")
    monkeypatch.setattr(device_mod, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_mod.choose_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match=r"cuda:2 asked for, but this machine has 2 CUDA device\(s\): cuda:0 to cuda:1"):
        device_mod.choose_device("cuda:2")


# ----------------------------------------------------------------------------- --threads, short options


def test_threads_sets_torch_threads_and_stays_out_of_the_record(tmp_path: Path, tiny_weights: Path) -> None:
    before = torch.get_num_threads()
    src, out = folder(tmp_path / "in", n=1), tmp_path / "out"
    try:
        res = upscale([str(src), str(out), "--threads", "1", "--json"], tiny_weights)
        assert res.exit_code == EXIT_OK and torch.get_num_threads() == 1
        assert "threads" not in json.dumps(settings_record.loads(read_record(out / "p0.png")))
        again = upscale([str(src), str(out), "--threads", "2", "--json"], tiny_weights)
        assert [r["status"] for r in records(again)] == ["skipped"]
    finally:
        torch.set_num_threads(before)
    res = upscale([str(src), str(tmp_path / "zero"), "--threads", "0"], tiny_weights)
    assert res.exit_code == EXIT_USAGE and "--threads must be >= 1" in res.stderr
    assert not (tmp_path / "zero").exists()


def test_short_options_of_real_esrgan_users(tmp_path: Path, tiny_weights: Path) -> None:
    from typer.main import get_command

    params = get_command(app).commands["upscale"].params  # type: ignore[attr-defined]
    short = [(o, p.name) for p in params for o in p.opts + p.secondary_opts if len(o) == 2]
    assert len({o for o, _ in short}) == len(short), short  # no clash
    assert {("-s", "outscale"), ("-f", "fmt"), ("-t", "tile")} <= set(short)
    src = folder(tmp_path / "in", n=1)
    res = upscale([str(src), str(tmp_path / "out"), "-s", "2", "-f", "jpg", "-t", "40", "--json"], tiny_weights)
    assert res.exit_code == EXIT_OK, res.output
    with Image.open(tmp_path / "out" / "p0.jpg") as im:
        assert im.format == "JPEG" and im.size == (16, 12)


# ----------------------------------------------------------------------------- what a rerun redoes


def test_overwrite_of_unchanged_outputs_is_reported_as_replaced(tmp_path: Path, tiny_weights: Path) -> None:
    src, out = folder(tmp_path / "in", n=2), tmp_path / "out"
    assert upscale([str(src), str(out)], tiny_weights).exit_code == EXIT_OK
    res = upscale([str(src), str(out), "--overwrite"], tiny_weights)  # stderr is not a terminal: plain lines
    assert res.exit_code == EXIT_OK
    assert res.stderr.splitlines()[-1].startswith("2 upscaled (2 replaced: --overwrite), 0 skipped")
    assert "redone" not in res.stderr and "(replaced (--overwrite): made with the same settings)" in res.stderr
    other = upscale([str(src), str(out), "--overwrite", "--seed", "3", "--json"], tiny_weights)
    assert all(r["note"].startswith("redone: output was made with other settings: seed: 0 -> 3") for r in records(other))


@pytest.fixture(scope="module")
def routed_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny weights with clean, real and texture priors, a bare structure expert (the fidelity
    preset uses no tags) and a router that calls noisy JPEGs real."""
    return routed_prior_weights(tmp_path_factory.mktemp("w") / "routed.safetensors")


def test_changes_without_effect_redo_nothing(tmp_path: Path, routed_weights: Path) -> None:
    clean = (synthetic_photo(24, 24, 1) * 255).astype(np.uint8)
    src = tmp_path / "noisy.jpg"
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(src, quality=60)
    out = tmp_path / "out.png"

    def run(*args: str) -> dict:
        res = CliRunner().invoke(app, ["upscale", str(src), str(out), "--weights", str(routed_weights), "--json", *args])
        assert res.exit_code == EXIT_OK, res.output
        return records(res)[0]

    first = run("--tags", "off")
    assert first["status"] == "ok" and first["prior"] == "real" and first["input_why"] != "--input"
    assert run("--tags", "off", "--input", "real")["status"] == "skipped"  # auto had chosen real
    assert run("--tags", "cat, grass")["status"] == "skipped"  # the fidelity preset uses no tags
    assert run("--tags", "auto", "--input", "real")["status"] == "skipped"
    redo = run("--tags", "off", "--input", "clean")
    assert redo["status"] == "ok" and redo["note"] == 'redone: output was made with other settings: input: "auto" -> "clean"'
    multi = run("--tags", "off", "--input", "real", "--steps", "2")  # real serves texture in multi-step runs
    assert multi["status"] == "ok" and multi["prior"] == "texture"
    assert run("--tags", "off", "--steps", "2")["status"] == "ok"  # --input auto: decided per image, compared as asked


def test_differences_compare_what_was_used() -> None:
    stored = {"seed": 0, "input": "auto", "tags": "auto(top5, >0.1, lite0)"}
    used = settings_record.used({"prior": "real", "tags": ["cat"], "tag_source": "tagger"})
    assert used == {"prior": "real", "tags": ["cat"]}
    current = {"seed": 0, "input": "real", "tags": "cat"}
    assert settings_record.differences(stored, current, stored_use=used, current_use={"prior": "real", "tags": ["cat"]}) == []
    assert settings_record.differences(stored, current, stored_use=used, current_use={"prior": "real", "tags": ["dog"]}) == [
        'tags: "auto(top5, >0.1, lite0)" -> "cat"']
    assert settings_record.differences(stored, current, stored_use=used, current_use={}) == [
        'input: "auto" -> "real"', 'tags: "auto(top5, >0.1, lite0)" -> "cat"']
    assert settings_record.differences(stored, {**current, "seed": 1}, stored_use=used, current_use={"tags": "unused"}) == [
        'input: "auto" -> "real"', "seed: 0 -> 1"]
    assert settings_record.used({"prior": None, "tags": [], "tag_source": "off"}) == {"prior": None, "tags": []}
