"""`linearsr upscale` end to end on a tiny random model: files, folders, stdin, formats, bad
files, skip/resume, atomic writes, metadata and exit codes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

import linearsr_cli.checkpoints as checkpoints_mod
from linearsr_cli.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, app
from linearsr_cli.engine import batch as batch_mod
from linearsr_cli.errors import ImageWriteError
from linearsr_cli.imageio import ORIENTATION_TAG, png16_bytes
from tests.conftest import synthetic_photo

REPO = Path(__file__).resolve().parents[1]
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def rgb8(h: int, w: int, seed: int = 0) -> np.ndarray:
    return (synthetic_photo(h, w, seed) * 255).round().astype(np.uint8)


def save(path: Path, im: Image.Image, fmt: str | None = None, **params: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt, **params)
    return path


def run(args: list[str], weights: Path, **kwargs: object):
    runner = CliRunner()
    return runner.invoke(app, ["upscale", *args, "--weights", str(weights), "--no-tags", "--quiet", *[]], **kwargs)


def records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_single_file_and_odd_sizes(tmp_path: Path, tiny_weights: Path) -> None:
    for h, w in [(1, 1), (1, 9), (7, 1), (13, 5), (17, 33)]:
        src = save(tmp_path / f"in_{h}x{w}.png", Image.fromarray(rgb8(h, w)))
        res = run([str(src), str(tmp_path / "out")], tiny_weights)
        assert res.exit_code == EXIT_OK, res.output
        out = Image.open(tmp_path / "out" / src.name)
        assert out.size == (4 * w, 4 * h) and out.mode == "RGB"
    explicit = tmp_path / "named.jpg"
    res = run([str(tmp_path / "in_13x5.png"), str(explicit)], tiny_weights)
    assert res.exit_code == EXIT_OK and Image.open(explicit).format == "JPEG"


def test_folder_tree_mirrored_bad_files_reported_and_json(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "in"
    save(src / "a.png", Image.fromarray(rgb8(8, 12)))
    save(src / "sub" / "deeper" / "b.jpg", Image.fromarray(rgb8(10, 6)), quality=90)
    save(src / "sub" / "c.webp", Image.fromarray(rgb8(6, 6)).convert("RGBA"), lossless=True)
    (src / "notes.txt").write_text("not an image, and not listed")
    (src / "empty.png").write_bytes(b"")
    (src / "sub" / "text.jpg").write_text("plain text with an image name")
    good = io.BytesIO()
    Image.fromarray(rgb8(30, 30)).save(good, "PNG")
    (src / "sub" / "truncated.png").write_bytes(good.getvalue()[:200])
    save(src / "big.png", Image.fromarray(rgb8(40, 40)))  # over --max-pixels below
    res = CliRunner().invoke(
        app,
        ["upscale", str(src), str(tmp_path / "out"), "--weights", str(tiny_weights), "--no-tags",
         "--json", "--max-pixels", "1000"],
    )
    assert res.exit_code == EXIT_PARTIAL, res.output
    recs = {Path(r["input"]).name: r for r in records(res)}
    assert set(recs) == {"a.png", "b.jpg", "c.webp", "empty.png", "text.jpg", "truncated.png", "big.png", "notes.txt"}
    assert recs["notes.txt"]["status"] == "ignored" and ".txt" in recs["notes.txt"]["note"]
    assert recs["a.png"]["status"] == "ok" and recs["a.png"]["size"] == [48, 32]
    assert recs["a.png"]["tag_source"] == "off" and recs["a.png"]["seconds"] > 0
    assert "empty file" in recs["empty.png"]["error"]
    assert "not an image" in recs["text.jpg"]["error"]
    assert "truncated" in recs["truncated.png"]["error"] or "corrupt" in recs["truncated.png"]["error"]
    assert "max-pixels" in recs["big.png"]["error"]
    out = tmp_path / "out"
    assert Image.open(out / "sub" / "deeper" / "b.jpg").size == (24, 40)
    webp = Image.open(out / "sub" / "c.webp")
    assert webp.format == "WEBP" and webp.size == (24, 24)
    assert not (out / "notes.txt").exists() and not (out / "empty.png").exists()
    assert not list(out.rglob(".*"))  # no temp files left behind


def test_skip_resume_overwrite_and_never_overwrite_input(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "photos"
    for i in range(3):
        save(src / f"p{i}.png", Image.fromarray(rgb8(6, 8, seed=i)))
    out = tmp_path / "out"
    args = ["upscale", str(src), str(out), "--weights", str(tiny_weights), "--no-tags", "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == EXIT_OK and [r["status"] for r in records(first)] == ["ok"] * 3
    (out / "p1.png").unlink()  # as if the first run had stopped before p1
    stamp = (out / "p0.png").stat().st_mtime_ns
    second = CliRunner().invoke(app, args)
    assert [r["status"] for r in records(second)] == ["skipped", "ok", "skipped"]
    assert (out / "p0.png").stat().st_mtime_ns == stamp
    third = CliRunner().invoke(app, [*args, "--overwrite"])
    assert [r["status"] for r in records(third)] == ["ok"] * 3
    # in place without a suffix would overwrite the inputs: refused per file, exit 2
    inplace = CliRunner().invoke(app, ["upscale", str(src), str(src), "--weights", str(tiny_weights), "--no-tags", "--json"])
    assert inplace.exit_code == EXIT_PARTIAL
    assert all("overwrite the input" in r["error"] for r in records(inplace))
    assert Image.open(src / "p0.png").size == (8, 6)
    # in place with a suffix works, and a rerun does not treat the outputs as new inputs
    for _ in range(2):
        res = CliRunner().invoke(app, ["upscale", str(src), str(src), "--suffix", "_x4", "--weights", str(tiny_weights), "--no-tags", "--json"])
        assert res.exit_code == EXIT_OK
        assert {Path(r["input"]).name for r in records(res)} == {"p0.png", "p1.png", "p2.png"}
    assert sorted(p.name for p in src.iterdir()) == ["p0.png", "p0_x4.png", "p1.png", "p1_x4.png", "p2.png", "p2_x4.png"]


def test_stdin_list_format_suffix_quality(tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    save(tmp_path / "a.png", Image.fromarray(rgb8(8, 8)))
    save(tmp_path / "sub" / "b.tif", Image.fromarray(rgb8(5, 9)))
    listing = "a.png\nsub/b.tif\n\nmissing.png\n"
    res = CliRunner().invoke(
        app,
        ["upscale", "-", "out", "--weights", str(tiny_weights), "--no-tags", "--json",
         "--format", "jpg", "--suffix", "-up", "--quality", "80"],
        input=listing,
    )
    assert res.exit_code == EXIT_PARTIAL
    recs = records(res)
    assert [r["status"] for r in recs] == ["ok", "ok", "failed"]
    assert recs[2]["error"] == "no such file"
    assert Image.open(tmp_path / "out" / "a-up.jpg").format == "JPEG"
    assert Image.open(tmp_path / "out" / "sub" / "b-up.jpg").size == (36, 20)
    res = CliRunner().invoke(app, ["upscale", "a.png", "out2", "--weights", str(tiny_weights), "--no-tags", "--format", "tiff"])
    assert res.exit_code == EXIT_OK
    assert Image.open(tmp_path / "out2" / "a.tif").format == "TIFF"


def test_exif_orientation_icc_and_exif_round_trip(tmp_path: Path, tiny_weights: Path) -> None:
    im = Image.fromarray(rgb8(6, 10))  # stored 10 wide, 6 high; orientation 6 = rotate to 6 x 10
    exif = im.getexif()
    exif[ORIENTATION_TAG] = 6
    exif[0x010F] = "LinearSR test camera"
    src = save(tmp_path / "cam.jpg", im, quality=95, exif=exif.tobytes(), icc_profile=SRGB)
    res = run([str(src), str(tmp_path / "out")], tiny_weights)
    assert res.exit_code == EXIT_OK
    out = Image.open(tmp_path / "out" / "cam.jpg")
    assert out.size == (24, 40)  # 4 x the upright 6 x 10
    assert out.info["icc_profile"] == SRGB
    ex = out.getexif()
    assert ex[ORIENTATION_TAG] == 1 and ex[0x010F] == "LinearSR test camera"


def test_modes_bit_depth_and_alpha(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    arr16 = (synthetic_photo(5, 7) * 65535).astype(np.uint16)
    (src / "deep.png").write_bytes(png16_bytes(arr16))
    rgba = Image.fromarray(rgb8(6, 6)).convert("RGBA")
    alpha = np.zeros((6, 6), np.uint8)
    alpha[:, 3:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    save(src / "alpha.png", rgba)
    pal = Image.fromarray(rgb8(6, 6)).quantize(8)
    save(src / "pal.png", pal, transparency=0)
    save(src / "gray.png", Image.fromarray(rgb8(6, 6)[..., 0]))
    save(src / "cmyk.jpg", Image.fromarray(rgb8(8, 8)).convert("CMYK"), quality=95)
    save(src / "old.bmp", Image.fromarray(rgb8(4, 4)))
    res = run([str(src), str(tmp_path / "out")], tiny_weights)
    assert res.exit_code == EXIT_OK, res.output
    out = tmp_path / "out"
    deep = Image.open(out / "deep.png")
    assert deep.size == (28, 20) and ";16" in str(deep.tile[0].args)  # 16 bits kept
    a = Image.open(out / "alpha.png")
    assert a.mode == "RGBA"
    alpha_up = np.asarray(a)[..., 3]
    assert alpha_up[:, :8].max() < 40 and alpha_up[:, 16:].min() > 215  # alpha upscaled and kept
    assert Image.open(out / "pal.png").mode == "RGBA"
    assert Image.open(out / "gray.png").mode == "L"
    assert Image.open(out / "cmyk.jpg").mode == "RGB"
    assert Image.open(out / "old.bmp").size == (16, 16)


def test_exit_codes_and_setup_errors(tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = save(tmp_path / "a.png", Image.fromarray(rgb8(4, 4)))
    runner = CliRunner()
    assert runner.invoke(app, ["upscale", str(src), str(tmp_path / "o"), "--bogus"]).exit_code == EXIT_USAGE
    assert run([str(tmp_path / "nope.png"), str(tmp_path / "o")], tiny_weights).exit_code == EXIT_USAGE
    assert run([str(src), str(tmp_path / "o"), "--format", "gif"], tiny_weights).exit_code == EXIT_USAGE
    assert run([str(src), str(tmp_path / "o"), "--scale", "2"], tiny_weights).exit_code == EXIT_USAGE
    assert run([str(src), str(tmp_path / "o"), "--device", "cuda" if not _cuda() else "tpu"], tiny_weights).exit_code == EXIT_USAGE
    assert run([str(src), str(tmp_path / "o"), "--tile", "big"], tiny_weights).exit_code == EXIT_USAGE
    # no weights installed: a plain message on how to get them, exit 1, nothing written
    monkeypatch.delenv("LINEARSR_WEIGHTS", raising=False)
    monkeypatch.setattr(checkpoints_mod, "default_weights_path", lambda scale=4: tmp_path / "weights" / f"linearsr-x{scale}.safetensors")
    res = runner.invoke(app, ["upscale", str(src), str(tmp_path / "o2"), "--no-tags"])
    assert res.exit_code == EXIT_USAGE
    assert "no x4 LinearSR weights are installed" in res.output and "linearsr train" in res.output
    assert "git checkout weights/" in res.output and str(tmp_path / "weights") in res.output
    assert not (tmp_path / "o2").exists()
    report = json.loads(runner.invoke(app, ["info", "--json"]).stdout)  # info names the missing shipped files
    assert [(e["file"], e["present"]) for e in report["shipped_weights"]] == [
        ("linearsr-x2.safetensors", False), ("linearsr-x4.safetensors", False)]
    assert all("git checkout weights/" in e["router"] for e in report["shipped_weights"])
    monkeypatch.setenv("LINEARSR_WEIGHTS", str(tiny_weights))
    assert runner.invoke(app, ["upscale", str(src), str(tmp_path / "o3"), "--no-tags", "-q"]).exit_code == EXIT_OK


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_quiet_prints_only_failures_and_rich_mode_runs(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "in"
    save(src / "ok.png", Image.fromarray(rgb8(4, 4)))
    (src / "bad.png").write_bytes(b"\x89PNG broken")
    res = CliRunner().invoke(app, ["upscale", str(src), str(tmp_path / "o"), "--weights", str(tiny_weights), "--no-tags", "--quiet"])
    assert res.exit_code == EXIT_PARTIAL
    assert res.stdout == ""
    assert "bad.png" in res.stderr and "ok.png" not in res.stderr
    res = CliRunner().invoke(app, ["upscale", str(src), str(tmp_path / "o2"), "--weights", str(tiny_weights), "--no-tags",
                                   "--preset", "perceptual", "--solver", "heun", "--steps", "2", "--tile", "32", "--tile-overlap", "8"])
    assert res.exit_code == EXIT_PARTIAL
    assert "1 upscaled" in res.stderr and "1 failed" in res.stderr


def test_seed_is_deterministic_and_changes_output(tmp_path: Path, tiny_weights: Path) -> None:
    src = save(tmp_path / "a.png", Image.fromarray(rgb8(8, 8)))
    outs = []
    for name, seed in [("s1", 1), ("s1b", 1), ("s2", 2)]:
        assert run([str(src), str(tmp_path / name), "--seed", str(seed)], tiny_weights).exit_code == EXIT_OK
        outs.append(np.asarray(Image.open(tmp_path / name / "a.png")))
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])


def test_tags_from_cli_are_encoded_and_recorded(tmp_path: Path, tiny_weights: Path) -> None:
    src = save(tmp_path / "a.png", Image.fromarray(rgb8(8, 8)))
    res = CliRunner().invoke(app, ["upscale", str(src), str(tmp_path / "o"), "--weights", str(tiny_weights), "--tags", "cat", "--json"])
    assert res.exit_code == EXIT_OK, res.output
    (rec,) = records(res)
    assert rec["tags"] == ["cat"] and rec["tag_source"] == "cli"
    plain = run([str(src), str(tmp_path / "o2")], tiny_weights)
    assert plain.exit_code == EXIT_OK
    with_tag = np.asarray(Image.open(tmp_path / "o" / "a.png"), dtype=np.int16)
    without = np.asarray(Image.open(tmp_path / "o2" / "a.png"), dtype=np.int16)
    assert np.abs(with_tag - without).max() > 0  # the tag tokens reach the cross-attention


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out" / "x.png"

    def boom(fd: int) -> None:
        raise KeyboardInterrupt  # Ctrl-C / SIGTERM arriving in the middle of the write

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        batch_mod.atomic_write(target, b"\x89PNG" + bytes(100_000))
    assert not target.exists() and list(target.parent.iterdir()) == []
    monkeypatch.undo()
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(ImageWriteError):
        batch_mod.atomic_write(tmp_path / "blocker" / "y.png", b"data")


def test_sigkill_mid_batch_leaves_only_whole_files_and_rerun_resumes(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "in"
    for i in range(6):
        save(src / f"p{i}.png", Image.fromarray(rgb8(48, 64, seed=i)))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "linearsr_cli", "upscale", str(src), str(out), "--weights", str(tiny_weights),
           "--no-tags", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and any(out.glob("p*.png"))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in out.glob("p*.png"))
    assert 0 < len(done)
    for name in done:  # everything under a final name is a complete image
        with Image.open(out / name) as im:
            im.load()
            assert im.size == (256, 192)
    rerun = subprocess.run([*cmd[:-1], "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == EXIT_OK, rerun.stderr
    statuses = {Path(r["input"]).name: r["status"] for r in map(json.loads, rerun.stdout.splitlines())}
    assert all(statuses[n] == "skipped" for n in done)
    assert sum(s == "ok" for s in statuses.values()) == 6 - len(done)
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}.png" for i in range(6)]  # no temp files left


def test_info_lists_versions_devices_and_weights(tiny_weights: Path) -> None:
    res = CliRunner().invoke(app, ["info", "--weights", str(tiny_weights), "--json"])
    assert res.exit_code == EXIT_OK
    report = json.loads(res.stdout)
    assert report["torch"] and "cpu" in report["devices"]
    assert report["weights"]["scale"] == 4 and report["weights"]["experts"] == 4
    assert report["auto_dtype"]["cpu"] == ("bfloat16" if report["cpu"]["bf16"] else "fp32")
    assert report["cpu"]["capability"] and report["cpu"]["why"].endswith(("bf16", "fp32"))
    assert report["cpu"]["prior_backend"] in ("torch", "ncnn") and report["cpu"]["prior_backend_why"]
    shipped = {e["file"]: e for e in report["shipped_weights"]}
    assert set(shipped) == {"linearsr-x2.safetensors", "linearsr-x4.safetensors"}
    for entry in shipped.values():  # each shipped file says whether it has a router
        if entry["present"]:
            assert entry["router"].startswith("router fitted") == entry["has_router"]
    text = CliRunner().invoke(app, ["info", "--weights", str(tiny_weights)])
    assert "devices: cpu" in text.stdout and "experts: 4" in text.stdout
    assert "linearsr-x4.safetensors: x4" in text.stdout


def test_describe_router_names_fitted_and_fixed_runs() -> None:
    from linearsr_cli.engine.info import describe_router

    assert describe_router(None).startswith("no router")
    line = describe_router({"fitted": {"crops": 800}, "fixed": {"1-step": "real"}})
    assert line == "router fitted on 800 crops; auto fixed to 'real' for 1-step runs"
    blend = {"slope": 2.0, "offset": -0.5, "snap": 0.1, "runs": ["1-step"]}
    assert describe_router({"fitted": {"crops": 800}, "blend": blend}).endswith("blends both priors when unsure (1-step runs)")
    assert describe_router({"fitted": {}, "multi_step": {"bias": 0.0}}).endswith("a gate of its own for multi-step runs")


def test_input_picks_the_prior_and_is_recorded(tmp_path: Path, tiny_weights: Path) -> None:
    """--input clean|real chooses the structure expert's prior; weights without a prior refuse a
    named input before touching any file; auto takes the first prior (clean)."""
    from linearsr_cli.checkpoints import save_weights
    from tests.util import random_model, tiny_model_config

    cfg = tiny_model_config(prior_channels=6, prior_blocks=1).with_prior(("clean", "real"), (0,))
    model = random_model(cfg, seed=5)
    provenance = {n: {"origin": "test", "licence": "Apache-2.0"} for n in ("clean", "real")}
    weights = save_weights(tmp_path / "prior.safetensors", model, priors=provenance)
    src = save(tmp_path / "in" / "a.png", Image.fromarray(rgb8(12, 10)))
    outs = {}
    for kind in ("clean", "real", "auto"):
        res = CliRunner().invoke(app, ["upscale", str(src), str(tmp_path / kind), "--weights", str(weights),
                                       "--no-tags", "--json", "--input", kind])
        assert res.exit_code == EXIT_OK, res.output
        (rec,) = records(res)
        assert rec["input_kind"] == ("clean" if kind == "auto" else kind)
        outs[kind] = np.asarray(Image.open(tmp_path / kind / "a.png"))
    assert not np.array_equal(outs["clean"], outs["real"]) and np.array_equal(outs["clean"], outs["auto"])
    res = CliRunner().invoke(app, ["upscale", str(src), str(tmp_path / "x"), "--weights", str(tiny_weights),
                                   "--no-tags", "--input", "real"])
    assert res.exit_code == EXIT_USAGE and "no prior" in res.output and not (tmp_path / "x").exists()
    res = CliRunner().invoke(app, ["upscale", str(src), str(tmp_path / "y"), "--weights", str(weights), "--input", "noisy"])
    assert res.exit_code == EXIT_USAGE and "--input" in res.output


def test_help_panels_and_one_name_for_no_tags() -> None:
    """Ablation and many-machine options sit in their own --help panels; --tags off is the one
    spelling shown (the hidden --no-tags still works, see run() above)."""
    # COLUMNS only: typer reads TERMINAL_WIDTH once, when its rich_utils is first imported, and
    # a width set here would stay for every later --help in this process (the 80-column test)
    env = {"COLUMNS": "200"}
    up = CliRunner().invoke(app, ["upscale", "--help"], env=env).output
    assert "Many machines" in up and "--ray-actors" in up and "--no-tags" not in up and "--tags" in up
    assert "Ablations" in CliRunner().invoke(app, ["train", "recipe", "--help"], env=env).output
    stage2 = CliRunner().invoke(app, ["train", "stage2", "--help"], env=env).output
    assert "Ablations" in stage2 and "--tag-kind" in stage2 and "--experts" in stage2
