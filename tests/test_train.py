"""Training: the loss goes down, resume is exact, the divergence guard trips, the recipe runs
end to end (stage 1 -> knee -> stage 2 -> export) and resumes phase by phase. Tiny configs only."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from linearsr_cli.checkpoints import load_weights, read_info
from linearsr_cli.cli import app
from linearsr_cli.engine.route import Router
from linearsr_cli.errors import ConfigError, TrainingError
from linearsr_cli.esgf.probe import measure_model
from linearsr_cli.nn.dit import LinearSR
from linearsr_cli.sampling.schedules import log_snr
from linearsr_cli.train.config import PriorTrainConfig, TrainConfig, TSampling
from linearsr_cli.train.data import DataConfig, PairDataset, validation_pairs
from linearsr_cli.train.loop import (
    DatasetBatches,
    expert_t_range,
    latest_state,
    list_checkpoints,
    read_log,
    sample_t,
    train,
)
from linearsr_cli.train.recipe import RecipeConfig, export_model, run_recipe
from tests.util import tiny_model_config

SCALE = 4


def write_photos(root: Path, *, n_train: int = 3, n_val: int = 2, size: int = 72) -> Path:
    """Synthetic 'photos': smooth colour fields plus oriented stripes and edges (so SR has work)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            base = cv2.resize(rng.random((6, 6, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
            yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
            angle = rng.uniform(0, np.pi)
            stripes = 0.25 * np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(0.3, 0.9))
            img = np.clip(base + stripes[..., None], 0, 1)
            img[size // 3 : size // 2, :, :] *= 0.5  # a hard edge
            cv2.imwrite(str(root / split / f"{split}{i}.png"), (img * 255).astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"))


def data_cfg(root: Path) -> DataConfig:
    return DataConfig(root=str(root), scale=SCALE, crop=32, flat_std=0.0)


QUICK = dict(steps=12, batch_size=4, lr=2e-3, warmup=3, ckpt_every=4, precision="fp32", ema_decay=0.9)


def quick_cfg(**kw) -> TrainConfig:
    """A tiny denoiser run; fields by name, whichever part holds them."""
    return TrainConfig().replace(**{**QUICK, **kw})


def quick_prior_cfg(**kw) -> PriorTrainConfig:
    """A tiny prior run (stage 0, texture)."""
    return PriorTrainConfig().replace(**{**QUICK, **kw})


def stage1_model(seed: int = 0) -> LinearSR:
    torch.manual_seed(seed)
    return LinearSR(tiny_model_config(num_experts=1))


def test_sample_t_respects_interval_and_trains_one_nfe() -> None:
    gen = torch.Generator().manual_seed(0)
    t = sample_t(4000, gen, TSampling(p_one=0.25))
    assert 0.2 < float((t == 1.0).float().mean()) < 0.3  # t = 1 exactly: the 1-NFE input
    assert float(t.min()) > 0.0
    cfg4 = tiny_model_config(num_experts=4)
    ranges = [expert_t_range(cfg4, e) for e in range(4)]
    assert ranges[0][1] == 1.0 and ranges[-1][0] == 0.0
    for (lo_a, _), (_, hi_b) in zip(ranges[:-1], ranges[1:], strict=True):
        assert hi_b == pytest.approx(lo_a)  # adjacent intervals meet
    for e, rng_t in enumerate(ranges):
        t = sample_t(2000, gen, TSampling(t_range=rng_t, p_one=0.0))
        assert float(t.min()) >= rng_t[0] and float(t.max()) <= rng_t[1]
        mid = float(t.median())
        assert LinearSR(cfg4).expert_index(mid) == e  # the sampled t route to this expert
        assert math.isfinite(log_snr(mid))


# the flat dict the single TrainConfig wrote before its split (resume state, recipe.json), at its defaults
SINGLE_CONFIG = {
    "steps": 2000, "batch_size": 8, "lr": 0.0002, "weight_decay": 0.01, "betas": [0.9, 0.99], "warmup": 100,
    "grad_clip": 1.0, "ema_decay": 0.999, "ckpt_every": 100, "t_mean": 0.0, "t_std": 1.0, "p_one": 0.1,
    "t_range": [0.0, 1.0], "tag_dropout": 0.5, "precision": "auto", "spike_factor": 20.0, "spike_window": 50,
    "val_t_points": 4, "keep_states": 2, "seed": 0, "lpips_weight": 0.0, "lpips_samples": 8, "l1_weight": 1.0,
    "gan_weight": 0.0, "disc_lr": 0.0001, "disc_channels": 32, "usm_target": False, "distill_weight": 0.0,
}


def test_no_config_field_is_silently_ignored() -> None:
    """The denoiser's config has no L1 or distillation weight, the prior's no t-sampling: naming
    one is a ConfigError that says which; the saved flat dicts of both, and those of the single
    config before the split (the missing fields at their old defaults), still load."""
    with pytest.raises(ConfigError, match="l1_weight"):
        TrainConfig().replace(l1_weight=0.5)
    with pytest.raises(ConfigError, match="distill_weight"):
        TrainConfig().replace(distill_weight=1.0)
    with pytest.raises(ConfigError, match="p_one"):
        PriorTrainConfig().replace(p_one=0.3)
    cfg = quick_cfg(p_one=0.3, lpips_weight=0.5, t_range=(0.2, 0.6))
    assert cfg.sampling.p_one == 0.3 and cfg.loss.lpips_weight == 0.5 and cfg.optim.steps == 12
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    prior = quick_prior_cfg(l1_weight=0.5, gan_weight=0.1)
    assert PriorTrainConfig.from_dict(json.loads(json.dumps(prior.to_dict()))) == prior
    assert TrainConfig.from_dict({**SINGLE_CONFIG, "p_one": 0.4}) == TrainConfig().replace(p_one=0.4)
    assert PriorTrainConfig.from_dict({**SINGLE_CONFIG, "gan_weight": 0.1}) == PriorTrainConfig().replace(gan_weight=0.1)
    with pytest.raises(ConfigError, match="l1_weight"):
        TrainConfig.from_dict({**SINGLE_CONFIG, "l1_weight": 0.5})
    with pytest.raises(ConfigError, match="t_range"):
        PriorTrainConfig.from_dict({**SINGLE_CONFIG, "t_range": [0.0, 0.5]})
    # a recipe.json written before the split holds one flat dict per stage
    stages = {k: SINGLE_CONFIG for k in ("stage0", "stage1", "stage2", "texture")}
    old = {**RecipeConfig().to_dict(), **stages}
    assert RecipeConfig.from_dict(old).stage1 == TrainConfig() and RecipeConfig.from_dict(old).stage0 == PriorTrainConfig()


def test_training_reduces_validation_loss(photos: Path, tmp_path: Path) -> None:
    data = data_cfg(photos)
    val = validation_pairs(data, size=32)
    model = stage1_model()
    before = measure_model(copy.deepcopy(model), val, t_grid=(0.25, 0.5, 0.75, 1.0))
    result = train(model, DatasetBatches(PairDataset(data), 4), quick_cfg(steps=20, ckpt_every=20, lr=3e-3),
                   tmp_path / "run", val_pairs=val, training_meta={"stage": 1})
    after = measure_model(model, val, t_grid=(0.25, 0.5, 0.75, 1.0))
    assert result.status == "done" and result.step == 20
    assert after["val_loss"] < 0.85 * before["val_loss"]
    info = read_info(tmp_path / "run" / "ckpt-0000020.safetensors")
    tr = info.training
    assert tr["step"] == 20 and tr["stage"] == 1 and math.isfinite(tr["loss"])
    assert {"psnr", "ssim", "val_loss"} <= set(tr["val"])
    assert tr["attn"]["max_q"] > 0 and tr["attn"]["min_normaliser"] > 0
    assert info.config.num_experts == 1
    assert [row["step"] for row in read_log(tmp_path / "run")] == list(range(1, 21))


def test_resume_reproduces_uninterrupted_losses(photos: Path, tmp_path: Path) -> None:
    data = data_cfg(photos)
    batches = DatasetBatches(PairDataset(data), 4)
    cfg = quick_cfg(steps=12, ckpt_every=4, keep_states=1)
    full = train(stage1_model(), batches, cfg, tmp_path / "full")
    # interrupted run: stop at step 8 (a deadline in the past pauses right after a step), then resume
    part1 = train(stage1_model(), batches, quick_cfg(steps=8, ckpt_every=4, keep_states=1), tmp_path / "cut")
    assert latest_state(tmp_path / "cut")[0] == 8
    torch.manual_seed(1234)  # the global RNG state must not matter either
    part2 = train(stage1_model(seed=99), batches, cfg, tmp_path / "cut")
    assert part2.step == 12
    assert part1.losses + part2.losses == full.losses  # bit-identical
    assert [r["loss"] for r in read_log(tmp_path / "cut")] == full.losses
    a, _ = load_weights(tmp_path / "full" / "ckpt-0000012.safetensors")
    b, _ = load_weights(tmp_path / "cut" / "ckpt-0000012.safetensors")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    # only the newest resume state is kept (keep_states=1); every checkpoint's weights stay
    assert [s for s, _ in list_checkpoints(tmp_path / "cut")] == [4, 8, 12]
    assert len(list((tmp_path / "cut").glob("*.state.safetensors"))) == 1


def test_time_budget_pauses_with_a_resumable_checkpoint(photos: Path, tmp_path: Path) -> None:
    batches = DatasetBatches(PairDataset(data_cfg(photos)), 2)
    r = train(stage1_model(), batches, quick_cfg(steps=10, batch_size=2), tmp_path / "r", deadline=0.0)
    assert r.status == "paused" and r.step == 1
    assert latest_state(tmp_path / "r")[0] == 1
    r2 = train(stage1_model(), batches, quick_cfg(steps=3, batch_size=2), tmp_path / "r")
    assert r2.status == "done" and r2.step == 3 and len(r2.losses) == 2


class PoisonedDataset:
    """A real PairDataset whose items from index `bad` on carry NaN pixels (a corrupt photo)."""

    def __init__(self, inner: PairDataset, bad: int) -> None:
        self.inner, self.bad = inner, bad

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.inner[i])
        if i >= self.bad:
            item["hr"] = item["hr"].clone()
            item["hr"][:, 0, 0] = float("nan")
        return item


def test_divergence_guard_stops_cleanly_on_nan(photos: Path, tmp_path: Path) -> None:
    batches = DatasetBatches(PoisonedDataset(PairDataset(data_cfg(photos)), bad=4 * 6), 4)
    run = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"diverged at step 6: loss is nan.*ckpt-0000004"):
        train(stage1_model(), batches, quick_cfg(steps=12, ckpt_every=4), run)
    assert [s for s, _ in list_checkpoints(run)] == [4]  # the last good checkpoint, nothing after
    info = json.loads((run / "diverged.json").read_text())
    assert info["step"] == 6 and info["last_good"] == "ckpt-0000004.safetensors"
    model, _ = load_weights(run / "ckpt-0000004.safetensors")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_divergence_guard_trips_on_loss_spike(photos: Path, tmp_path: Path) -> None:
    class Spiky(PoisonedDataset):
        def __getitem__(self, i: int) -> dict:
            item = dict(self.inner[i])
            if i >= self.bad:  # HR far outside [0, 1]: a 1000x larger residual target
                item["hr"] = item["hr"] * 300.0
            return item

    batches = DatasetBatches(Spiky(PairDataset(data_cfg(photos)), bad=2 * 9), 2)
    cfg = quick_cfg(steps=12, batch_size=2, ckpt_every=6, spike_window=8, spike_factor=20.0)
    with pytest.raises(TrainingError, match=r"diverged at step 9: loss spike"):
        train(stage1_model(), batches, cfg, tmp_path / "spike")


def test_export_assembles_experts_in_half_precision(photos: Path, tmp_path: Path) -> None:
    batches = DatasetBatches(PairDataset(data_cfg(photos)), 2)
    paths = []
    for e in range(2):
        train(stage1_model(seed=e), batches, quick_cfg(steps=1, batch_size=2, ckpt_every=1), tmp_path / f"e{e}")
        paths.append(tmp_path / f"e{e}" / "ckpt-0000001.safetensors")
    out = export_model(paths, tmp_path / "model.safetensors", dtype="fp16", provenance={"command": "test"})
    model, info = load_weights(out)
    assert info.config.num_experts == 2 and info.provenance["command"] == "test"
    for e, p in enumerate(paths):
        single, _ = load_weights(p)
        for (k, v), (_, w) in zip(model.experts[e].state_dict().items(), single.experts[0].state_dict().items(), strict=True):
            assert torch.allclose(v, w.half().float()), k


def test_recipe_runs_end_to_end_and_resumes_by_phase(photos: Path, tmp_path: Path) -> None:
    cfg = RecipeConfig(
        model=tiny_model_config(num_experts=4),
        data=data_cfg(photos),
        stage1=quick_cfg(steps=12, ckpt_every=2, batch_size=2),
        stage2=quick_cfg(steps=1, ckpt_every=1, batch_size=2, lr=5e-4),
        val_size=32, val_count=1, export_dtype="bf16", prior="",
    )
    out = tmp_path / "recipe"
    paused = run_recipe(out, cfg, max_minutes=1e-9)  # a budget that ends after one step
    assert not paused.done and "stage1" not in paused.phases
    done = run_recipe(out, cfg)
    assert done.done and done.weights is not None
    model, info = load_weights(done.weights)
    assert info.config.num_experts == 4
    knee = json.loads((out / "knee.json").read_text())
    assert (out / "knee.safetensors").resolve() == Path(knee["knee"]["path"]).resolve()
    for e in range(4):
        tr = read_info(out / "stage2" / f"expert{e}" / "ckpt-0000001.safetensors").training
        assert tr["expert"] == e and tr["init_step"] == knee["knee"]["step"]
        assert tuple(tr["t_range"]) == pytest.approx(expert_t_range(info.config, e))
    state = json.loads((out / "recipe.json").read_text())
    assert set(state["phases"]) == {"stage1", "knee", "stage2/expert0", "stage2/expert1",
                                    "stage2/expert2", "stage2/expert3", "export"}
    again = run_recipe(out)  # everything done: nothing reruns
    assert again.done


def test_train_cli_stage1_and_bad_data(photos: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["train", "stage1", "--data", str(photos), "--out", str(tmp_path / "s1"), "--steps", "2",
            "--batch", "2", "--crop", "32", "--ckpt-every", "2", "--dim", "32", "--depth", "1",
            "--heads", "2", "--precision", "fp32", "--val-count", "1", "--val-size", "32"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s1" / "ckpt-0000002.safetensors").is_file()
    res = runner.invoke(app, ["train", "stage1", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "does not exist" in res.output and "Traceback" not in res.output


def test_training_tags_come_from_each_photo_once_and_respect_dropout():
    """Crops inherit their photo's tags (tagger on the photo's bicubic LR, like `upscale`);
    dropped samples get no tags; each photo is tagged once."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from skimage import data as skdata

    from linearsr_cli.tag.training import make_tag_source

    photos = {"cat": skdata.chelsea(), "cup": skdata.coffee()}
    source = make_tag_source(True, photos, scale=4)
    assert source is not None
    lr = torch.rand(3, 3, 16, 16)
    states, mask = source(lr, ["cat", "cup", "cat"], torch.tensor([True, True, False]))
    assert states.shape[0] == 3 and states.shape[2] == 384 and mask.shape == states.shape[:2]
    assert mask[0].any() and mask[1].any() and not mask[2].any()
    # same photo, different crop -> same tag tokens
    states2, mask2 = source(torch.rand(1, 3, 16, 16), ["cat"], torch.tensor([True]))
    n = int(mask[0].sum())
    assert int(mask2[0].sum()) == n
    torch.testing.assert_close(states2[0, :n], states[0, :n])
    assert source(lr, ["cat", "cup", "cat"], torch.zeros(3, dtype=torch.bool)) == (None, None)


def test_visual_training_guidance_is_one_token_per_photo():
    """The TAG ablation's visual arm: one 384-d token per photo (from the photo, not the crop),
    dropped samples see only the null token."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from skimage import data as skdata

    from linearsr_cli.errors import TrainingError
    from linearsr_cli.tag.training import make_tag_source

    photos = {"cat": skdata.chelsea(), "cup": skdata.coffee()}
    source = make_tag_source(True, photos, scale=4, kind="visual")
    states, mask = source(torch.rand(3, 3, 16, 16), ["cat", "cup", "cat"], torch.tensor([True, True, False]))
    assert states.shape == (3, 1, 384) and mask.tolist() == [[True], [True], [False]]
    assert not torch.allclose(states[0], states[1])
    again, _ = source(torch.rand(1, 3, 16, 16), ["cat"], torch.tensor([True]))
    torch.testing.assert_close(again[0], states[0])
    with pytest.raises(TrainingError, match="tag kind"):
        make_tag_source(True, photos, kind="pixels")


def _tiny_prior(path: Path, seed: int = 0) -> Path:
    from linearsr_cli.nn.span import Span, SpanConfig
    from linearsr_cli.priors import save_prior

    gen = torch.Generator().manual_seed(seed)
    span = Span(SpanConfig(channels=6, blocks=1, scale=SCALE))
    with torch.no_grad():
        for p in span.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return save_prior(path, span, {"origin": "test", "licence": "Apache-2.0", "attribution": "test"})


def test_attach_priors_starts_as_the_prior_and_keeps_it_frozen(photos: Path, tmp_path: Path) -> None:
    from linearsr_cli.nn.dit import compose_output
    from linearsr_cli.train.recipe import attach_priors

    clean, real = _tiny_prior(tmp_path / "c.safetensors", 0), _tiny_prior(tmp_path / "r.safetensors", 1)
    base = random_model_1(seed=2)
    model, records = attach_priors(base, {"real": str(real), "clean": str(clean)})
    assert model.cfg.prior_inputs == ("clean", "real") and model.cfg.prior_experts == (0,) and set(records) == {"clean", "real"}
    assert not any(p.requires_grad for p in model.priors.parameters())
    lr = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        sr = compose_output(lr, model(torch.randn(2, 3, 32, 32), 1.0, lr, prior=torch.tensor([0, 1])), model.cfg)
        torch.testing.assert_close(sr[:1], model.priors["clean"](lr[:1]).clamp(0, 1), atol=1e-5, rtol=0)
        torch.testing.assert_close(sr[1:], model.priors["real"](lr[1:]).clamp(0, 1), atol=1e-5, rtol=0)


def random_model_1(seed: int = 0) -> LinearSR:
    from tests.util import random_model

    return random_model(tiny_model_config(num_experts=1), seed=seed)


def test_recipe_with_prior_runs_stage0_and_ships_the_priors(photos: Path, tmp_path: Path) -> None:
    """Stage 0 fine-tunes the prior (L1), the structure expert carries both priors, the other
    experts none, and the exported file keeps the priors (fp32) with their provenance."""
    cfg = RecipeConfig(
        model=tiny_model_config(num_experts=4),
        data=data_cfg(photos),
        stage1=quick_cfg(steps=6, ckpt_every=2, batch_size=2),
        stage2=quick_cfg(steps=1, ckpt_every=1, batch_size=2, lr=5e-4),
        stage0=quick_prior_cfg(steps=2, ckpt_every=2, batch_size=2, lr=1e-3),
        prior=str(_tiny_prior(tmp_path / "span.safetensors")), prior_crop=32,
        val_size=32, val_count=1, export_dtype="fp16",
        texture=quick_prior_cfg(steps=6, ckpt_every=2, batch_size=2, lr=1e-3, lpips_weight=0.5, lpips_samples=0,
                                gan_weight=0.1, usm_target=True, disc_channels=4),
        router_crops=6, router_crop=32,
    )
    done = run_recipe(tmp_path / "run", cfg)
    assert done.done and "stage0" in done.phases
    from linearsr_cli.priors import load_prior

    real, record = load_prior(tmp_path / "run" / "stage0" / "ckpt-0000002.safetensors")
    assert record["fine_tuning"][-1]["step"] == 2 and set(record["fine_tuning"][-1]["val_psnr"]) == {"bicubic", "realistic"}
    model, info = load_weights(done.weights)
    assert info.config.prior_inputs == ("clean", "real", "texture") and info.config.prior_experts == (0,)
    texture, _ = load_prior(tmp_path / "run" / "texture" / "ckpt-0000006.safetensors")
    for k, v in texture.state_dict().items():
        assert torch.equal(model.priors["texture"].state_dict()[k], v)
    assert "GAN 0.1" in info.priors["texture"]["fine_tuning"][-1]["what"]
    assert info.router["fitted"]["crops"] == 6 and Router.from_dict(info.router).fitted == info.router["fitted"]
    assert Router.from_dict(info.router).blend is not None and "blend_train_regret_db" in info.router["fitted"]
    assert info.priors["real"]["fine_tuning"][-1]["stage"] == 0 and info.priors["clean"]["licence"] == "Apache-2.0"
    for k, v in real.state_dict().items():
        assert torch.equal(model.priors["real"].state_dict()[k], v)  # fp32 inside an fp16 export
    assert model.experts[1].head.weight.dtype == torch.float32
    e0 = read_info(tmp_path / "run" / "stage2" / "expert0" / "ckpt-0000000.safetensors")
    e1 = read_info(tmp_path / "run" / "stage2" / "expert1" / "ckpt-0000001.safetensors")
    assert e0.config.bare_experts == (0,) and not e1.config.has_prior  # the structure expert is the prior
    assert info.config.bare_experts == (0,) and not any(k.startswith("experts.0.") for k in model.state_dict())
    from linearsr_cli.nn.dit import compose_output

    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        sr = compose_output(lr, model(torch.randn(1, 3, 32, 32), 1.0, lr, prior=torch.tensor([1])), model.cfg)
        torch.testing.assert_close(sr, real(lr).clamp(0, 1), atol=1e-5, rtol=0)  # 1-NFE = the real prior


def test_lpips_loss_trains_the_texture_experts_only(photos: Path, tmp_path: Path) -> None:
    pytest.importorskip("stlpips_pytorch")
    from linearsr_cli.train.recipe import stage2_config

    cfg = quick_cfg(steps=2, ckpt_every=2, batch_size=2, lpips_weight=0.5, lpips_samples=1)
    full = tiny_model_config(num_experts=4)
    assert stage2_config(cfg, full, 0).loss.lpips_weight == 0.0 and stage2_config(cfg, full, 2).loss.lpips_weight == 0.5
    result = train(stage1_model(), DatasetBatches(PairDataset(data_cfg(photos)), 2), cfg, tmp_path / "lp")
    log = read_log(tmp_path / "lp")
    assert result.status == "done" and all(r["loss"] > r["mse"] for r in log)  # the LPIPS term is on


def test_precision_auto_follows_the_one_capability_check(photos: Path, tmp_path: Path) -> None:
    """`--precision auto` trains in the dtype engine.device decides for this CPU (bf16 only where
    it is measured fast), and the checkpoint records it."""
    from linearsr_cli.engine.device import cpu_bf16

    res = CliRunner().invoke(app, ["train", "stage1", "--data", str(photos), "--out", str(tmp_path / "p"),
                                   "--steps", "1", "--batch", "2", "--crop", "32", "--ckpt-every", "1",
                                   "--dim", "32", "--depth", "1", "--heads", "2", "--precision", "auto",
                                   "--val-count", "1", "--val-size", "32", "--no-tags"])
    assert res.exit_code == 0, res.output
    used = read_info(tmp_path / "p" / "ckpt-0000001.safetensors").training["precision"]
    assert used == ("bfloat16" if cpu_bf16().use_bf16 else "fp32")


def test_training_shows_its_work_json_and_progress(photos: Path, tmp_path: Path) -> None:
    """--json: one record per checkpoint on stdout, as they happen; default: a progress bar and a
    line per checkpoint on stderr; both keep train_log.jsonl and checkpoints.csv."""
    base = ["train", "stage1", "--data", str(photos), "--steps", "4", "--batch", "2", "--crop", "32",
            "--ckpt-every", "2", "--dim", "32", "--depth", "1", "--heads", "2", "--precision", "fp32",
            "--val-count", "1", "--val-size", "32", "--no-tags"]
    res = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "j"), "--json"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    assert [r["step"] for r in recs] == [2, 4]
    assert all(set(r) >= {"stage", "step", "loss", "lr", "val", "checkpoint"} for r in recs)
    assert recs[0]["val"]["psnr"] > 0 and Path(recs[1]["checkpoint"]).is_file()
    rows = (tmp_path / "j" / "checkpoints.csv").read_text().splitlines()
    assert rows[0].startswith("stage,step,loss,lr") and len(rows) == 3
    res = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "checkpoint step 2" in res.output and "checkpoint step 4" in res.output and "stage 1" in res.output
    quiet = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "q"), "--quiet"])
    assert quiet.exit_code == 0 and "checkpoint step" not in quiet.output


def test_version_flag() -> None:
    from linearsr_cli import __version__

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == __version__
