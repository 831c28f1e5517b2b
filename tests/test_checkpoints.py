"""Weights files: exact round trip for 1/2/4 experts and a clear error for every bad file."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from linearsr_cli.checkpoints import load_weights, read_info, save_weights
from linearsr_cli.errors import WeightsError
from tests.util import random_model, tiny_model_config


@pytest.mark.parametrize("num_experts", [1, 2, 4])
def test_save_load_is_exact(tmp_path, num_experts):
    model = random_model(tiny_model_config(num_experts=num_experts))
    path = save_weights(
        tmp_path / "w.safetensors", model, provenance={"command": "test"}, training={"step": 3}
    )
    loaded, info = load_weights(path, expect_scale=4)
    assert info.config == model.cfg
    assert info.provenance == {"command": "test"} and info.training == {"step": 3}
    assert len(loaded.experts) == num_experts
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    lr = torch.rand(1, 3, 5, 5)
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(model(x, 0.7, lr), loaded(x, 0.7, lr))


def test_metadata_holds_boundaries_and_ids(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", random_model())
    info = read_info(path)
    assert len(info.config.expert_boundaries) == 3
    assert info.tagger and info.encoder
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    meta = json.loads(path.read_bytes()[8 : 8 + header_len])["__metadata__"]
    assert json.loads(meta["experts"])["boundaries"] == list(info.config.expert_boundaries)


def test_half_precision_storage_loads_as_fp32(tmp_path):
    model = random_model()
    path = save_weights(tmp_path / "w.safetensors", model, dtype=torch.float16)
    loaded, _ = load_weights(path)
    p = next(loaded.parameters())
    assert p.dtype == torch.float32


@pytest.fixture()
def good(tmp_path):
    return save_weights(tmp_path / "good.safetensors", random_model())


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        load_weights(tmp_path / "nope.safetensors")


def test_not_safetensors(tmp_path):
    bad = tmp_path / "model.pth"
    bad.write_bytes(b"\x80\x04\x95 pickled junk, never unpickled" * 10)
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_weights(bad)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_weights(empty)


def test_truncated(tmp_path, good):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match="truncated"):
        load_weights(cut)


def test_foreign_safetensors(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(WeightsError, match="not a LinearSR weights file"):
        load_weights(foreign)


def test_wrong_scale(good):
    with pytest.raises(WeightsError, match="x4.*x2"):
        load_weights(good, expect_scale=2)


def _rewrite(path, out, *, drop=None, add=None, reshape=None):
    from safetensors.torch import load_file

    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    meta = json.loads(path.read_bytes()[8 : 8 + header_len])["__metadata__"]
    tensors = load_file(str(path))
    if drop:
        del tensors[drop]
    if add:
        tensors[add] = torch.zeros(1)
    if reshape:
        tensors[reshape] = torch.zeros(tensors[reshape].numel() + 1)
    save_file(tensors, str(out), metadata=meta)
    return out


def test_missing_extra_and_shape_mismatch_keys(tmp_path, good):
    key = "experts.0.head.weight"
    with pytest.raises(WeightsError, match=rf"missing keys \(1\): {key}"):
        load_weights(_rewrite(good, tmp_path / "a.safetensors", drop=key))
    with pytest.raises(WeightsError, match=r"unexpected keys \(1\): bogus"):
        load_weights(_rewrite(good, tmp_path / "b.safetensors", add="bogus"))
    with pytest.raises(WeightsError, match=rf"shape mismatch \(1\): {key}"):
        load_weights(_rewrite(good, tmp_path / "c.safetensors", reshape=key))


def test_bad_config_metadata(tmp_path, good):
    from safetensors.torch import load_file

    header_len = struct.unpack("<Q", good.read_bytes()[:8])[0]
    meta = json.loads(good.read_bytes()[8 : 8 + header_len])["__metadata__"]
    meta["model"] = json.dumps({**json.loads(meta["model"]), "patch": 6})
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(good)), str(bad), metadata=meta)
    with pytest.raises(WeightsError, match="bad model config"):
        load_weights(bad)
