"""`linearsr upscale` from shell scripts: reruns that know their settings, no input, an OUT that
cannot be written, plain log lines in pipes and --log, a closed pipe, NUL lists, HEIC/AVIF,
--fit, the canvas guard and help texts that survive rich markup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from linearsr_cli import imageio
from linearsr_cli.cli import EXIT_BROKEN_PIPE, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, app
from linearsr_cli.engine import record as settings_record
from linearsr_cli.imageio import ImageData, encode_image, read_record
from tests.conftest import synthetic_photo

REPO = Path(__file__).resolve().parents[1]


def rgb8(h: int, w: int, seed: int = 0) -> np.ndarray:
    return (synthetic_photo(h, w, seed) * 255).round().astype(np.uint8)


def folder(root: Path, n: int = 3, size: tuple[int, int] = (6, 8)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rgb8(*size, seed=i)).save(root / f"p{i}.png")
    return root


def upscale(args: list[str], weights: Path, **kwargs: object):
    return CliRunner().invoke(app, ["upscale", *args, "--weights", str(weights), "--tags", "off"], **kwargs)


def records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


# ----------------------------------------------------------------------------- reruns


def test_stale_outputs_of_another_size_are_redone_and_same_ones_skipped(tmp_path: Path, tiny_weights: Path) -> None:
    src, out = folder(tmp_path / "in"), tmp_path / "out"
    first = upscale([str(src), str(out), "--outscale", "2", "--json"], tiny_weights)
    assert first.exit_code == EXIT_OK and {r["status"] for r in records(first)} == {"ok"}
    assert Image.open(out / "p0.png").size == (16, 12)
    doc = settings_record.loads(read_record(out / "p0.png"))
    assert doc["settings"]["size"]["outscale"] == 2.0 and doc["settings"]["input"] == "auto"
    assert doc["settings"]["models"]["x4"].startswith("sha256:") and doc["image"]["passes"] == [4]
    # a later run at x4 redoes the stale x2 outputs (not "skipped (output exists)")
    second = upscale([str(src), str(out), "--json"], tiny_weights)
    recs = records(second)
    assert second.exit_code == EXIT_OK and [r["status"] for r in recs] == ["ok"] * 3
    assert all("size.outscale: 2.0 -> null" in r["note"] for r in recs)
    assert Image.open(out / "p0.png").size == (32, 24)
    # the same settings again: skipped, files untouched
    stamp = (out / "p1.png").stat().st_mtime_ns
    third = upscale([str(src), str(out), "--json"], tiny_weights)
    assert [r["status"] for r in records(third)] == ["skipped"] * 3
    assert (out / "p1.png").stat().st_mtime_ns == stamp
    # other settings with --keep-existing: kept and reported, exit 0
    kept = upscale([str(src), str(out), "--json", "--seed", "7", "--keep-existing"], tiny_weights)
    assert kept.exit_code == EXIT_OK and [r["status"] for r in records(kept)] == ["kept"] * 3
    assert "seed: 0 -> 7" in records(kept)[0]["note"]
    assert (out / "p1.png").stat().st_mtime_ns == stamp


def test_outputs_without_a_record_are_conflicts(tmp_path: Path, tiny_weights: Path) -> None:
    src, out = folder(tmp_path / "in", n=2), tmp_path / "out"
    out.mkdir()
    Image.fromarray(rgb8(24, 32, seed=9)).save(out / "p0.png")  # made by another tool
    before = (out / "p0.png").read_bytes()
    res = upscale([str(src), str(out), "--json"], tiny_weights)
    assert res.exit_code == EXIT_PARTIAL
    recs = {Path(r["input"]).name: r for r in records(res)}
    assert recs["p0.png"]["status"] == "conflict" and "--overwrite" in recs["p0.png"]["note"]
    assert recs["p1.png"]["status"] == "ok"
    assert (out / "p0.png").read_bytes() == before
    quiet = upscale([str(src), str(out), "--quiet"], tiny_weights)
    assert quiet.exit_code == EXIT_PARTIAL and "conflict: " in quiet.stderr
    keep = upscale([str(src), str(out), "--json", "--keep-existing"], tiny_weights)
    assert keep.exit_code == EXIT_OK and [r["status"] for r in records(keep)] == ["kept", "skipped"]
    over = upscale([str(src), str(out), "--json", "--overwrite"], tiny_weights)
    assert over.exit_code == EXIT_OK and [r["status"] for r in records(over)] == ["ok", "ok"]
    assert read_record(out / "p0.png") is not None
    both = upscale([str(src), str(out), "--overwrite", "--keep-existing"], tiny_weights)
    assert both.exit_code == EXIT_USAGE and "contradict" in both.stderr


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "tiff", "heic", "avif"])
@pytest.mark.parametrize("depth", [8, 16])
def test_every_format_carries_the_record_and_pixels_do_not_change(tmp_path: Path, fmt: str, depth: int) -> None:
    rgb = np.asarray(rgb8(8, 10), dtype=np.float32) / 255
    img = ImageData(rgb=__import__("torch").from_numpy(rgb.transpose(2, 0, 1).copy()), alpha=None, gray=False,
                    bit_depth=depth, format=fmt)
    text = settings_record.dumps({"seed": 1, "input": "some-future-prior"}, {"prior": None})
    plain, marked = encode_image(img, fmt), encode_image(img, fmt, record=text)
    (tmp_path / f"a.{fmt}").write_bytes(marked)
    assert read_record(tmp_path / f"a.{fmt}") == text
    if fmt not in ("jpg", "webp", "heic", "avif"):  # lossless: the pixels are the same whatever the record
        assert np.array_equal(imageio.decode_image(plain).rgb.numpy(), imageio.decode_image(marked).rgb.numpy())


# ----------------------------------------------------------------------------- setup failures


def test_no_input_found_exits_1_and_lists_ignored_files(tmp_path: Path, tiny_weights: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = upscale([str(tmp_path / "empty"), str(tmp_path / "out")], tiny_weights)
    assert res.exit_code == EXIT_USAGE and "no input found" in res.stderr
    other = tmp_path / "docs"
    other.mkdir()
    (other / "a.txt").write_text("x")
    (other / "b.xcf").write_bytes(b"gimp")
    res = upscale([str(other), str(tmp_path / "out"), "--json"], tiny_weights)
    assert res.exit_code == EXIT_USAGE and ".xcf" in res.stderr
    assert sorted((Path(r["input"]).name, r["status"]) for r in records(res)) == [("a.txt", "ignored"), ("b.xcf", "ignored")]
    assert not (tmp_path / "out").exists()
    res = upscale(["-", str(tmp_path / "out")], tiny_weights, input="\n# nothing\n")
    assert res.exit_code == EXIT_USAGE and "no input found" in res.stderr


def test_out_that_cannot_be_written_fails_before_the_first_image(tmp_path: Path, tiny_weights: Path) -> None:
    src = folder(tmp_path / "in", n=1)
    a_file = tmp_path / "taken"
    a_file.write_text("a file, not a folder")
    for out, words in [(a_file, "is a file"), (Path("/proc/linearsr-test/out"), "cannot create OUT"),
                       (Path("/proc/self/out"), "cannot")]:
        res = upscale([str(src), str(out), "--json"], tiny_weights)
        assert res.exit_code == EXIT_USAGE, (out, res.output)
        assert words in res.stderr and records(res) == []
    if os.geteuid() != 0:  # root writes into read-only folders; the cases above hold for everyone
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        res = upscale([str(src), str(ro)], tiny_weights)
        assert res.exit_code == EXIT_USAGE and "cannot write" in res.stderr


def test_tile_is_parsed_before_the_run(tmp_path: Path, tiny_weights: Path) -> None:
    src = folder(tmp_path / "in", n=1)
    res = upscale([str(src), str(tmp_path / "out"), "--tile", "big"], tiny_weights)
    assert res.exit_code == EXIT_USAGE and "--tile must be auto or a number" in res.stderr
    assert not (tmp_path / "out").exists()
    res = upscale([str(src), str(tmp_path / "out"), "--fit", "zoom"], tiny_weights)
    assert res.exit_code == EXIT_USAGE and "--fit must be one of" in res.stderr and "--tile" not in res.stderr


def test_canvas_guard_fails_that_file_and_the_batch_goes_on(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rgb8(4, 4)).save(src / "small.png")
    Image.fromarray(rgb8(20, 30)).save(src / "big.png")
    res = upscale([str(src), str(tmp_path / "out"), "--outscale", "16", "--max-canvas", "120000", "--json"], tiny_weights)
    assert res.exit_code == EXIT_PARTIAL
    recs = {Path(r["input"]).name: r for r in records(res)}
    assert recs["small.png"]["status"] == "ok" and recs["small.png"]["passes"] == [4, 4]
    assert recs["big.png"]["status"] == "failed" and "x4 then x4" in recs["big.png"]["error"]
    assert "--max-canvas" in recs["big.png"]["error"] and not (tmp_path / "out" / "big.png").exists()


def test_fit_contain_cover_stretch_and_aspect_warning(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(rgb8(10, 20)).save(src)  # 20 x 10
    sizes = {}
    for fit in ("contain", "cover", "stretch"):
        out = tmp_path / f"{fit}.png"
        res = upscale([str(src), str(out), "--width", "40", "--height", "40", "--fit", fit, "--json"], tiny_weights)
        assert res.exit_code == EXIT_OK, res.output
        rec = records(res)[0]
        assert rec["warnings"] and "aspect ratio" in rec["warnings"][0]
        sizes[fit] = Image.open(out).size
    assert sizes == {"contain": (40, 20), "cover": (40, 40), "stretch": (40, 40)}
    res = upscale([str(src), str(tmp_path / "w.png"), "--width", "40", "--height", "20", "--json"], tiny_weights)
    assert records(res)[0]["warnings"] == []
    res = upscale([str(src), str(tmp_path / "log.png"), "--width", "40", "--height", "40"], tiny_weights)
    assert "warning: " in res.stderr and "aspect ratio" in res.stderr


# ----------------------------------------------------------------------------- logs and pipes


def test_plain_lines_when_stderr_is_not_a_terminal_and_log_file(tmp_path: Path, tiny_weights: Path) -> None:
    src = folder(tmp_path / "in", n=2)
    (src / "bad.png").write_bytes(b"not a png")
    log = tmp_path / "run.log"
    long_out = tmp_path / ("o" * 150)  # long paths are never wrapped
    res = upscale([str(src), str(long_out), "--log", str(log)], tiny_weights)
    assert res.exit_code == EXIT_PARTIAL
    lines = res.stderr.splitlines()
    assert lines[0].startswith(f"failed: {src / 'bad.png'}: ")  # the --quiet prefix
    assert lines[1].startswith(f"ok    {src / 'p0.png'} -> {long_out / 'p0.png'}  ") and lines[1].endswith("s")
    assert lines[-1].startswith("2 upscaled, 0 skipped") and lines[-1].endswith("1 failed")
    assert len(lines) == 4 and "\x1b" not in res.stderr  # no progress bar, no colour
    assert log.read_text().splitlines() == lines
    again = upscale([str(src), str(long_out), "--log", str(log), "--json"], tiny_weights)  # --log appends
    assert log.read_text().splitlines()[4].startswith("failed: ")
    assert log.read_text().splitlines()[5].startswith("skip  ")
    assert again.exit_code == EXIT_PARTIAL


def test_closed_pipe_stops_quietly_with_141(tmp_path: Path, tiny_weights: Path) -> None:
    src = folder(tmp_path / "in", n=8)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "linearsr_cli", "upscale", str(src), str(tmp_path / "out"), "--weights",
           str(tiny_weights), "--tags", "off", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE, err
    assert json.loads(first)["status"] == "ok"
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
    assert not list((tmp_path / "out").glob(".*"))  # no temp file left


# ----------------------------------------------------------------------------- lists on stdin


def test_null_separated_list_and_the_stdin_output_rule(tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    (photos / "b").mkdir()
    odd = photos / "a" / "two\nlines and spaces.png"  # only -0 can carry this name
    Image.fromarray(rgb8(5, 6)).save(odd)
    Image.fromarray(rgb8(6, 5)).save(photos / "b" / "x.png")
    listing = b"\0".join(os.fsencode(p) for p in (odd, photos / "b" / "x.png")) + b"\0"
    for cwd in (tmp_path, photos / "b"):  # the rule does not depend on the current folder
        monkeypatch.chdir(cwd)
        out = tmp_path / f"out-{cwd.name}"
        res = upscale(["-", str(out), "-0", "--json"], tiny_weights, input=listing)
        assert res.exit_code == EXIT_OK, res.output
        assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a/two\nlines and spaces.png", "b/x.png"]
    # relative names too: mirrored under OUT relative to the deepest folder holding them all
    monkeypatch.chdir(tmp_path)
    res = upscale(["-", "rel", "--json"], tiny_weights, input="photos/b/x.png\n")
    assert res.exit_code == EXIT_OK and (tmp_path / "rel" / "x.png").is_file()
    # two inputs on one output: the second is reported, the first done
    Image.fromarray(rgb8(5, 5)).save(photos / "b" / "x.jpg")
    res = upscale(["-", "col", "--json", "--format", "png"], tiny_weights,
                  input=f"{photos / 'b' / 'x.png'}\n{photos / 'b' / 'x.jpg'}\n")
    assert res.exit_code == EXIT_PARTIAL
    assert [r["status"] for r in records(res)] == ["ok", "failed"] and "collides" in records(res)[1]["error"]
    res = upscale([str(photos), "x", "-0"], tiny_weights)
    assert res.exit_code == EXIT_USAGE and "give - as IN" in res.stderr


# ----------------------------------------------------------------------------- HEIC / AVIF


@pytest.mark.parametrize("ext", ["heic", "avif"])
def test_heic_and_avif_in_and_out_with_exif(tmp_path: Path, tiny_weights: Path, ext: str) -> None:
    assert imageio.heif_available() and imageio.avif_available()
    src = tmp_path / f"phone.{ext}"
    exif = Image.Exif()
    exif[0x010F] = "LinearSR test camera"  # Make
    Image.fromarray(rgb8(12, 10)).save(src, format="HEIF" if ext == "heic" else "AVIF", quality=90, exif=exif.tobytes())
    res = upscale([str(src), str(tmp_path / "out"), "--json"], tiny_weights)
    assert res.exit_code == EXIT_OK, res.output
    out = tmp_path / "out" / src.name
    with Image.open(out) as im:
        assert im.size == (40, 48) and im.getexif().get(0x010F) == "LinearSR test camera"
    assert settings_record.loads(read_record(out)) is not None
    again = upscale([str(src), str(tmp_path / "out"), "--json"], tiny_weights)
    assert records(again)[0]["status"] == "skipped"
    res = upscale([str(src), str(tmp_path / "png"), "--format", "png"], tiny_weights)
    assert res.exit_code == EXIT_OK and Image.open(tmp_path / "png" / "phone.png").size == (40, 48)


def test_missing_heif_extra_is_named(tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in"
    src.mkdir()
    import pillow_heif

    pillow_heif.from_pillow(Image.fromarray(rgb8(8, 8))).save(src / "a.heic", quality=90)
    monkeypatch.setattr(imageio, "heif_available", lambda: False)
    res = upscale([str(src), str(tmp_path / "out"), "--json"], tiny_weights)
    assert res.exit_code == EXIT_PARTIAL
    assert "pillow-heif is not installed" in records(res)[0]["error"] and "[heif]" in records(res)[0]["error"]


# ----------------------------------------------------------------------------- help texts


def test_help_texts_survive_rich_markup() -> None:
    """Every option help renders with its [brackets] (rich eats an unescaped [ray])."""
    from rich.text import Text
    from typer.main import get_command

    from linearsr_cli.cli import app as the_app

    group = get_command(the_app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            text = getattr(param, "help", None) or ""
            shown = Text.from_markup(text).plain
            assert shown == text.replace("\\[", "["), (name, param.name, text)
    res = CliRunner().invoke(app, ["upscale", "--help"], env={"COLUMNS": "400"})
    assert "Needs the [ray] extra" in res.stdout


# ----------------------------------------------------------------------------- the I/O pipeline


def _batch(tiny_weights: Path, src: Path, out: Path):
    from linearsr_cli.config import TileConfig, sampler_config
    from linearsr_cli.engine.batch import load_batch
    from linearsr_cli.engine.plan import OutputConfig, UpscaleRequest, prepare
    from linearsr_cli.tag.config import TagConfig

    req = UpscaleRequest(source=str(src), out=out, weights=tiny_weights, scale=None, sampler=sampler_config(),
                         tiles=TileConfig(), output=OutputConfig(), tags=TagConfig(enabled=False), device="cpu")
    plan = prepare(req)
    return load_batch(req, plan), plan.jobs


class _Collect:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def start(self, total: int) -> None:
        pass

    def image_start(self, job, index: int) -> None:
        self.events.append(("start", job.input.name))

    def image_progress(self, done: int, total: int) -> None:
        pass

    def image_done(self, record) -> None:
        self.events.append(("done", Path(record.input).name))

    def finish(self, summary) -> None:
        pass


def test_pipeline_keeps_order_and_bytes_and_bounds_what_is_in_flight(tmp_path: Path, tiny_weights: Path) -> None:
    import threading

    src = folder(tmp_path / "in", n=7)
    (src / "p3.png").write_bytes(b"broken")
    batch, jobs = _batch(tiny_weights, src, tmp_path / "a")
    decoded, peak, lock = [0], [0], threading.Lock()
    read, compute = batch.read, batch.compute

    def counting_read(job):
        got = read(job)
        with lock:
            decoded[0] += got.image is not None
            peak[0] = max(peak[0], decoded[0])
        return got

    def counting_compute(item, progress=None):
        with lock:
            decoded[0] -= 1
        return compute(item, progress)

    batch.read, batch.compute = counting_read, counting_compute
    seen = _Collect()
    summary = batch.run(jobs, seen, prefetch=2)
    names = [f"p{i}.png" for i in range(7)]
    assert [Path(r.input).name for r in summary.records] == names
    assert [n for kind, n in seen.events if kind == "done"] == names
    assert [r.status for r in summary.records] == ["ok"] * 3 + ["failed"] + ["ok"] * 3
    assert peak[0] <= 3  # the one the model holds + 2 read ahead
    serial_batch, serial_jobs = _batch(tiny_weights, src, tmp_path / "b")
    serial_batch.run(serial_jobs, _Collect(), prefetch=0)
    for name in names[:3] + names[4:]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_pipeline_interrupted_leaves_only_whole_files(tmp_path: Path, tiny_weights: Path) -> None:
    src = folder(tmp_path / "in", n=6)
    out = tmp_path / "out"
    batch, jobs = _batch(tiny_weights, src, out)
    compute, calls = batch.compute, [0]

    def interrupted(item, progress=None):
        calls[0] += 1
        if calls[0] == 4:
            raise KeyboardInterrupt
        return compute(item, progress)

    batch.compute = interrupted
    with pytest.raises(KeyboardInterrupt):
        batch.run(jobs, _Collect(), prefetch=2)
    written = sorted(p.name for p in out.iterdir())
    assert not [n for n in written if n.startswith(".")]  # no temp file
    for name in written:
        with Image.open(out / name) as im:
            im.load()
            assert im.size == (32, 24)
    assert set(written) <= {"p0.png", "p1.png", "p2.png"}
