"""Refinement experts trained over the prior (issue 23): stage 2 continues an expert of a
finished mixture, can noise the priors' output instead of HR (--start-from-prior), and
`train revise --expert` puts the result back into the mixture."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from linearsr_cli.checkpoints import load_weights, read_info, save_weights
from linearsr_cli.errors import ConfigError
from linearsr_cli.nn.dit import bicubic_upsample
from linearsr_cli.priors import SpanConfig, save_prior
from linearsr_cli.train.recipe import mixture_expert, prior_start, revise_weights, run_stage2
from tests.test_prior import RECORD, TINY_SPAN, random_span
from tests.test_train import data_cfg, quick_cfg, write_photos
from tests.util import random_model, tiny_model_config


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"))


def _mixture(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A 4-expert file as shipped (bare structure expert over clean/real priors) and prior files."""
    inputs = ("clean", "real")
    cfg = dataclasses.replace(tiny_model_config(**TINY_SPAN).with_prior(inputs, (0,)), bare_experts=(0,))
    path = save_weights(tmp_path / "mix.safetensors", random_model(cfg, seed=1),
                        priors={n: {**RECORD, "name": n} for n in inputs}, dtype=torch.float16)
    specs = {n: str(save_prior(tmp_path / f"{n}.safetensors", random_span(SpanConfig(channels=6, blocks=1), seed=s), RECORD))
             for n, s in (("clean", 2), ("real", 3))}
    return path, specs


def test_prior_start_is_each_samples_prior_as_a_residual(tmp_path: Path) -> None:
    _, specs = _mixture(tmp_path)
    base = random_model(tiny_model_config(num_experts=1), seed=4)
    start = prior_start(base, specs, torch.device("cpu"))
    lr = torch.rand(2, 3, 6, 5)
    got = start(lr, ["realistic", "bicubic"])
    from linearsr_cli.priors import load_prior

    for i, name in enumerate(("real", "clean")):
        net, _ = load_prior(specs[name])
        with torch.no_grad():
            want = (net(lr[i : i + 1]) - bicubic_upsample(lr[i : i + 1], 4)) / base.cfg.residual_scale
        torch.testing.assert_close(got[i : i + 1], want, atol=1e-5, rtol=0)
    assert not got.requires_grad


def test_stage2_continues_a_mixture_expert_from_the_prior_and_revise_puts_it_back(photos: Path, tmp_path: Path) -> None:
    mix, specs = _mixture(tmp_path)
    model, _ = load_weights(mix)
    one = mixture_expert(model, 2, mix)
    assert one.cfg.num_experts == 1 and not one.cfg.has_prior
    for k, v in model.experts[2].state_dict().items():  # it continues from the mixture's own expert
        assert torch.equal(one.experts[0].state_dict()[k], v)
    with pytest.raises(ConfigError, match="carries the priors"):
        mixture_expert(model, 0, mix)

    cfg = quick_cfg(steps=2, ckpt_every=2, batch_size=2)
    r = run_stage2(mix, 2, data_cfg(photos), cfg, tmp_path / "e2", num_experts=4, priors=specs, start_from_prior=True)
    ckpt = tmp_path / "e2" / "ckpt-0000002.safetensors"
    assert r.step == 2 and ckpt.exists()
    training = read_info(ckpt).training
    assert training["start"] == {"from": "prior", "priors": specs} and training["t_range"] == pytest.approx([0.125, 0.5])
    with pytest.raises(ConfigError, match="needs the priors"):
        run_stage2(mix, 1, data_cfg(photos), cfg, tmp_path / "e1", num_experts=4, start_from_prior=True)

    out = revise_weights(mix, tmp_path / "rev.safetensors", experts={2: ckpt})
    revised, info = load_weights(out)
    trained, _ = load_weights(ckpt)
    for k, v in trained.experts[0].state_dict().items():
        torch.testing.assert_close(revised.experts[2].state_dict()[k], v.half().float())
    for e in (1, 3):  # the others are kept
        for k, v in model.experts[e].state_dict().items():
            assert torch.equal(revised.experts[e].state_dict()[k], v)
    assert info.provenance["experts"][2]["checkpoint"] == str(ckpt) and info.provenance["revisions"][-1]["experts"] == [2]
    assert info.priors["real"]["name"] == "real"  # the priors and their records stay
    with pytest.raises(ConfigError, match="carries the priors"):
        revise_weights(mix, tmp_path / "bad.safetensors", experts={0: ckpt})
    with pytest.raises(ConfigError, match="not a 1-expert checkpoint"):
        revise_weights(mix, tmp_path / "bad.safetensors", experts={1: mix})


def test_unrolled_training_moves_only_the_expert_networks_and_writes_whole_weights(photos: Path, tmp_path: Path) -> None:
    from linearsr_cli.config import SamplerConfig
    from linearsr_cli.train.data import PairDataset
    from linearsr_cli.train.loop import DatasetBatches
    from linearsr_cli.train.unrolled import train_unrolled
    from tests.test_train import quick_prior_cfg

    mix, _ = _mixture(tmp_path)
    model, info = load_weights(mix)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = DatasetBatches(PairDataset(data_cfg(photos), "train"), 2)
    cfg = quick_prior_cfg(steps=2, ckpt_every=2, batch_size=2, l1_weight=1.0, lpips_weight=0.0, ema_decay=0.0)
    sampler = SamplerConfig(steps=3, shift=0.4)
    r = train_unrolled(model, info, batches, cfg, tmp_path / "u", sampler=sampler, prior="real")
    assert r.step == 2
    trained, got = load_weights(tmp_path / "u" / "ckpt-0000002.safetensors")
    after = trained.state_dict()
    moved = {k for k, v in before.items() if not torch.allclose(after[k], v)}
    assert moved and all(k.startswith(("experts.1.", "experts.2.", "experts.3.")) for k in moved)
    assert got.priors == info.priors and got.config == info.config
    assert "2-step" not in got.training["unrolled"]["what"] and "'real' prior" in got.training["unrolled"]["what"]
    with pytest.raises(ConfigError, match="multi-step"):
        train_unrolled(model, info, batches, cfg, tmp_path / "v", sampler=SamplerConfig(steps=1), prior="real")
    with pytest.raises(ConfigError, match="texture"):
        train_unrolled(model, info, batches, cfg, tmp_path / "w", sampler=sampler, prior="texture")
