"""--input auto's blend: where the gate is unsure, an image gets both priors' images mixed, the
real prior's share a fitted sigmoid of the gate's logit; the fit, the file, the model and the
record."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from linearsr_cli.checkpoints import load_weights, read_info, save_weights
from linearsr_cli.cli import app
from linearsr_cli.config import SamplerConfig
from linearsr_cli.engine.route import (
    BLEND_GRID,
    FEATURES,
    RUN_KINDS,
    Blend,
    Evidence,
    Router,
    choose_input,
    measure,
)
from linearsr_cli.errors import ConfigError, WeightsError
from linearsr_cli.train.data import DataConfig
from linearsr_cli.train.router import (
    RouterSample,
    blend_regret,
    fit,
    fit_blend,
    load_samples,
    save_samples,
)
from tests.conftest import synthetic_photo
from tests.util import noise_router, routed_prior_weights


def test_share_is_a_sigmoid_of_the_logit_snapped_near_one_prior() -> None:
    blend = Blend(2.0, -0.5, 0.1)
    assert blend.share(0.25) == pytest.approx(0.5)
    assert 0.1 < blend.share(1.0) < 0.9 and blend.share(-1.0) == 0.0 and blend.share(3.0) == 1.0
    assert Blend.from_dict(blend.to_dict()) == blend and blend.runs == ("multi-step",)  # by default: not at 1-NFE
    for bad in ({"slope": 1.0, "offset": 0.0, "snap": 0.5}, {"slope": 1.0, "offset": 0.0, "snap": 0.1, "runs": ["2-step"]},
                {"slope": float("nan"), "offset": 0.0, "snap": 0.1}):
        with pytest.raises(ValueError):
            Blend.from_dict(bad)


def test_the_gate_blends_only_when_unsure_and_only_for_its_runs() -> None:
    gate = dataclasses.replace(noise_router(), blend=Blend(1.0, 0.0, 0.1, ("1-step",)))
    unsure = Evidence(10.2, 10.2, 0.0, 0.0)  # logit 0.2
    kind, why, share = gate.choose(unsure, steps=1)
    assert kind == "real" and share == pytest.approx(1 / (1 + np.exp(-0.2))) and "blend" in why
    assert gate.choose(unsure, steps=4)[::2] == ("real", 1.0)  # multi-step is not among its runs: the hard choice
    assert gate.choose(Evidence(20, 20, 0, 0))[::2] == ("real", 1.0)
    assert gate.choose(Evidence(1, 1, 0, 0))[::2] == ("clean", 0.0)
    assert noise_router().choose(unsure)[::2] == ("real", 1.0)  # a router without a blend: as before
    again = Router.from_dict(gate.to_dict())
    assert again.blend == gate.blend and again.choose(unsure) == gate.choose(unsure)
    with pytest.raises(WeightsError, match="router"):
        Router.from_dict({**gate.to_dict(), "blend": {"slope": 1.0}})


def test_fit_blend_finds_how_unsure_the_gate_is() -> None:
    """Crops whose best mix is sigmoid(1.5 logit): the fit finds a blend that beats the gate's
    hard choice and the better prior alone, and snaps where it costs nothing."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, 400)
    best = 1.0 / (1.0 + np.exp(-1.5 * logits))
    grid = np.array(BLEND_GRID)
    curves = 30.0 - 4.0 * (grid[None] - best[:, None]) ** 2  # (N, 11) PSNR, peaked at the best mix
    found = fit_blend(logits, curves)
    assert found.slope == pytest.approx(1.5, abs=0.3) and abs(found.offset) <= 0.2
    hard = blend_regret(logits, curves, Blend(1e3, 0.0, 0.0))  # the gate's own choice: here always the better end
    assert hard == pytest.approx(0.0, abs=1e-3) and blend_regret(logits, curves, found) < hard - 0.1
    assert blend_regret(logits, curves, found) <= blend_regret(logits, curves, dataclasses.replace(found, snap=0.0)) + 0.005


def test_samples_keep_their_blend_curves_and_old_ones_cannot_fit_a_blend(tmp_path: Path) -> None:
    lr = torch.from_numpy(synthetic_photo(16, 16, 0).transpose(2, 0, 1).copy())
    curve = tuple(30.0 + w for w in BLEND_GRID)
    save_samples([RouterSample(lr, 1.0, "realistic", 80, -0.3, curve)], tmp_path / "s.safetensors")
    assert load_samples(tmp_path / "s.safetensors")[0].blend_psnr == pytest.approx(curve)
    old = [RouterSample(lr, g, "bicubic", None, s) for g, s in ((1.0, -0.5), (-1.0, 0.5))]
    data = DataConfig(root="photos", scale=4, crop=32)
    with pytest.raises(ConfigError, match="no blend curves"):
        fit(old, data, FEATURES)
    assert fit(old, data, FEATURES, blend_runs=()).blend is None
    fitted = fit([dataclasses.replace(s, blend_psnr=curve) for s in old], data, FEATURES, blend_runs=("1-step",))
    assert fitted.blend is not None and fitted.blend.runs == ("1-step",)


@pytest.fixture(scope="module")
def blended_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor]:
    """Tiny weights whose gate is exactly unsure (logit 0, real share 0.7) about one image."""
    tmp = tmp_path_factory.mktemp("blend")
    image = (synthetic_photo(24, 24, 1) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp / "a.png")
    lr = torch.from_numpy(image.transpose(2, 0, 1).copy()).float() / 255.0
    noise = measure(lr).noise
    gate = Router((1.0,) + (0.0,) * 6, -noise, (0.0,) * 7, (1.0,) * 7, blend=Blend(1.0, float(np.log(0.7 / 0.3)), 0.1, RUN_KINDS))
    model, info = load_weights(routed_prior_weights(tmp / "prior.safetensors"))
    return save_weights(tmp / "blend.safetensors", model, priors=info.priors, router=gate.to_dict()), lr


def test_the_model_mixes_its_priors_by_shares(blended_weights: tuple[Path, torch.Tensor]) -> None:
    model, _ = load_weights(blended_weights[0])
    lr = blended_weights[1][None]
    with torch.no_grad():
        clean, real, texture = (model.prior_image(lr, torch.tensor([k])) for k in range(3))
        mixed = model.prior_image(lr, torch.tensor([[0.3, 0.7, 0.0]]))
        torch.testing.assert_close(mixed, 0.3 * clean + 0.7 * real)
        both = model.prior_image(lr.expand(2, -1, -1, -1), torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.0, 0.5]]))
        torch.testing.assert_close(both, torch.cat([clean, 0.5 * clean + 0.5 * texture]), atol=1e-4, rtol=0)  # batch of 2: another summation order


def test_an_unsure_image_gets_both_priors_and_the_record_says_so(blended_weights: tuple[Path, torch.Tensor],
                                                                  tmp_path: Path) -> None:
    weights, lr = blended_weights
    cfg = read_info(weights).config
    gate = Router.from_dict(read_info(weights).router)
    route = choose_input(cfg, gate, "auto", lr, sampler=SamplerConfig(steps=1))
    assert route.shares == pytest.approx((0.3, 0.7, 0.0)) and route.input == "real" and route.prior == "real 0.70 + clean 0.30"
    multi = choose_input(cfg, gate, "auto", lr, sampler=SamplerConfig(steps=4))
    assert multi.shares == pytest.approx((0.3, 0.0, 0.7)) and multi.prior == "texture 0.70 + clean 0.30"
    assert choose_input(cfg, gate, "real", lr).shares is None  # a named input: that prior alone
    result = CliRunner().invoke(app, ["upscale", str(weights.parent / "a.png"), str(tmp_path / "o.png"), "--weights",
                                      str(weights), "--json", "--tags", "off"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert record["prior"] == "real 0.70 + clean 0.30" and record["input_kind"] == "real" and "blend" in record["input_why"]
    # the fidelity preset of these weights is the prior's image alone: the output is the two images
    # mixed, then clamped and rounded to 8 bits
    model, _ = load_weights(weights)
    with torch.no_grad():
        clean, real = (model.prior_image(lr[None], torch.tensor([k]))[0] for k in (0, 1))
    expected = (0.3 * clean + 0.7 * real).clamp(0, 1).permute(1, 2, 0).numpy() * 255
    assert np.abs(np.asarray(Image.open(tmp_path / "o.png"), np.float64) - expected).max() <= 0.6


def test_info_shows_the_blend(blended_weights: tuple[Path, torch.Tensor]) -> None:
    res = CliRunner().invoke(app, ["info", "--weights", str(blended_weights[0]), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["weights"]["router"]["blend"]["runs"] == ["1-step", "multi-step"]


def test_a_blend_runs_tile_by_tile(blended_weights: tuple[Path, torch.Tensor], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each tile gets the same mix: where one tile alone covers a pixel, the tiled blend lies
    between the tiled `clean` and `real` outputs (a mix, clamped, of that tile's two prior images),
    and strictly between where they differ unclamped. (Where tiles overlap, each tile is clamped before the
    tiles are blended, so there is no such bound.) One prior backend for all three runs: these
    random tiny priors amplify the summation-order differences of torch and ncnn."""
    from linearsr_cli.engine.tiling import plan_tiles

    monkeypatch.setenv("LINEARSR_PRIOR_BACKEND", "torch")
    weights = blended_weights[0]
    outs = {}
    for name, extra in (("auto", []), ("clean", ["--input", "clean"]), ("real", ["--input", "real"])):
        result = CliRunner().invoke(app, ["upscale", str(weights.parent / "a.png"), str(tmp_path / f"{name}.png"),
                                          "--weights", str(weights), "--json", "--tags", "off", "--tile", "12",
                                          "--tile-overlap", "0", *extra])
        assert result.exit_code == 0, result.output
        outs[name] = np.asarray(Image.open(tmp_path / f"{name}.png"), np.float64)
    cover = np.zeros(outs["auto"].shape[:2], int)
    for t in plan_tiles(24, 24, 12, 0, 4, align=read_info(weights).config.lr_per_token):
        y0, x0, y1, x1 = t.hr_box
        cover[y0:y1, x0:x1] += 1
    alone = np.repeat((cover == 1)[..., None], 3, axis=2)
    assert 0 < alone.mean() < 1  # the image was tiled, with some overlap
    low, high = np.minimum(outs["clean"], outs["real"]), np.maximum(outs["clean"], outs["real"])
    auto = outs["auto"]
    assert ((auto >= low - 1) & (auto <= high + 1))[alone].all()
    apart = alone & (high - low > 20) & (low > 0) & (high < 255)  # both unsaturated: 0.3 c + 0.7 r
    assert apart.any() and ((auto[apart] > low[apart]) & (auto[apart] < high[apart])).all()


def test_multi_step_runs_may_have_a_gate_of_their_own(blended_weights: tuple[Path, torch.Tensor]) -> None:
    """Router.multi_step decides multi-step runs (fitted on their outcomes); 1-step runs keep the
    file's gate; the pair round-trips through the weights' metadata."""
    from linearsr_cli.train.router import CHAIN_SHARES, fit_multi_step

    weights, lr = blended_weights
    cfg = read_info(weights).config
    noise = measure(lr).noise
    one = Router((1.0,) + (0.0,) * 6, -noise - 5.0, (0.0,) * 7, (1.0,) * 7)  # sure: clean
    multi = Router((1.0,) + (0.0,) * 6, -noise + 5.0, (0.0,) * 7, (1.0,) * 7)  # sure: real
    gate = dataclasses.replace(one, multi_step=multi)
    again = Router.from_dict(gate.to_dict())
    assert again.to_dict() == gate.to_dict() and again.multi_step is not None
    assert gate.for_run(1) is gate and gate.for_run(4) is multi
    assert choose_input(cfg, gate, "auto", lr, sampler=SamplerConfig(steps=1)).prior == "clean"
    assert choose_input(cfg, gate, "auto", lr, sampler=SamplerConfig(steps=4)).prior == "texture"
    # fitted on multi-step outcomes: the real side wins where the image is noisy
    sigmas = np.random.default_rng(0).uniform(0, 20, 60)
    evidence = [Evidence(float(v), float(v), 0.0, 0.0) for v in sigmas]
    curves = [tuple(30.0 + (v - 10.0) * w for w in CHAIN_SHARES) for v in sigmas]
    fitted = fit_multi_step(evidence, curves, ("noise",))
    assert fitted.blend is not None and fitted.blend.runs == ("multi-step",) and fitted.fitted["outcome"] == "multi-step runs"
    assert fitted.logit(Evidence(18, 18, 0, 0)) > 0 > fitted.logit(Evidence(2, 2, 0, 0))
