"""--input auto: the evidence a picture carries, the cost-sensitive gate, the gate inside a weights
file, and the route (with its evidence) in every --json record."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from linearsr_cli.checkpoints import load_weights, read_info, save_weights
from linearsr_cli.cli import app
from linearsr_cli.degrade import jpeg_roundtrip
from linearsr_cli.engine.route import FEATURES, Evidence, Router, measure
from linearsr_cli.errors import WeightsError
from linearsr_cli.imageio import decode_image
from linearsr_cli.train.router import fit_router
from tests.conftest import synthetic_photo
from tests.util import noise_router, routed_prior_weights


def ev(noise: float, blockiness: float = 0.0, detail: float = 0.0, q: int | None = None) -> Evidence:
    """Evidence with the same noise everywhere and in flat areas."""
    return Evidence(noise, noise, blockiness, detail, q)


def photo(h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(synthetic_photo(h, w, seed).transpose(2, 0, 1).copy())


def test_evidence_sees_noise_blocks_and_blur() -> None:
    clean = photo()
    noisy = (clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert measure(noisy).noise > measure(clean).noise + 3
    assert measure(noisy).flat_noise > measure(clean).flat_noise + 2
    blocky = torch.from_numpy(jpeg_roundtrip(clean.permute(1, 2, 0).numpy(), 10)).permute(2, 0, 1)
    assert measure(blocky).blockiness > measure(clean).blockiness + 0.1
    blurred = torch.nn.functional.avg_pool2d(clean[None], 3, 1, 1, count_include_pad=False)[0]
    assert measure(blurred).detail < measure(clean).detail
    assert ev(1, q=72).jpeg == pytest.approx(23 / 30) and ev(1, q=98).jpeg == 0


def test_jpeg_quality_comes_from_the_file() -> None:
    buf = io.BytesIO()
    Image.fromarray((synthetic_photo(32, 32) * 255).astype(np.uint8)).save(buf, "JPEG", quality=72)
    assert decode_image(buf.getvalue()).jpeg_quality == 72
    png = io.BytesIO()
    Image.fromarray((synthetic_photo(32, 32) * 255).astype(np.uint8)).save(png, "PNG")
    assert decode_image(png.getvalue()).jpeg_quality is None


def test_gate_minimises_regret_not_mistakes() -> None:
    rng = np.random.default_rng(0)
    evs, gain = [], []
    for _ in range(200):
        degraded = rng.random() < 0.5
        noise = rng.normal(6 if degraded else 2, 1)
        evs.append(ev(noise, rng.normal(0, 0.1), rng.normal(0, 0.1)))
        gain.append(rng.uniform(0.5, 4) if degraded else -rng.uniform(0.2, 2))
    router = fit_router(evs, gain)
    assert router.fitted["train_regret_db"] < 0.05
    assert router.choose(ev(8))[0] == "real" and router.choose(ev(1))[0] == "clean"
    assert "noise σ≈8.0 (flat areas)" in router.choose(ev(8))[1]
    again = Router.from_dict(json.loads(json.dumps(router.to_dict())))
    assert again.choose(ev(5, 0.1, 0.2)) == router.choose(ev(5, 0.1, 0.2))
    with pytest.raises(WeightsError, match="router"):
        Router.from_dict({"features": ["colour"], "weights": [1], "bias": 0, "mean": [0], "scale": [1]})
    with pytest.raises(WeightsError, match="router"):
        Router.from_dict({"features": ["noise"], "weights": [1, 2], "bias": 0, "mean": [0], "scale": [1]})
    older = Router.from_dict({"features": ["noise"], "weights": [1], "bias": -5, "mean": [0], "scale": [1]})
    assert older.choose(ev(6))[0] == "real" and older.choose(ev(4))[0] == "clean"  # a file's older gate decides as before


def test_jpeg_evidence_only_pushes_towards_real() -> None:
    """Blocks and a low JPEG quality are evidence of a degraded file: even where the crops' gains
    would reward the opposite, the fit keeps their weights >= 0."""
    rng = np.random.default_rng(1)
    evs, gain = [], []
    for _ in range(300):
        noisy = rng.random() < 0.5
        blocks = rng.normal(0.3, 0.1)
        evs.append(Evidence(rng.normal(6 if noisy else 2, 1), 0.0, blocks, 0.0, None, blocks))
        gain.append((1.0 if noisy else -1.0) - 3.0 * (blocks - 0.3))  # blockier crops "prefer" clean
    router = fit_router(evs, gain)
    for name in ("blockiness", "jpeg", "jpeg_grid"):
        assert router.weights[FEATURES.index(name)] >= 0.0


def test_jpeg_grid_sees_quantised_pixels_whatever_the_file() -> None:
    """The pixels of a JPEG decoded at this size sit on the quantisation lattice of the 8x8 DCT;
    those of a bicubic downscale, or of a JPEG shifted off the grid, do not."""
    rgb = photo(128, 128, seed=3)
    hwc = rgb.permute(1, 2, 0).numpy()
    clean = measure((rgb * 255).round() / 255).jpeg_grid
    for quality in (60, 85):
        jpeg = torch.from_numpy(jpeg_roundtrip(hwc, quality)).permute(2, 0, 1)
        assert measure(jpeg).jpeg_grid > clean + 0.2, quality
        assert measure(jpeg[:, 3:, 5:]).jpeg_grid < measure(jpeg).jpeg_grid - 0.2  # off the grid
    assert clean < 0.15


@pytest.fixture(scope="module")
def prior_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny weights with a clean, a real and a texture prior and the noise gate."""
    return routed_prior_weights(tmp_path_factory.mktemp("w") / "prior.safetensors")


def test_weights_carry_the_router(prior_weights: Path) -> None:
    assert read_info(prior_weights).router["bias"] == -10.0
    assert Router.from_dict(read_info(prior_weights).router).choose(ev(12))[0] == "real"


def test_upscale_auto_routes_each_image_and_says_why(prior_weights: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    clean = (synthetic_photo(24, 24, 1) * 255).astype(np.uint8)
    Image.fromarray(clean).save(src / "clean.png")
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(src / "noisy.jpg", quality=60)
    result = CliRunner().invoke(app, ["upscale", str(src), str(tmp_path / "out"), "--weights", str(prior_weights),
                                      "--json", "--tags", "off"])
    assert result.exit_code == 0, result.output
    records = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["clean.png"]["input_kind"] == "clean" and records["noisy.jpg"]["input_kind"] == "real"
    assert "jpeg q=60" in records["noisy.jpg"]["input_why"] and "noise σ≈" in records["noisy.jpg"]["input_why"]
    forced = CliRunner().invoke(app, ["upscale", str(src / "clean.png"), str(tmp_path / "f.png"), "--weights",
                                      str(prior_weights), "--json", "--tags", "off", "--input", "real"])
    rec = json.loads(forced.stdout.splitlines()[0])
    assert rec["input_kind"] == "real" and rec["input_why"] == "--input"


def test_texture_prior_serves_real_inputs_of_multistep_runs_only(prior_weights: Path, tmp_path: Path) -> None:
    from linearsr_cli.config import SamplerConfig
    from linearsr_cli.engine.route import prior_for

    have = ("clean", "real", "texture")
    assert prior_for("real", SamplerConfig(steps=4), have) == "texture"
    assert prior_for("real", SamplerConfig(steps=1), have) == "real"
    assert prior_for("clean", SamplerConfig(steps=4), have) == "clean"
    assert prior_for("real", SamplerConfig(steps=4), ("clean", "real")) == "real"
    src = tmp_path / "in.png"
    Image.fromarray((synthetic_photo(16, 16, 2) * 255).astype(np.uint8)).save(src)
    out = {}
    for steps in ("1", "2"):
        result = CliRunner().invoke(app, ["upscale", str(src), str(tmp_path / f"o{steps}.png"), "--weights",
                                          str(prior_weights), "--json", "--tags", "off", "--input", "real",
                                          "--steps", steps])
        assert result.exit_code == 0, result.output
        out[steps] = json.loads(result.stdout.splitlines()[0])
    assert out["1"]["prior"] == "real" and out["2"]["prior"] == "texture"
    assert out["1"]["input_kind"] == out["2"]["input_kind"] == "real"


def _weights_with_router(src: Path, dst: Path, router: dict | None) -> Path:
    model, info = load_weights(src)
    save_weights(dst, model, priors=info.priors, router=router)
    return dst


def test_auto_is_the_measured_constant_where_the_gate_lost(prior_weights: Path, tmp_path: Path) -> None:
    """Router.fixed: for multi-step runs --input auto is 'clean' without looking; 1-step runs
    still route by the evidence; the record says why."""
    weights = tmp_path / "fixed.safetensors"
    result = CliRunner().invoke(app, ["train", "revise", str(prior_weights), "--out", str(weights),
                                      "--fixed", "multi-step=clean", "--dtype", "fp32"])
    assert result.exit_code == 0, result.output
    assert read_info(weights).router["fixed"] == {"multi-step": "clean"}
    bad = CliRunner().invoke(app, ["train", "revise", str(prior_weights), "--out", str(tmp_path / "x.safetensors"),
                                   "--fixed", "two-step=clean"])
    assert bad.exit_code == 1 and "KIND=INPUT" in bad.output
    noisy = np.clip((synthetic_photo(24, 24, 1) * 255) + np.random.default_rng(0).normal(0, 25, (24, 24, 3)), 0, 255)
    Image.fromarray(noisy.astype(np.uint8)).save(tmp_path / "noisy.png")
    out = {}
    for steps in ("1", "2"):
        result = CliRunner().invoke(app, ["upscale", str(tmp_path / "noisy.png"), str(tmp_path / f"o{steps}.png"),
                                          "--weights", str(weights), "--json", "--tags", "off", "--steps", steps])
        assert result.exit_code == 0, result.output
        out[steps] = json.loads(result.stdout.splitlines()[0])
    assert out["1"]["input_kind"] == "real" and "noise σ≈" in out["1"]["input_why"]
    assert out["2"]["input_kind"] == "clean" and "auto to 'clean' for multi-step runs" in out["2"]["input_why"]
    with pytest.raises(WeightsError, match="router"):
        Router.from_dict({**noise_router().to_dict(), "fixed": {"two-step": "clean"}})


def test_auto_without_a_router_warns(prior_weights: Path, tmp_path: Path) -> None:
    """Weights with two priors and no router cannot look at the image: the record says so."""
    weights = _weights_with_router(prior_weights, tmp_path / "norouter.safetensors", None)
    taken = tmp_path / "taken.safetensors"  # train revise --router takes another file's router
    result = CliRunner().invoke(app, ["train", "revise", str(weights), "--out", str(taken), "--router", str(prior_weights)])
    assert result.exit_code == 0, result.output
    assert read_info(taken).router["bias"] == -10.0
    Image.fromarray((synthetic_photo(16, 16, 2) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    result = CliRunner().invoke(app, ["upscale", str(tmp_path / "a.png"), str(tmp_path / "o.png"),
                                      "--weights", str(weights), "--json", "--tags", "off"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert record["input_kind"] == "clean"
    assert any("has no router" in w and "--input real" in w for w in record["warnings"])


def test_sharpening_is_what_the_real_prior_makes_of_the_image() -> None:
    from linearsr_cli.engine.route import probe_region, sharpening
    from linearsr_cli.nn.dit import bicubic_upsample

    lr = photo(40, 48)
    up = bicubic_upsample(lr[None], 4)[0]
    assert sharpening(lr, up) == pytest.approx(0.0, abs=1e-6)
    smooth = torch.nn.functional.avg_pool2d(up[None], 5, 1, 2, count_include_pad=False)[0]
    sharp = (up + 0.8 * (up - smooth)).clamp(0, 1)
    assert sharpening(lr, smooth) < -0.5 and sharpening(lr, sharp) > 0.3
    assert measure(lr).sharpening is None and measure(lr).vector()[-1] == 0.0  # no prior probed
    assert "sharpening" not in measure(lr).describe()
    seen = []

    def prior(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return bicubic_upsample(x[None], 4)[0]

    big = photo(300, 200)
    assert measure(big, prior=prior).sharpening == pytest.approx(0.0, abs=1e-6)
    assert seen == [(3, 128, 128)]  # the central region only, whatever the image size
    torch.testing.assert_close(probe_region(big), big[:, 86:214, 36:164])


def test_the_prior_is_probed_only_for_a_gate_that_weighs_sharpening(prior_weights: Path) -> None:
    from linearsr_cli.engine.route import choose_input

    calls = []

    def probe(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.nn.functional.interpolate(x[None], scale_factor=4, mode="nearest")[0]  # sharpens: clean

    cfg = read_info(prior_weights).config
    gate = Router((0.0,) * 6 + (-1.0,), 0.0, (0.0,) * 7, (1.0,) * 7)  # real when the prior smooths
    assert gate.uses("sharpening") and not noise_router().uses("sharpening")
    route = choose_input(cfg, gate, "auto", photo(), probe=probe)
    assert route.input == "clean" and "sharpening" in route.why and calls == [1]
    choose_input(cfg, noise_router(), "auto", photo(), probe=probe)
    assert calls == [1]
    old = {k: v for k, v in gate.to_dict().items()}
    old.update(features=list(FEATURES[:6]), weights=[1.0] * 6, mean=[0.0] * 6, scale=[1.0] * 6)
    assert not Router.from_dict(old).uses("sharpening")  # a router from before: no weight, no probe
    with pytest.raises(ValueError, match="one weight"):
        Router((1.0,) * 6, 0.0, (0.0,) * 7, (1.0,) * 7)


def test_router_samples_keep_the_sharpening_evidence(tmp_path: Path) -> None:
    from linearsr_cli.train.router import RouterSample, load_samples, save_samples

    save_samples([RouterSample(photo(16, 16), 1.5, "bicubic", None, 0.42)], tmp_path / "s.safetensors")
    got = load_samples(tmp_path / "s.safetensors")[0]
    assert got.sharpening == pytest.approx(0.42) and got.evidence.sharpening == pytest.approx(0.42)
