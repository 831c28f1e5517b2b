"""The LinearSR transformer: shapes on any size, determinism, routing, residual composition."""

from __future__ import annotations

import pytest
import torch

from linearsr_cli.config import ModelConfig, SamplerConfig
from linearsr_cli.errors import ConfigError
from linearsr_cli.nn.dit import LinearSR, compose_output, residual_target
from linearsr_cli.sampling.samplers import draw_noise, sample
from tests.util import random_model, tiny_model_config


@pytest.mark.parametrize("hw", [(1, 1), (1, 9), (7, 5), (8, 8), (13, 4)])
def test_resolution_agnostic_any_size(hw):
    model = random_model()
    h, w = hw
    lr = torch.rand(1, 3, h, w)
    x = torch.randn(1, 3, 4 * h, 4 * w)
    with torch.no_grad():
        out = model(x, 0.5, lr)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_same_weights_run_on_different_sizes_and_crop_is_consistent():
    model = random_model(tiny_model_config(num_experts=1))
    lr = torch.rand(1, 3, 8, 8)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = model(x, 1.0, lr)
        b = model(x[..., :28, :28], 1.0, lr[..., :7, :7])
    assert b.shape == (1, 3, 28, 28)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()


def test_tags_change_output_and_all_masked_tags_equal_no_tags():
    model = random_model()
    lr = torch.rand(1, 3, 6, 6)
    x = torch.randn(1, 3, 24, 24)
    tags = torch.randn(1, 5, 384)
    with torch.no_grad():
        none = model(x, 0.3, lr)
        masked = model(x, 0.3, lr, tags, torch.zeros(1, 5, dtype=torch.bool))
        tagged = model(x, 0.3, lr, tags, torch.ones(1, 5, dtype=torch.bool))
    torch.testing.assert_close(masked, none, atol=1e-6, rtol=1e-6)
    assert (tagged - none).abs().max() > 1e-4


def test_sampling_is_bit_identical_for_the_same_seed():
    model = random_model()
    lr = torch.rand(1, 3, 9, 7)
    cfg = SamplerConfig(steps=4, solver="dpmpp2m", seed=123)

    def run(seed):
        noise = draw_noise((1, 3, 36, 28), seed)
        with torch.no_grad():
            return sample(lambda x, t: model(x, t, lr), noise, cfg)

    a, b, c = run(123), run(123), run(124)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_residual_round_trip():
    cfg = tiny_model_config()
    hr = torch.rand(1, 3, 32, 32)
    lr = torch.nn.functional.avg_pool2d(hr, 4)
    x0 = residual_target(hr, lr, cfg)
    torch.testing.assert_close(compose_output(lr, x0, cfg), hr, atol=1e-5, rtol=0)


def test_softmax_twin_loads_the_linear_weights():
    lin = random_model(tiny_model_config(attention="linear"))
    soft = LinearSR(tiny_model_config(attention="softmax"))
    soft.load_state_dict(lin.state_dict(), strict=True)
    lr = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        assert soft(torch.randn(1, 3, 16, 16), 0.5, lr).shape == (1, 3, 16, 16)


def test_bf16_autocast_output_close_to_fp32():
    model = random_model(std=0.05)
    lr = torch.rand(1, 3, 8, 8)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x, 1.0, lr)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, 1.0, lr).float()
    assert torch.isfinite(low).all()
    assert (low - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


def test_config_validation():
    with pytest.raises(ConfigError, match="multiple of scale"):
        ModelConfig(scale=3, patch=8)
    with pytest.raises(ConfigError, match="1, 2 or 4"):
        ModelConfig(num_experts=3)
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({"dim": 8, "bogus": 1})
    cfg = ModelConfig()
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_mix_ffn_is_local_on_the_token_grid():
    from linearsr_cli.nn.blocks import MixFFN

    torch.manual_seed(0)
    ffn = MixFFN(8, 12)
    h, w = 6, 7
    x = torch.randn(1, h * w, 8)
    x2 = x.clone()
    x2[0, 3 * w + 4] += 1.0  # poke token (row 3, col 4)
    with torch.no_grad():
        diff = (ffn(x2, (h, w)) - ffn(x, (h, w))).abs().sum(-1).view(h, w)
    changed = {(int(r), int(c)) for r, c in (diff > 1e-7).nonzero()}
    assert changed == {(r, c) for r in range(2, 5) for c in range(3, 6)}  # its 3x3 neighbourhood


def test_stem_blocks_add_lr_resolution_capacity_and_keep_old_keys():
    """stem_blocks = 0 keeps the original two-conv stem (the keys old weight files hold);
    residual blocks add parameters at LR resolution and still run on any size."""
    plain = LinearSR(tiny_model_config(num_experts=1))
    deep = random_model(tiny_model_config(num_experts=1, stem_blocks=2))
    plain_keys = {k for k in plain.state_dict() if ".stem." in k}
    assert plain_keys == {f"experts.0.stem.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    assert sum(p.numel() for p in deep.parameters()) > sum(p.numel() for p in plain.parameters())
    lr = torch.rand(1, 3, 7, 5)
    with torch.no_grad():
        out = deep(torch.randn(1, 3, 28, 20), 1.0, lr)
    assert out.shape == (1, 3, 28, 20) and torch.isfinite(out).all()
    with pytest.raises(ConfigError, match="stem_blocks"):
        ModelConfig(stem_blocks=-1)
