"""The priors through ncnn (issue 24 part 6): the ncnn writer, the graph of our own priors, ncnn's
output against PyTorch's, the one backend decision (timed once, forced by the environment,
torch without the package) and the fidelity path that runs the prior alone.

Inputs are smooth synthetic photos: on uniform noise SPAN's x255 input scaling and its sigmoid
gate amplify summation-order differences (as between NCHW and channels_last in PyTorch).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import linearsr_cli.engine.device as device
import linearsr_cli.engine.upscaler as upscaler_mod
import linearsr_cli.sampling.noise as noise_mod
from linearsr_cli.cli import EXIT_USAGE, app
from linearsr_cli.config import PRESETS, TileConfig
from linearsr_cli.engine.device import (
    PRIOR_BACKEND_ENV,
    cpu_prior_backend,
    ncnn_available,
    plan_device,
)
from linearsr_cli.engine.ncnn_prior import CpuPrior, NcnnPrior, prior_graph
from linearsr_cli.engine.route import choose_input
from linearsr_cli.engine.upscaler import Conditioning, Upscaler
from linearsr_cli.errors import DeviceError, WeightsError
from linearsr_cli.ncnn_files import (
    Graph,
    Layer,
    parse_param,
    read_weights,
    write_param,
    write_weights,
)
from linearsr_cli.nn.dit import compose_output
from linearsr_cli.nn.span import Span, SpanConfig
from linearsr_cli.nn.srvgg import Srvgg, SrvggConfig
from linearsr_cli.priors import span_state_from_ncnn, srvgg_state_from_ncnn
from tests.conftest import synthetic_photo
from tests.util import routed_prior_weights

needs_ncnn = pytest.mark.skipif(not ncnn_available(), reason="the optional ncnn package is not installed")
FIDELITY, PERCEPTUAL = PRESETS["fidelity"], PRESETS["perceptual"]


def _random(net: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return net.eval()


def _span(seed: int = 0) -> Span:
    span = _random(Span(SpanConfig(channels=8, blocks=2)), seed)
    span.mean.copy_(torch.tensor([0.45, 0.44, 0.40]).reshape(1, 3, 1, 1))
    return span  # type: ignore[return-value]


def _photo(h: int = 20, w: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(synthetic_photo(h, w, seed).transpose(2, 0, 1).copy())  # (3, h, w)


@pytest.fixture(autouse=True)
def _fresh_decision(monkeypatch: pytest.MonkeyPatch):
    """Every test starts with no cached probe and no forced backend."""
    monkeypatch.delenv(PRIOR_BACKEND_ENV, raising=False)
    device._timed_prior_backend.cache_clear()
    yield
    device._timed_prior_backend.cache_clear()


# ----------------------------------------------------------------------------- the ncnn writer


def test_written_files_read_back_and_shared_blobs_get_a_split() -> None:
    g = Graph()
    data = g.add("Input")
    mean = g.add("MemoryData", params={0: 1, 1: 1, 2: 3}, arrays=(np.array([0.1, 0.2, 0.3]),))
    x = g.add("BinaryOp", data, mean, params={0: 1})
    conv = g.add("Convolution", x, params={0: 2, 1: 1, 5: 1, 6: 6}, arrays=(np.arange(6.0), np.array([7.0, 8.0])))
    act = g.add("PReLU", conv, params={0: 2}, arrays=(np.array([0.25, 0.5]),))
    g.add("BinaryOp", act, data, params={0: 0, 2: 0.5})  # `data` feeds two layers
    param, weights = g.files()
    layers = parse_param(param)
    assert write_param(layers) == param
    splits = [ly for ly in layers if ly.kind == "Split"]
    assert [(s.bottoms, len(s.tops)) for s in splits] == [((data,), 2)]
    assert layers[-1].params == {0: "0", 2: "5.000000e-01"}  # floats keep an exponent for ncnn
    arrays = read_weights(layers, weights)
    assert arrays[conv][0].tolist() == list(range(6)) and arrays[conv][1].tolist() == [7, 8]
    assert arrays[act][0].tolist() == [0.25, 0.5] and np.allclose(arrays[mean][0], [0.1, 0.2, 0.3])


def test_write_weights_refuses_an_array_of_the_wrong_size() -> None:
    conv = Layer("Convolution", "c", ("x",), ("y",), {0: "2", 1: "1", 5: "1", 6: "6"})
    with pytest.raises(WeightsError, match="declares 6"):
        write_weights([conv], {"c": [np.zeros(5, np.float32), np.zeros(2, np.float32)]})


def test_our_graphs_read_back_as_the_same_networks() -> None:
    """The converters of the released files (priors.py) read our graphs: same config, same tensors."""
    span = _span()
    cfg, state = span_state_from_ncnn(*prior_graph(span))
    assert cfg == span.cfg and state.keys() == span.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in span.state_dict().items())
    vgg = _random(Srvgg(SrvggConfig(features=8, convs=3, scale=2)))
    cfg, state = srvgg_state_from_ncnn(*prior_graph(vgg))
    assert cfg == vgg.cfg and all(torch.equal(state[k], v) for k, v in vgg.state_dict().items())


# ----------------------------------------------------------------------------- ncnn against torch


@needs_ncnn
@pytest.mark.parametrize("arch", ["span", "srvgg"])
def test_ncnn_prior_matches_the_torch_prior(arch: str) -> None:
    net = _span() if arch == "span" else _random(Srvgg(SrvggConfig(features=8, convs=3, scale=4)))
    lr = torch.stack([_photo(), _photo(seed=1)])  # (2, 3, 20, 28)
    with torch.no_grad():
        ref = net(lr)
    got = NcnnPrior(net)(lr)
    assert got.shape == ref.shape == (2, 3, 80, 112) and got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)


@needs_ncnn
def test_forced_torch_and_ncnn_upscales_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole upscale (the prior-only fidelity path and a multi-step run through the structure
    expert) with the prior in ncnn stays within a level of the prior in torch."""
    weights = routed_prior_weights(tmp_path / "w.safetensors")
    lr = _photo(24, 32)
    outs = {}
    for backend in ("torch", "ncnn"):
        monkeypatch.setenv(PRIOR_BACKEND_ENV, backend)
        up = Upscaler.from_weights(weights, plan_device("cpu", "fp32"), TileConfig())
        outs[backend] = [up(lr, s, Conditioning(choose_input(up.cfg, None, "real").index)) for s in (FIDELITY, PERCEPTUAL)]
        assert up.model.prior_calls["real"].backend == backend  # type: ignore[attr-defined]
    for a, b in zip(outs["torch"], outs["ncnn"], strict=True):
        assert (a * 255 - b * 255).abs().max() <= 1.0


# ----------------------------------------------------------------------------- the decision


def test_the_probe_decides_once_per_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "ncnn_available", lambda: True)
    calls: list[object] = []
    times = {"span": (1.0, 0.5), "srvgg": (1.0, 0.95)}  # (torch s, ncnn s)

    def probe(net_cfg):  # type: ignore[no-untyped-def]
        calls.append(net_cfg)
        return times["srvgg" if isinstance(net_cfg, SrvggConfig) else "span"]

    monkeypatch.setattr(device, "time_prior_backends", probe)
    span_cfg, vgg_cfg = SpanConfig(channels=8, blocks=2), SrvggConfig(features=8, convs=3)
    first = cpu_prior_backend(span_cfg)
    assert first.backend == "ncnn" and "ncnn 500.0 ms" in first.reason
    assert cpu_prior_backend(span_cfg) is first and len(calls) == 1  # cached
    assert cpu_prior_backend(vgg_cfg).backend == "torch"  # within the margin: a tie stays torch
    assert len(calls) == 2


@needs_ncnn
def test_the_real_probe_times_both_and_picks_one() -> None:
    decision = cpu_prior_backend(SpanConfig(channels=8, blocks=2))
    assert decision.backend in ("torch", "ncnn")
    assert decision.torch_s is not None and decision.torch_s > 0 and decision.ncnn_s is not None and decision.ncnn_s > 0


def test_the_environment_forces_a_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "time_prior_backends", lambda cfg: pytest.fail("a forced backend is not timed"))
    monkeypatch.setattr(device, "ncnn_available", lambda: True)
    cfg = SpanConfig(channels=8, blocks=2)
    monkeypatch.setenv(PRIOR_BACKEND_ENV, "torch")
    assert cpu_prior_backend(cfg).backend == "torch"
    monkeypatch.setenv(PRIOR_BACKEND_ENV, "NCNN")
    assert cpu_prior_backend(cfg).backend == "ncnn"
    monkeypatch.setenv(PRIOR_BACKEND_ENV, "onnx")
    with pytest.raises(DeviceError, match="torch, ncnn"):
        cpu_prior_backend(cfg)


def test_a_bad_setting_stops_the_run_before_any_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = routed_prior_weights(tmp_path / "w.safetensors")
    monkeypatch.setenv(PRIOR_BACKEND_ENV, "onnx")
    with pytest.raises(DeviceError, match=PRIOR_BACKEND_ENV):
        Upscaler.from_weights(weights, plan_device("cpu", "fp32"), TileConfig())
    src = tmp_path / "in.png"
    Image.fromarray((synthetic_photo(16, 16) * 255).astype(np.uint8)).save(src)
    res = CliRunner().invoke(app, ["upscale", str(src), str(tmp_path / "out"), "--weights", str(weights), "--device", "cpu"])
    assert res.exit_code == EXIT_USAGE and "choose one of auto, torch, ncnn" in res.output
    assert not (tmp_path / "out").exists()


def test_without_the_ncnn_package_the_prior_runs_in_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ncnn", None)  # `import ncnn` fails, find_spec says absent
    assert not ncnn_available()
    cfg = SpanConfig(channels=8, blocks=2)
    decision = cpu_prior_backend(cfg)
    assert decision.backend == "torch" and "not installed" in decision.reason
    monkeypatch.setenv(PRIOR_BACKEND_ENV, "ncnn")
    with pytest.raises(DeviceError, match="pip install ncnn"):
        cpu_prior_backend(cfg)
    monkeypatch.delenv(PRIOR_BACKEND_ENV)
    up = Upscaler.from_weights(routed_prior_weights(tmp_path / "w.safetensors"), plan_device("cpu", "fp32"), TileConfig())
    out = up(_photo(), FIDELITY, Conditioning(choose_input(up.cfg, None, "real").index))
    assert out.shape == (3, 80, 112) and up.model.prior_calls["real"].backend == "torch"  # type: ignore[attr-defined]


def test_prior_calls_serve_inference_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With grad on (training), the prior modules run whatever the upscaler installed."""
    monkeypatch.setenv(PRIOR_BACKEND_ENV, "torch")
    up = Upscaler.from_weights(routed_prior_weights(tmp_path / "w.safetensors"), plan_device("cpu", "fp32"), TileConfig())
    up.model.prior_calls = {name: (lambda x: pytest.fail("a replacement ran with grad on")) for name in up.model.priors}
    lr = _photo()[None]
    assert up.model.prior_image(lr).requires_grad
    up.model.prior_calls = {name: (lambda x: torch.zeros(1, 3, 80, 112)) for name in up.model.priors}
    with torch.no_grad():
        assert up.model.prior_image(lr).abs().sum() == 0


def test_cpu_prior_decides_on_its_first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRIOR_BACKEND_ENV, "torch")
    span = _span()
    prior = CpuPrior(span)
    assert prior.backend is None  # nothing decided or built before a call
    lr = _photo()[None]
    with torch.no_grad():
        assert torch.equal(prior(lr), span(lr)) and prior.backend == "torch"


# ----------------------------------------------------------------------------- the prior-only path


def test_the_fidelity_run_is_the_prior_alone_and_draws_no_noise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bare 1-NFE run returns clamp(prior(LR)), which is bicubic + residual_scale * x0 of
    the prior's residual up to rounding, without drawing noise; multi-step runs still draw it;
    tiled runs blend the tiles' prior images, the composed residuals up to rounding."""
    monkeypatch.setenv(PRIOR_BACKEND_ENV, "torch")
    up = Upscaler.from_weights(routed_prior_weights(tmp_path / "w.safetensors"), plan_device("cpu", "fp32"), TileConfig())
    assert up.prior_only(FIDELITY) and not up.prior_only(PERCEPTUAL)
    lr = _photo(18, 22)
    cond = Conditioning(choose_input(up.cfg, None, "real").index)
    kind = cond.prior_tensor()
    with torch.no_grad():
        composed = compose_output(lr[None], up.model.prior_residual(lr[None], kind), up.cfg)[0]
    drawn: list[tuple] = []
    draw = noise_mod.draw_noise
    monkeypatch.setattr(noise_mod, "draw_noise", lambda shape, seed: drawn.append(tuple(shape)) or draw(shape, seed))
    out = up(lr, FIDELITY, cond)
    assert drawn == []
    torch.testing.assert_close(out, composed, atol=1e-6, rtol=0)
    assert out.min() >= 0 and out.max() <= 1
    up(lr, PERCEPTUAL, cond)
    assert drawn == [(1, 3, 72, 88)]
    # Tiled: the prior's image per tile against tiles of x0 composed with their bicubic region.
    # Those differ where a tile's own bicubic (edge-clamped at the cut) is not the image's, within
    # 2 LR pixels of the cut; a blend margin of 2 LR pixels (overlap 8) gives that zero weight.
    big = _photo(40, 48)
    tiled = Upscaler(up.model, up.plan, dataclasses.replace(up.tiles, tile=24, overlap=8))
    assert tiled.tile_count(40, 48) > 1
    fast = tiled(big, FIDELITY, cond)
    monkeypatch.setattr(upscaler_mod, "prior_only", lambda cfg, sampler: False)
    torch.testing.assert_close(fast, tiled(big, FIDELITY, cond), atol=1e-6, rtol=0)
