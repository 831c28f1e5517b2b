"""Every output size: native x2/x4 weights picked by --scale, --outscale F and --width/--height
(native passes + an antialiased resample to the exact size), and --tta (the 8-transform
self-ensemble), on tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import linearsr_cli.checkpoints as checkpoints_mod
from linearsr_cli.checkpoints import save_weights
from linearsr_cli.cli import EXIT_OK, EXIT_USAGE, app
from linearsr_cli.config import SamplerConfig, TileConfig
from linearsr_cli.engine.device import plan_device
from linearsr_cli.engine.resize import (
    SizeRequest,
    linear_to_srgb,
    plan_passes,
    resample,
    srgb_to_linear,
)
from linearsr_cli.engine.tta import DIHEDRAL, apply, invert
from linearsr_cli.engine.upscaler import Upscaler
from linearsr_cli.errors import ConfigError
from linearsr_cli.imageio import png16_bytes, read_image
from linearsr_cli.sampling.samplers import draw_noise
from tests.conftest import synthetic_photo
from tests.util import random_model, tiny_model_config

# ----------------------------------------------------------------------------- pure planning


@pytest.mark.parametrize(
    ("factor", "natives", "passes"),
    [(2, (2, 4), (2,)), (1.5, (2, 4), (2,)), (3, (2, 4), (4,)), (4, (2, 4), (4,)), (6, (2, 4), (4, 2)),
     (8, (2, 4), (4, 2)), (16, (2, 4), (4, 4)), (0.5, (2, 4), (2,)), (2, (4,), (4,)), (6, (4,), (4, 4)),
     (3, (2,), (2, 2))],
)
def test_plan_passes_takes_the_smallest_product_at_least_the_factor(factor, natives, passes) -> None:
    assert plan_passes(factor, natives) == passes


def test_plan_passes_and_size_requests_refuse_the_impossible() -> None:
    with pytest.raises(ConfigError, match="more than 3 passes"):
        plan_passes(65, (2, 4))
    for bad in (dict(outscale=0), dict(outscale=-2), dict(outscale=float("nan")), dict(width=0),
                dict(outscale=2, width=10)):
        with pytest.raises(ConfigError):
            SizeRequest(**bad)


def test_size_request_targets() -> None:
    assert SizeRequest().target(13, 9, 4) == (52, 36)
    assert SizeRequest(outscale=1.5).target(13, 9, 4) == (20, 14)  # round(19.5) = 20, round(13.5) = 14
    assert SizeRequest(width=300).target(200, 100, 4) == (300, 150)
    assert SizeRequest(height=50).target(200, 100, 4) == (100, 50)
    assert SizeRequest(width=30, height=40, fit="stretch").target(200, 100, 4) == (30, 40)
    assert SizeRequest(width=30, height=40).target(200, 100, 4) == (30, 15)  # contain: inside the box
    assert SizeRequest(width=30, height=40, fit="cover").target(200, 100, 4) == (30, 40)
    assert SizeRequest(width=30, height=40, fit="cover").resize_and_crop(200, 100, 4) == ((80, 40), (25, 0, 55, 40))
    assert SizeRequest(width=30, height=40).aspect_differs(200, 100)
    assert not SizeRequest(width=400, height=200).aspect_differs(200, 100)


def test_resample_exact_size_linear_light_and_alpha() -> None:
    srgb = torch.rand(3, 17, 23)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(srgb)), srgb, atol=1e-5)
    flat = torch.full((3, 16, 16), 0.3)
    out, _ = resample(flat, None, (7, 5))
    assert out.shape == (3, 7, 5) and torch.allclose(out, flat[:, :7, :5], atol=1e-4)
    # a 1-px black/white checkerboard halved: 50 % light = sRGB 0.735, not the sRGB mean 0.5
    board = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2).float().expand(3, 16, 16)
    assert abs(resample(board, None, (8, 8))[0].mean().item() - 0.735) < 0.01
    assert abs(resample(board, None, (8, 8), linear_light=False)[0].mean().item() - 0.5) < 0.01
    # premultiplied: the colour of fully transparent pixels does not bleed into opaque ones
    rgb = torch.zeros(3, 16, 16)
    rgb[0, :, :8] = 1.0  # opaque red on the left
    rgb[1, :, 8:] = 1.0  # transparent green on the right
    alpha = torch.zeros(1, 16, 16)
    alpha[:, :, :8] = 1.0
    out, a = resample(rgb, alpha, (8, 8))
    assert a is not None and a.shape == (1, 8, 8)
    seen = a[0] > 0.05
    assert out[1][seen].max() < 1e-3 and out[0][seen].min() > 0.99


# ----------------------------------------------------------------------------- TTA


def test_dihedral_transforms_are_eight_distinct_invertible_maps() -> None:
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 2, 3, 5)
    images = {apply(x, g).numpy().tobytes() for g in DIHEDRAL}
    assert len(DIHEDRAL) == 8 and len(images) == 8
    for g in DIHEDRAL:
        assert torch.equal(invert(apply(x, g), g), x)


@pytest.mark.parametrize("steps", [1, 3])
def test_tta_equals_the_mean_of_the_eight_transformed_runs(steps: int) -> None:
    model = random_model(tiny_model_config(), seed=3, std=0.15)
    up = Upscaler(model, plan_device("cpu", "fp32"), TileConfig())
    lr = torch.from_numpy(synthetic_photo(9, 14).transpose(2, 0, 1).copy())  # odd, not square
    sampler = SamplerConfig(steps=steps, solver="euler", seed=5)
    noise = draw_noise((1, 3, 36, 56), sampler.seed)
    runs = [invert(up(apply(lr, g), sampler, noise=apply(noise, g))[None], g)[0] for g in DIHEDRAL]
    expected = torch.stack(runs).mean(dim=0)
    got = up(lr, sampler, tta=True)
    assert got.shape == (3, 36, 56)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, runs[0], atol=1e-3)  # the ensemble is not the plain run


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights/ folder with tiny x2 and x4 models, standing in for the shipped files."""
    root = tmp_path_factory.mktemp("shipped")
    for scale in (2, 4):
        save_weights(root / f"linearsr-x{scale}.safetensors", random_model(tiny_model_config(scale=scale), seed=scale, std=0.15))
    return root


@pytest.fixture()
def installed(shipped: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LINEARSR_WEIGHTS", raising=False)
    monkeypatch.setattr(checkpoints_mod, "default_weights_path", lambda scale=4: shipped / f"linearsr-x{scale}.safetensors")
    return shipped


def upscale(*args: str):
    return CliRunner().invoke(app, ["upscale", *args, "--no-tags", "--json"])


def records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def inputs(folder: Path, h: int = 13, w: int = 9) -> Path:
    """RGB 8-bit, RGBA 8-bit and 16-bit RGB PNGs of an odd size."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = synthetic_photo(h, w)
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(folder / "rgb.png")
    alpha = np.zeros((h, w), np.uint8)
    alpha[:, w // 2 :] = 255
    rgba = np.dstack([(rgb * 255).round().astype(np.uint8), alpha])
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    (folder / "deep.png").write_bytes(png16_bytes((rgb * 65535).round().astype(np.uint16)))
    return folder


@pytest.mark.parametrize(
    ("option", "passes", "size"),
    [(["--scale", "2"], [2], (18, 26)), (["--scale", "4"], [4], (36, 52)), ([], [4], (36, 52)),
     (["--outscale", "3"], [4], (27, 39)), (["--outscale", "1.5"], [2], (14, 20)),
     (["--outscale", "6"], [4, 2], (54, 78)), (["--width", "20"], [4], (20, 29)),
     (["--height", "20"], [2], (14, 20))],
)
def test_output_sizes_on_rgb_rgba_and_16_bit(tmp_path: Path, installed: Path, option, passes, size) -> None:
    src = inputs(tmp_path / "in")  # 9 wide, 13 high
    res = upscale(str(src), str(tmp_path / "out"), *option)
    assert res.exit_code == EXIT_OK, res.output
    recs = {Path(r["input"]).name: r for r in records(res)}
    for name in ("rgb.png", "rgba.png", "deep.png"):
        assert recs[name]["status"] == "ok" and recs[name]["passes"] == passes and recs[name]["size"] == list(size)
        img = read_image(tmp_path / "out" / name)
        assert (img.width, img.height) == size
    assert read_image(tmp_path / "out" / "rgba.png").alpha is not None
    assert read_image(tmp_path / "out" / "deep.png").bit_depth == 16
    alpha = read_image(tmp_path / "out" / "rgba.png").alpha[0].numpy()
    w = size[0]
    assert alpha[:, : int(w * 0.3)].max() < 0.2 and alpha[:, int(w * 0.7) :].min() > 0.8  # alpha resized, kept


def test_scale_picks_the_shipped_file_and_a_x2_file_refuses_scale_4(tmp_path: Path, installed: Path) -> None:
    src = inputs(tmp_path / "in") / "rgb.png"
    x2 = installed / "linearsr-x2.safetensors"
    by_scale = upscale(str(src), str(tmp_path / "a.png"), "--scale", "2")
    by_file = upscale(str(src), str(tmp_path / "b.png"), "--weights", str(x2))
    assert by_scale.exit_code == by_file.exit_code == EXIT_OK
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))
    res = upscale(str(src), str(tmp_path / "c.png"), "--weights", str(x2), "--scale", "4")
    assert res.exit_code == EXIT_USAGE and not (tmp_path / "c.png").exists()
    assert "weights are for x2, but --scale 4" in " ".join(res.output.split())
    res = upscale(str(src), str(tmp_path / "d.png"), "--scale", "3")
    assert res.exit_code == EXIT_USAGE and "--outscale 3" in " ".join(res.output.split())
    # a x2 file alone reaches x4 in two passes when asked with --outscale
    res = upscale(str(src), str(tmp_path / "e.png"), "--weights", str(x2), "--outscale", "4")
    assert res.exit_code == EXIT_OK and records(res)[0]["passes"] == [2, 2]
    assert Image.open(tmp_path / "e.png").size == (36, 52)
    for bad in (["--outscale", "0"], ["--outscale", "2", "--width", "10"], ["--width", "-3"]):
        res = upscale(str(src), str(tmp_path / "f.png"), *bad)
        assert res.exit_code == EXIT_USAGE and not (tmp_path / "f.png").exists(), bad


def test_tta_through_the_cli(tmp_path: Path, installed: Path) -> None:
    src = inputs(tmp_path / "in") / "rgb.png"
    plain = upscale(str(src), str(tmp_path / "plain.png"), "--scale", "2")
    tta = upscale(str(src), str(tmp_path / "tta.png"), "--scale", "2", "--tta")
    assert plain.exit_code == tta.exit_code == EXIT_OK
    assert records(tta)[0]["tta"] is True and records(plain)[0]["tta"] is False
    a = np.asarray(Image.open(tmp_path / "plain.png"), np.int16)
    b = np.asarray(Image.open(tmp_path / "tta.png"), np.int16)
    assert a.shape == b.shape == (26, 18, 3) and np.abs(a - b).max() > 0
