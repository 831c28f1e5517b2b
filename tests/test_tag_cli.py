"""`linearsr tag` through Typer's CliRunner: table, JSON lines, sidecars, stdin lists, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image
from typer.testing import CliRunner

from linearsr_cli.cli import app
from linearsr_cli.tag.sources import read_sidecar, sidecar_path

runner = CliRunner()


def quarter(name: str) -> Image.Image:
    im = Image.fromarray(getattr(skimage.data, name)())
    return im.resize((im.width // 4, im.height // 4), Image.Resampling.BICUBIC)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "pets").mkdir()
    quarter("chelsea").save(tmp_path / "pets" / "chelsea.png")
    quarter("coffee").save(tmp_path / "coffee.jpg", quality=92)
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    sidecar_path(tmp_path / "grey.png").write_text("fog, grey sky\n", encoding="utf-8")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return tmp_path


def records(output: str) -> dict[str, dict]:
    rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {Path(r["path"]).name: r for r in rows}


def test_json_records_and_partial_exit(folder: Path) -> None:
    result = runner.invoke(app, ["tag", str(folder), "--json", "--device", "cpu"])
    assert result.exit_code == 2, result.output  # one unreadable image
    recs = records(result.stdout)
    assert set(recs) == {"chelsea.png", "coffee.jpg", "grey.png", "broken.png"}
    assert recs["chelsea.png"]["source"] == "tagger"
    assert any("cat" in t for t in recs["chelsea.png"]["tags"])
    assert len(recs["chelsea.png"]["scores"]) == len(recs["chelsea.png"]["tags"])
    assert any(t in ("espresso", "cup") for t in recs["coffee.jpg"]["tags"])
    assert recs["grey.png"] == {"path": str(folder / "grey.png"), "tags": ["fog", "grey sky"], "source": "sidecar"}
    assert "error" in recs["broken.png"] and "broken.png" in result.stderr


def test_table_output(folder: Path) -> None:
    (folder / "broken.png").unlink()
    result = runner.invoke(app, ["tag", str(folder / "pets" / "chelsea.png"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "chelsea.png" in result.stdout and "tagger" in result.stdout and "cat" in result.stdout


def test_write_sidecars_never_clobbers_unless_told(folder: Path) -> None:
    (folder / "broken.png").unlink()
    result = runner.invoke(app, ["tag", str(folder), "--json", "--write-sidecars"])
    assert result.exit_code == 0, result.output
    recs = records(result.stdout)
    assert recs["chelsea.png"]["sidecar"] == "written" and recs["grey.png"]["sidecar"] == "kept"
    assert read_sidecar(folder / "pets" / "chelsea.png") == tuple(recs["chelsea.png"]["tags"])
    assert read_sidecar(folder / "grey.png") == ("fog", "grey sky")
    # the user edits a sidecar; the next run reads it back instead of the tagger
    sidecar_path(folder / "coffee.jpg").write_text("latte art, saucer\n", encoding="utf-8")
    again = records(runner.invoke(app, ["tag", str(folder / "coffee.jpg"), "--json"]).stdout)
    assert again["coffee.jpg"]["tags"] == ["latte art", "saucer"]
    assert again["coffee.jpg"]["source"] == "sidecar"
    # --fresh --overwrite regenerates from the tagger
    result = runner.invoke(app, ["tag", str(folder / "grey.png"), "--json", "--write-sidecars", "--overwrite", "--fresh"])
    assert result.exit_code == 0
    rec = records(result.stdout)["grey.png"]
    assert rec["source"] == "tagger" and rec["sidecar"] == "written"
    assert read_sidecar(folder / "grey.png") == tuple(rec["tags"])


def test_stdin_list_and_missing_entries(folder: Path) -> None:
    listing = f"{folder / 'grey.png'}\n\n# comment\n{folder / 'missing.png'}\n"
    result = runner.invoke(app, ["tag", "-", "--json"], input=listing)
    assert result.exit_code == 2
    recs = records(result.stdout)
    assert recs["grey.png"]["source"] == "sidecar" and "error" in recs["missing.png"]


def test_bad_sidecar_is_reported_and_skipped(folder: Path) -> None:
    sidecar_path(folder / "grey.png").write_bytes("brûlé".encode("latin-1"))
    result = runner.invoke(app, ["tag", str(folder / "grey.png"), "--json"])
    assert result.exit_code == 2
    assert "not UTF-8" in records(result.stdout)["grey.png"]["error"]


@pytest.mark.parametrize(
    "args",
    [["tag", "/no/such/folder"], ["tag", ".", "--top-k", "0"], ["tag", ".", "--device", "tpu"]],
)
def test_usage_errors_exit_1(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "error:" in result.stderr
