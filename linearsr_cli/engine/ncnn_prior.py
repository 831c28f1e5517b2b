"""The priors (SPAN, SRVGG) run by ncnn on the CPU: an optional backend for the conv stacks.

On some CPUs ncnn's x86 kernels run these small 3x3 conv stacks much faster than PyTorch's
oneDNN path (an AMD EPYC: SPAN x4 at 256^2 in 0.28 s through ncnn against 0.48 s in torch fp32),
on others slower (BENCHMARKS.md, issue 24 part 6); engine/device.cpu_prior_backend decides, once
per process, by timing both. This module builds and runs the ncnn side, and holds the
wrapper that applies that decision:

    prior_graph(net)   our torch prior -> (.param text, .bin bytes): the same graph as the
                       released ncnn exports (priors.span_state_from_ncnn and
                       srvgg_state_from_ncnn read it back), fp32 weights from the torch tensors
    CpuPrior(net)      the prior as the upscaler runs it on the CPU: torch or NcnnPrior, whichever
                       engine/device.cpu_prior_backend picks for its shape, on the first call
    NcnnPrior(net)     a callable with the torch prior's contract:
                       (B, 3, h, w) float RGB in [0, 1] -> (B, 3, s h, s w) float32 on the CPU, not
                       clamped; ncnn in fp32 (fp16/bf16 storage and arithmetic off), as many
                       threads as torch has when called

The `ncnn` package is optional (the `peers` extra): engine/device.ncnn_available says whether it
can be imported; nothing here imports it before a net is built. Loaded nets are kept per process, keyed
by the graph's SHA-256, so a second Upscaler on the same weights reuses them.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from linearsr_cli.engine.device import cpu_prior_backend
from linearsr_cli.ncnn_files import Graph, io_blobs, parse_param
from linearsr_cli.nn.prior_nets import PriorNet
from linearsr_cli.nn.span import Span
from linearsr_cli.nn.srvgg import Srvgg

# ncnn's reduced-precision paths, switched off so outputs match the torch prior in fp32
FP32_ONLY = ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_packed", "use_bf16_storage")
_CACHE_SIZE = 8
_NETS: OrderedDict[str, Any] = OrderedDict()  # graph SHA-256 -> loaded ncnn.Net


def _array(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().contiguous().numpy()


def _conv(g: Graph, x: str, conv: torch.nn.Conv2d) -> str:
    """A Convolution layer with bias from a torch Conv2d (square kernel, stride 1, 'same' pad)."""
    out_ch, _, k, _ = conv.weight.shape
    params = {0: out_ch, 1: k, 4: k // 2, 5: 1, 6: conv.weight.numel()}
    return g.add("Convolution", x, params=params, arrays=(_array(conv.weight), _array(conv.bias)))


def span_graph(net: Span) -> Graph:
    """The deploy-form SPAN graph (nn/span.py's docstring), as the released exports lay it out."""
    g = Graph()
    data = g.add("Input")
    mean = g.add("MemoryData", params={0: 1, 1: 1, 2: 3}, arrays=(_array(net.mean),))
    x = g.add("BinaryOp", data, mean, params={0: 1})  # x - mean
    x = g.add("BinaryOp", x, params={0: 2, 1: 1, 2: float(net.cfg.img_range)})  # * img_range
    f0 = f = f1 = a = _conv(g, x, net.conv_1)
    for i, block in enumerate(net.blocks):
        a = g.add("Swish", _conv(g, f, block.c1))
        c = _conv(g, g.add("Swish", _conv(g, a, block.c2)), block.c3)
        gate = g.add("BinaryOp", g.add("Sigmoid", c), params={0: 1, 1: 1, 2: 0.5})  # sigmoid(c) - 0.5
        f = g.add("BinaryOp", g.add("BinaryOp", c, f, params={0: 0}), gate, params={0: 2})  # (c + u) * gate
        if i == 0:
            f1 = f
    y = g.add("Concat", f0, _conv(g, f, net.conv_2), f1, a, params={0: 0})  # (4C, h, w)
    y = _conv(g, _conv(g, y, net.conv_cat), net.upsampler)  # (3 s^2, h, w)
    g.add("PixelShuffle", y, params={0: net.cfg.scale})  # (3, s h, s w)
    return g


def srvgg_graph(net: Srvgg) -> Graph:
    """SRVGGNetCompact (nn/srvgg.py's docstring): the conv/PReLU chain, pixel shuffle, plus the
    nearest-neighbour upsampled input."""
    g = Graph()
    data = g.add("Input")
    f = data
    for conv, act in zip([net.conv_first, *net.body], net.acts, strict=True):
        f = g.add("PReLU", _conv(g, f, conv), params={0: act.weight.numel()}, arrays=(_array(act.weight),))
    s = net.cfg.scale
    up = g.add("PixelShuffle", _conv(g, f, net.conv_last), params={0: s})  # (3, s h, s w)
    skip = g.add("Interp", data, params={0: 1, 1: float(s), 2: float(s)})  # nearest x s
    g.add("BinaryOp", up, skip, params={0: 0})
    return g


def prior_graph(net: PriorNet) -> tuple[str, bytes]:
    """(.param text, .bin bytes) of a prior network, fp32 weights."""
    graph = srvgg_graph(net) if isinstance(net, Srvgg) else span_graph(net)
    return graph.files()


def _load_net(param: str, weights: bytes) -> Any:
    """An ncnn.Net of the graph in fp32 on the CPU, from the per-process cache or loaded through
    a temporary folder (ncnn's Python API reads model files by path)."""
    import ncnn

    key = hashlib.sha256(param.encode() + weights).hexdigest()
    if key in _NETS:
        _NETS.move_to_end(key)
        return _NETS[key]
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    for flag in FP32_ONLY:
        setattr(net.opt, flag, False)
    net.opt.num_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="linearsr-ncnn-") as tmp:
        param_path, bin_path = Path(tmp) / "prior.param", Path(tmp) / "prior.bin"
        param_path.write_text(param)
        bin_path.write_bytes(weights)
        if net.load_param(str(param_path)) != 0 or net.load_model(str(bin_path)) != 0:
            raise RuntimeError("ncnn could not load the prior graph written by linearsr_cli.engine.ncnn_prior")
    _NETS[key] = net
    while len(_NETS) > _CACHE_SIZE:
        _NETS.popitem(last=False)
    return net


class NcnnPrior:
    """A prior network run by ncnn (see the module docstring for the contract). The graph is
    written from the network's weights when this is made: later changes to them are not seen."""

    def __init__(self, net: PriorNet) -> None:
        param, weights = prior_graph(net)
        self.scale = net.cfg.scale
        self._blobs = io_blobs(parse_param(param))
        self._net = _load_net(param, weights)

    def run(self, rgb: np.ndarray) -> np.ndarray:
        """One image: (3, h, w) float32 -> (3, s h, s w) float32."""
        import ncnn

        arr = np.ascontiguousarray(rgb, dtype=np.float32)
        self._net.opt.num_threads = torch.get_num_threads()  # the extractor copies the net's options
        mat = ncnn.Mat(arr)  # wraps `arr` without a copy: both stay referenced until extract returns
        with self._net.create_extractor() as ex:
            ex.input(self._blobs[0], mat)
            ret, out = ex.extract(self._blobs[1])
            if ret != 0:
                raise RuntimeError(f"ncnn extract failed with code {ret}")
            result = np.array(out, dtype=np.float32, copy=True)  # (3, s h, s w)
        del mat
        expected = (3, arr.shape[1] * self.scale, arr.shape[2] * self.scale)
        if result.shape != expected:
            raise RuntimeError(f"ncnn prior gave {result.shape} for an input of {arr.shape}, expected {expected}")
        return result

    def __call__(self, x: Tensor) -> Tensor:
        """(B, 3, h, w) -> (B, 3, s h, s w) float32 on the CPU, one ncnn pass per image."""
        outs = [self.run(img) for img in _array(x)]
        return torch.from_numpy(outs[0][None] if len(outs) == 1 else np.stack(outs))  # (B, 3, s h, s w)


class CpuPrior:
    """A prior network on the CPU, run by the library engine.device.cpu_prior_backend picks for
    its shape (torch or ncnn). Decided, and the ncnn graph written from the weights, on the first
    call: a prior the run never uses costs nothing."""

    def __init__(self, net: PriorNet, backend: str | None = None) -> None:
        self.net = net
        self.backend = backend  # "torch" or "ncnn" once decided; given, it is not asked (benchmarks)
        self._run: Callable[[Tensor], Tensor] | None = None

    def __call__(self, x: Tensor) -> Tensor:
        if self._run is None:
            self.backend = self.backend or cpu_prior_backend(self.net.cfg).backend
            self._run = NcnnPrior(self.net) if self.backend == "ncnn" else self.net
        return self._run(x)
