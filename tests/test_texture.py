"""Texture training: the sharpened target, the U-Net critic, adversarial stage 0 and stage 2 in
the one loop (resume is exact, the critic is saved and guarded, select-knee reads its
statistics), and distillation from a cached teacher. Tiny configs only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from linearsr_cli.degrade import gaussian_blur
from linearsr_cli.errors import ConfigError, TrainingError
from linearsr_cli.esgf.probe import scan_checkpoints
from linearsr_cli.nn.discriminator import DiscriminatorConfig, UNetDiscriminator
from linearsr_cli.nn.dit import LinearSR
from linearsr_cli.nn.span import Span, SpanConfig
from linearsr_cli.priors import load_prior
from linearsr_cli.train.adversarial import unsharp_mask
from linearsr_cli.train.data import PairDataset, validation_pairs
from linearsr_cli.train.loop import DatasetBatches, read_log, train
from linearsr_cli.train.prior import train_prior
from linearsr_cli.train.teacher import TeacherOutputs, build_cache, cache_key
from tests.test_train import data_cfg, quick_cfg, quick_prior_cfg, write_photos
from tests.util import tiny_model_config

RECORD = {"origin": "test", "licence": "Apache-2.0", "attribution": "test", "fine_tuning": []}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"))


def tiny_span(seed: int = 0) -> Span:
    torch.manual_seed(seed)
    return Span(SpanConfig(channels=6, blocks=1, scale=4))


GAN = dict(steps=6, ckpt_every=3, batch_size=2, lr=1e-3, lpips_weight=0.0, gan_weight=0.1, usm_target=True,
           disc_channels=4)


def gan_cfg(**kw):
    """An adversarial prior run: the Real-ESRGAN recipe's L1 + GAN on the unsharp-masked HR."""
    return quick_prior_cfg(**{**GAN, "l1_weight": 1.0, **kw})


def test_discriminator_judges_every_pixel_with_spectral_norm() -> None:
    d = UNetDiscriminator(DiscriminatorConfig(channels=4))
    out = d(torch.rand(2, 3, 32, 40))
    assert out.shape == (2, 1, 32, 40)
    normed = [m for m in d.modules() if hasattr(m, "parametrizations")]
    assert len(normed) == 8  # every conv but the first and the last
    with pytest.raises(ConfigError):
        DiscriminatorConfig(channels=0)


def test_unsharp_mask_sharpens_edges_and_leaves_flat_areas() -> None:
    flat = torch.full((1, 3, 24, 24), 0.4)
    torch.testing.assert_close(unsharp_mask(flat), flat)
    edge = torch.zeros(1, 3, 24, 24)
    edge[..., 12:] = 0.8
    sharp = unsharp_mask(edge)
    assert sharp.min() >= 0 and sharp.max() <= 1
    assert float(sharp[..., 13].mean()) > 0.8  # overshoot on the bright side of the edge
    # high-pass energy grows
    hp = lambda x: (x - gaussian_blur(x, 2.0)).abs().mean()  # noqa: E731
    assert hp(sharp) > hp(edge)


def test_one_term_list_builds_the_loss_and_its_words() -> None:
    """The texture recipe's terms in the checkpoint's words; the denoiser's weights have no L1 or
    distillation field, so those terms are never on for it."""
    from linearsr_cli.train.losses import LossWeights, PriorLossWeights, active_terms, describe
    from linearsr_cli.train.recipe import RecipeConfig

    assert describe(RecipeConfig().texture.loss) == "L1 1 + ST-LPIPS 1 + GAN 0.1 (U-Net discriminator, spectral norm)"
    assert describe(PriorLossWeights(l1_weight=0.0, distill_weight=0.5)) == "L1 to the teacher's output 0.5"
    assert [t.name for t in active_terms(LossWeights(lpips_weight=1.0, gan_weight=0.1))] == ["lpips", "g_adv"]


def test_adversarial_stage0_resumes_exactly_with_its_critic(photos: Path, tmp_path: Path) -> None:
    data = data_cfg(photos)
    batches = DatasetBatches(PairDataset(data, "train"), 2)
    val = {"realistic": validation_pairs(data, size=32, degradation="realistic")[:1]}
    full = train_prior(tiny_span(), dict(RECORD), batches, gan_cfg(), tmp_path / "full", val=val)
    part = train_prior(tiny_span(), dict(RECORD), batches, gan_cfg(steps=3), tmp_path / "part")
    rest = train_prior(tiny_span(), dict(RECORD), batches, gan_cfg(), tmp_path / "part")
    assert part.step == 3 and rest.step == 6
    assert torch.allclose(torch.tensor(part.losses + rest.losses), torch.tensor(full.losses), rtol=1e-5, atol=1e-6)
    state = tmp_path / "full" / "ckpt-0000006.state.json"
    assert "critic_param_groups" in json.loads(state.read_text())
    log = read_log(tmp_path / "full")
    assert {"l1", "g_adv", "d_loss", "d_real", "d_fake"} <= set(log[-1])
    _, record = load_prior(tmp_path / "full" / "ckpt-0000006.safetensors")
    stage = record["fine_tuning"][-1]
    assert "GAN 0.1" in stage["what"] and "unsharp-masked" in stage["what"]
    assert set(stage["gan"]) == {"g_adv", "d_loss", "d_real", "d_fake"}
    # select-knee reads stage-0 prior checkpoints, with the critic's statistics
    probes, skipped = scan_checkpoints(tmp_path / "full")
    assert [p.step for p in probes] == [3, 6] and not skipped
    assert {"d_loss", "d_real", "d_fake", "psnr"} <= set(probes[-1].metrics)


def test_resuming_without_the_critic_it_was_saved_with_is_refused(photos: Path, tmp_path: Path) -> None:
    batches = DatasetBatches(PairDataset(data_cfg(photos), "train"), 2)
    train_prior(tiny_span(), dict(RECORD), batches, gan_cfg(steps=3, gan_weight=0.0), tmp_path / "run")
    with pytest.raises(TrainingError, match="cannot resume"):
        train_prior(tiny_span(), dict(RECORD), batches, gan_cfg(), tmp_path / "run")


def test_adversarial_stage2_trains_the_expert_against_the_critic(photos: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LinearSR(tiny_model_config(num_experts=1))
    batches = DatasetBatches(PairDataset(data_cfg(photos), "train"), 2)
    cfg = quick_cfg(**{**GAN, "steps": 2, "ckpt_every": 2, "lpips_weight": 0.5, "lpips_samples": 0})
    result = train(model, batches, cfg, tmp_path / "e")
    assert result.step == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    log = read_log(tmp_path / "e")
    assert {"mse", "lpips", "g_adv", "d_loss"} <= set(log[-1])


def test_teacher_cache_follows_the_batch_order(photos: Path, tmp_path: Path) -> None:
    data = data_cfg(photos)
    dataset = PairDataset(data, "train")
    calls = []

    def fake_teacher(lr: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.nn.functional.interpolate(lr[None], scale_factor=4, mode="nearest")[0]

    path = build_cache(dataset, 5, tmp_path / "t.safetensors", fake_teacher)
    assert len(calls) == 5 and cache_key(data, 5) != cache_key(data, 6)
    outputs = TeacherOutputs(path, batch_size=2)
    assert outputs.record["licence"] == "BSD-3-Clause"
    got = outputs(2)  # step 2 of batch 2 over 5 items: items 4, 0
    want = torch.stack([fake_teacher(dataset[i]["lr"]) for i in (4, 0)])
    torch.testing.assert_close(got, (want * 255).round() / 255, atol=1e-6, rtol=0)


def test_distillation_needs_a_teacher_and_records_it(photos: Path, tmp_path: Path) -> None:
    data = data_cfg(photos)
    dataset = PairDataset(data, "train")
    batches = DatasetBatches(dataset, 2)
    with pytest.raises(ConfigError, match="teacher"):
        train_prior(tiny_span(), dict(RECORD), batches, gan_cfg(distill_weight=1.0), tmp_path / "no")
    up = lambda lr: torch.nn.functional.interpolate(lr[None], scale_factor=4, mode="bicubic")[0].clamp(0, 1)  # noqa: E731
    teacher = TeacherOutputs(build_cache(dataset, 4, tmp_path / "t.safetensors", up), 2)
    train_prior(tiny_span(), dict(RECORD), batches, gan_cfg(steps=2, ckpt_every=2, gan_weight=0.0, distill_weight=1.0),
                tmp_path / "d", teacher=teacher, teacher_record=teacher.record)
    _, record = load_prior(tmp_path / "d" / "ckpt-0000002.safetensors")
    assert record["fine_tuning"][-1]["teacher"]["teacher"] == "Real-ESRGAN x4plus"
    assert "distill" in read_log(tmp_path / "d")[-1]


def test_a_wild_gradient_is_skipped_not_followed() -> None:
    from linearsr_cli.train.loop import _is_spike

    cfg = quick_cfg(spike_factor=20.0, spike_window=50).optim
    calm = [5.0 + 0.1 * i for i in range(30)]
    assert not _is_spike(300.0, calm[:9], cfg)  # too little history to judge
    assert _is_spike(330.0, calm, cfg) and not _is_spike(60.0, calm, cfg)


def test_critic_learning_rate_follows_the_run_on_resume(photos: Path, tmp_path: Path) -> None:
    batches = DatasetBatches(PairDataset(data_cfg(photos), "train"), 2)
    train_prior(tiny_span(), dict(RECORD), batches, gan_cfg(steps=3), tmp_path / "run")
    from linearsr_cli.train.loop import RunState

    run = RunState(tiny_span(), gan_cfg(disc_lr=3e-4), torch.device("cpu"))
    run.resume_or_reset(tmp_path / "run")
    assert run.step == 3 and run.critic is not None
    assert all(g["lr"] == 3e-4 for g in run.critic.opt.param_groups)
