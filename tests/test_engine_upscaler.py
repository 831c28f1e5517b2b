"""The Upscaler's call contract, device/dtype choice, auto tiling and out-of-memory retry."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from linearsr_cli.checkpoints import resolve_weights
from linearsr_cli.config import PRESETS, ModelConfig, SamplerConfig, TileConfig, sampler_config
from linearsr_cli.engine.device import (
    DevicePlan,
    choose_device,
    choose_dtype,
    distributed_rank,
    is_out_of_memory,
    plan_device,
    training_device,
)
from linearsr_cli.engine.upscaler import Upscaler, auto_tile
from linearsr_cli.errors import ConfigError, DeviceError, WeightsError
from linearsr_cli.nn.dit import LinearSR
from tests.conftest import synthetic_photo
from tests.util import random_model, tiny_model_config

CPU = DevicePlan(torch.device("cpu"), None)


def image(h: int, w: int) -> torch.Tensor:
    return torch.from_numpy(synthetic_photo(h, w, seed=2)).permute(2, 0, 1).contiguous()


@pytest.fixture(scope="module")
def model() -> LinearSR:
    return random_model(tiny_model_config(), seed=1, std=0.15)


def test_call_contract(model: LinearSR) -> None:
    up = Upscaler(model, CPU, TileConfig())
    for h, w in [(1, 1), (3, 1), (5, 7)]:
        out = up(image(h, w), SamplerConfig(steps=1))
        assert out.shape == (3, 4 * h, 4 * w) and out.dtype == torch.float32 and out.device.type == "cpu"
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    with pytest.raises(ValueError):
        up(torch.rand(1, 3, 4, 4), SamplerConfig())
    calls = []
    up(image(6, 6), SamplerConfig(steps=3, solver="heun"), progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (5, 5)  # 2 * 3 - 1 evaluations, one tile each


def test_bf16_autocast_within_tolerance_of_fp32(model: LinearSR) -> None:
    """The stated tolerance for --dtype bf16 on the CPU: max |diff| < 0.01, PSNR >= 50 dB."""
    lr = image(32, 40)
    ref = Upscaler(model, CPU, TileConfig())(lr, SamplerConfig(seed=4))
    bf16 = Upscaler(model, DevicePlan(torch.device("cpu"), torch.bfloat16), TileConfig())(lr, SamplerConfig(seed=4))
    diff = bf16 - ref
    assert bf16.dtype == torch.float32
    assert float(diff.abs().max()) < 0.01
    assert 10 * math.log10(1 / float((diff**2).mean())) >= 50


class OomAbove(torch.nn.Module):
    """The real model, but raising the CPU allocator's out-of-memory error for large inputs."""

    def __init__(self, inner: LinearSR, max_lr_pixels: int) -> None:
        super().__init__()
        self.inner = inner
        self.cfg = inner.cfg
        self.max_lr_pixels = max_lr_pixels
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x_t, t, lr, tags=None, tag_mask=None, prior=None):  # type: ignore[no-untyped-def]
        self.sizes.append(tuple(lr.shape[-2:]))
        if lr.shape[-2] * lr.shape[-1] > self.max_lr_pixels:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return self.inner(x_t, t, lr, tags, tag_mask, prior)


def test_out_of_memory_retries_with_smaller_tiles(model: LinearSR) -> None:
    lr = image(80, 80)
    flaky = OomAbove(model, max_lr_pixels=48 * 48)
    out = Upscaler(flaky, CPU, TileConfig(tile=0, overlap=8))(lr, SamplerConfig(steps=2, solver="euler", seed=9))
    assert flaky.sizes[0] == (80, 80)  # tried whole, then 40-pixel tiles
    assert max(h * w for h, w in flaky.sizes[1:]) <= 48 * 48
    direct = Upscaler(model, CPU, TileConfig(tile=40, overlap=8))(lr, SamplerConfig(steps=2, solver="euler", seed=9))
    assert torch.allclose(out, direct, atol=1e-6)
    hopeless = OomAbove(model, max_lr_pixels=4)
    with pytest.raises(DeviceError, match="out of memory"):
        Upscaler(hopeless, CPU, TileConfig(tile=0, overlap=8))(lr, SamplerConfig())
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_auto_tile_follows_the_memory_budget() -> None:
    cfg = ModelConfig()
    assert auto_tile(cfg, TileConfig(), 500, 500) == 0  # fits: whole image
    side = auto_tile(cfg, TileConfig(), 1500, 2000)
    assert 0 < side < 1500 and side % cfg.lr_per_token == 0
    assert auto_tile(cfg, TileConfig(tile=96), 1500, 2000) == 96
    small = auto_tile(cfg, TileConfig(memory_budget_mb=64), 1500, 2000)
    assert 0 < small < side


def test_device_and_dtype_choice() -> None:
    assert choose_device("cpu").type == "cpu"
    assert choose_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(DeviceError):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            choose_device("cuda")
    assert choose_dtype("fp32", torch.device("cpu")) is None
    assert choose_dtype("auto", torch.device("cuda")) == torch.float16
    assert choose_dtype("auto", torch.device("mps")) is None
    assert choose_dtype("auto", torch.device("cpu")) in (None, torch.bfloat16)
    assert choose_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(DeviceError):
        choose_dtype("int8", torch.device("cpu"))
    assert plan_device("cpu", "fp32").describe() == "cpu fp32"


def test_training_device_is_the_same_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    assert training_device("cpu").type == "cpu"
    assert training_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")  # never mps
    with pytest.raises(DeviceError, match="training device"):
        training_device("mps")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device"):  # choose_device's own message
            training_device("cuda")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert distributed_rank() == (3, 4)


def test_sampler_presets_and_overrides() -> None:
    assert sampler_config("fidelity") == PRESETS["fidelity"]
    perceptual = sampler_config("perceptual", seed=3)
    assert perceptual.steps == PRESETS["perceptual"].steps and perceptual.seed == 3
    assert sampler_config("perceptual", steps=8, solver="euler").solver == "euler"
    assert sampler_config("perceptual", shift=0.4).shift == 0.4
    assert sampler_config("perceptual").shift == PRESETS["perceptual"].shift
    with pytest.raises(ConfigError):
        sampler_config("pretty")
    with pytest.raises(ConfigError):
        sampler_config("perceptual", shift=0.0)


def test_weights_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_weights: Path) -> None:
    monkeypatch.setenv("LINEARSR_WEIGHTS", str(tiny_weights))
    assert resolve_weights(None) == tiny_weights
    assert resolve_weights(tiny_weights) == tiny_weights
    monkeypatch.setenv("LINEARSR_WEIGHTS", str(tmp_path / "gone.safetensors"))
    with pytest.raises(WeightsError, match="LINEARSR_WEIGHTS"):
        resolve_weights(None)
    up = Upscaler.from_weights(tiny_weights, CPU, TileConfig(), expect_scale=4)
    assert up.scale == 4 and up.info is not None
    with pytest.raises(WeightsError, match="x2"):
        Upscaler.from_weights(tiny_weights, CPU, TileConfig(), expect_scale=2)


def test_cpu_allocator_tuning_is_idempotent_and_keeps_results():
    from linearsr_cli.engine.device import tune_cpu_allocator

    first = tune_cpu_allocator()
    assert tune_cpu_allocator() == first  # applied once per process
    x = torch.randn(9_000_000)  # > 32 MiB: would be a fresh mmap without the tuning
    assert torch.equal(torch.relu(x), x.clamp(min=0))


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path):
    from linearsr_cli.fileio import write_atomic

    target = tmp_path / "sub" / "f.bin"
    write_atomic(target, b"old")
    write_atomic(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]
