"""Capability predicates and the device/dtype choice, in one place.

`auto` picks: CUDA with fp16 autocast (the linear-attention accumulators stay fp32 inside the
kernel), else MPS in fp32 (fp16 on MPS is unreliable for this model), else the CPU with bf16
autocast when the CPU has native bf16 matmuls, fp32 otherwise. See BENCHMARKS.md for the CPU
measurement behind that choice and the tolerance against fp32.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from dataclasses import dataclass

import torch

from linearsr_cli.errors import DeviceError

DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def cuda_available() -> bool:
    return torch.cuda.is_available()


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def cuda_supports_bf16() -> bool:
    return cuda_available() and torch.cuda.is_bf16_supported()


def cpu_supports_bf16() -> bool:
    """True when oneDNN can run bf16 matmuls natively (AVX512-BF16 / AMX) or via AVX512 emulation
    that is still faster than fp32; ARM and plain AVX2 machines get fp32."""
    mkldnn = getattr(torch.backends, "mkldnn", None)
    if mkldnn is None or not mkldnn.is_available():
        return False
    checker = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if checker is None:
        return False
    try:
        return bool(checker())
    except RuntimeError:
        return False


@functools.cache
def tune_cpu_allocator() -> bool:
    """Keep big CPU tensors on glibc's heap instead of fresh mmap()s (once per process).

    glibc serves every allocation over 32 MiB with its own mmap and unmaps it on free, so each
    large activation is page-faulted and zeroed again on every layer: at 2048^2 output that made
    elementwise ops ~5x slower and the forward pass superlinear in pixels (BENCHMARKS.md, issue
    3). With mmap off and trimming deferred, freed blocks are reused. The cost is a resident set
    that stays near its peak until the process exits, which a batch upscaler can afford.
    Returns False where it does not apply (not Linux/glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class DevicePlan:
    """Where and how to run: the device, and the autocast dtype (None = plain fp32)."""

    device: torch.device
    autocast: torch.dtype | None

    @property
    def dtype_name(self) -> str:
        if self.autocast is None:
            return "fp32"
        return {v: k for k, v in DTYPES.items()}[self.autocast]

    def describe(self) -> str:
        return f"{self.device.type} {self.dtype_name}"


def choose_device(name: str) -> torch.device:
    """The torch device for --device; raises DeviceError when it is not available here."""
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        if cuda_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not cuda_available():
        raise DeviceError("--device cuda asked for, but no CUDA device is available")
    if name == "mps" and not mps_available():
        raise DeviceError("--device mps asked for, but MPS is not available")
    return torch.device(name)


def choose_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for --dtype on `device`; None means fp32 without autocast."""
    if name == "auto":
        if device.type == "cuda":
            return torch.float16
        if device.type == "cpu" and cpu_supports_bf16():
            return torch.bfloat16
        return None
    if name not in DTYPES:
        raise DeviceError(f"unknown dtype {name!r}; choose auto, {', '.join(DTYPES)}")
    if name == "fp32":
        return None
    if device.type == "mps" and name == "bf16":
        raise DeviceError("bf16 is not supported on MPS; use fp32 or fp16")
    if device.type == "cuda" and name == "bf16" and not cuda_supports_bf16():
        raise DeviceError("this CUDA device has no bf16 support; use fp16 or fp32")
    return DTYPES[name]


def plan_device(device: str = "auto", dtype: str = "auto") -> DevicePlan:
    """Resolve --device and --dtype together."""
    dev = choose_device(device)
    return DevicePlan(dev, choose_dtype(dtype, dev))


def available_devices() -> list[str]:
    """Devices usable here, for `linearsr info`."""
    out = ["cpu"]
    if cuda_available():
        out += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if mps_available():
        out.append("mps")
    return out


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the out-of-memory errors of every backend (CUDA, MPS, the CPU allocator)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(exc, MemoryError)
    )
