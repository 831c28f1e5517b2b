"""Capability predicates and the device/dtype choice, in one place: upscale, eval, training
and the benchmarks all ask `choose_dtype` (through `plan_device` or directly).

`auto` picks: on CUDA fp16 autocast for inference and bf16 (if supported, else fp16) for
training (the linear-attention accumulators stay fp32 inside the kernel either way); on MPS fp32
(fp16 on MPS is unreliable for this model); on the CPU bf16 autocast only when `cpu_bf16()`
says bf16 is really fast here, fp32 otherwise. A CPU without native bf16 (AVX2-only, many AMD
and older Intel machines) emulates it about 50x slower than fp32, so the decision is a static
predicate (oneDNN's native-bf16 check) confirmed by timing one matmul in each dtype, once per
process. See BENCHMARKS.md for the measurements.

The priors' conv stacks (SPAN, SRVGG) run in fp32 whatever the dtype, on the CPU through PyTorch
or through ncnn (`engine/ncnn_prior.py`, when the optional `ncnn` package is installed):
`cpu_prior_backend` times both on a small stand-in of the prior's shape, once per process and
shape, and takes ncnn only when it is clearly faster; `LINEARSR_PRIOR_BACKEND=torch|ncnn|auto`
forces a side. Other devices always run the priors in PyTorch.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import sys
import time
from dataclasses import dataclass

import torch

from linearsr_cli.errors import DeviceError
from linearsr_cli.nn import prior_nets

DEVICES = ("auto", "cuda", "mps", "cpu")
TRAINING_DEVICES = ("auto", "cpu", "cuda")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def cuda_available() -> bool:
    return torch.cuda.is_available()


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def cuda_supports_bf16() -> bool:
    return cuda_available() and torch.cuda.is_bf16_supported()


def cpu_supports_bf16() -> bool:
    """oneDNN's static check: AVX512-BF16 / AMX (or AVX512 emulation it considers worth it).
    ARM and plain AVX2 machines: False."""
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


def cpu_capability() -> str:
    """The SIMD level PyTorch dispatches to on this CPU (e.g. AVX2, AVX512)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def matmul_gflops(dtype: torch.dtype, n: int = 256, repeats: int = 3) -> float:
    """GFLOP/s of an n x n matmul in `dtype` on the CPU (best of `repeats`, after a warm-up)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / max(best, 1e-9) / 1e9


@dataclass(frozen=True)
class Bf16Decision:
    """Whether the CPU runs bf16 autocast, and why (for `linearsr info`)."""

    use_bf16: bool
    reason: str
    capability: str
    fp32_gflops: float | None = None
    bf16_gflops: float | None = None


@functools.cache
def cpu_bf16() -> Bf16Decision:
    """The one CPU bf16 decision, made once per process: bf16 only when oneDNN reports native
    support AND a timed bf16 matmul is at least 1.2x the fp32 one (emulated bf16 is far slower)."""
    cap = cpu_capability()
    if not cpu_supports_bf16():
        return Bf16Decision(False, f"no native bf16 matmuls on this CPU (capability {cap}): fp32", cap)
    # interleaved rounds, best of each: one stall of a busy or throttled machine cannot flip it
    # (a single round once chose emulated bf16 on an AVX-512 CPU whose bf16 is 5.6x slower)
    fp32, bf16 = 0.0, 0.0
    for _ in range(5):
        fp32 = max(fp32, matmul_gflops(torch.float32))
        bf16 = max(bf16, matmul_gflops(torch.bfloat16))
    if bf16 >= 1.2 * fp32:
        return Bf16Decision(True, f"native bf16, measured {bf16:.0f} vs fp32 {fp32:.0f} GFLOP/s: bf16", cap, fp32, bf16)
    return Bf16Decision(
        False, f"bf16 reported but measured {bf16:.0f} vs fp32 {fp32:.0f} GFLOP/s: fp32", cap, fp32, bf16
    )


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


def release_cpu_memory() -> bool:
    """Hand the CPU heap's free pages back to the system (glibc's malloc_trim).

    tune_cpu_allocator keeps freed blocks for reuse, which a 1 MP photo can afford; after the
    tiles of a 12 MP photo at x4 that is gigabytes of freed activations still resident when its
    output is encoded (issue 24, BENCHMARKS.md). The engine calls this after each tile, after a
    resample and after each written file; it costs milliseconds. False where it does not apply
    (not Linux/glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def prefers_channels_last(device: torch.device) -> bool:
    """Whether convolution-heavy modules (the SPAN priors) run faster in channels_last there.

    On the CPU, oneDNN's 3x3 convolutions skip a layout reorder per call in NHWC: SPAN x4 at
    256^2 -> 1024^2 went from 1.12-1.27x to 0.86-0.89x the time of SPAN through ncnn
    (BENCHMARKS.md, issue 20); outputs differ from NCHW in the summation order only (8-bit
    values one level apart: 2 in 100,000 on a photo, 4 in 1,000 on random noise). Not measured
    on CUDA/MPS: left as they are."""
    return device.type == "cpu"


PRIOR_BACKENDS = ("auto", "torch", "ncnn")
PRIOR_BACKEND_ENV = "LINEARSR_PRIOR_BACKEND"
PROBE_SIDE = 192  # LR side of the probe: at 128^2 and below ncnn won here where torch wins at 256^2
NCNN_MARGIN = 0.9  # ncnn only when it takes at most 90 % of torch's time: a tie stays torch


def ncnn_available() -> bool:
    """Whether the optional `ncnn` package (the `peers` extra) can be imported."""
    try:
        return importlib.util.find_spec("ncnn") is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class PriorBackendDecision:
    """Which library runs a prior's convs on the CPU ("torch" or "ncnn"), and why (for `linearsr
    info` and the benchmarks); the probe's best times when it was timed."""

    backend: str
    reason: str
    torch_s: float | None = None
    ncnn_s: float | None = None


def time_prior_backends(net_cfg: prior_nets.PriorNetConfig, side: int = PROBE_SIDE, rounds: int = 3) -> tuple[float, float]:
    """Best seconds of (torch, ncnn) for a random prior of `net_cfg`'s widths (prior_nets.shallow)
    on a side x side input, each run as the upscaler runs it (torch in channels_last where
    `prefers_channels_last`), after a warm-up, in `rounds` interleaved rounds."""
    from linearsr_cli.engine.ncnn_prior import NcnnPrior

    tune_cpu_allocator()
    net = prior_nets.build(prior_nets.shallow(net_cfg)).eval()
    through_ncnn = NcnnPrior(net)
    if prefers_channels_last(torch.device("cpu")):
        net = net.to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    best = {"torch": float("inf"), "ncnn": float("inf")}
    runs = {"torch": net, "ncnn": through_ncnn}
    with torch.inference_mode():
        for run in runs.values():
            run(x)
        for _ in range(rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run(x)
                best[name] = min(best[name], time.perf_counter() - start)
    return best["torch"], best["ncnn"]


@functools.cache
def _timed_prior_backend(net_cfg: prior_nets.PriorNetConfig, threads: int) -> PriorBackendDecision:
    torch_s, ncnn_s = time_prior_backends(net_cfg)
    times = f"probe {PROBE_SIDE}^2 at {threads} threads: ncnn {ncnn_s * 1e3:.1f} ms, torch {torch_s * 1e3:.1f} ms"
    if ncnn_s <= NCNN_MARGIN * torch_s:
        return PriorBackendDecision("ncnn", f"{times}: ncnn", torch_s, ncnn_s)
    return PriorBackendDecision("torch", f"{times}: torch", torch_s, ncnn_s)


def prior_backend_setting() -> str:
    """$LINEARSR_PRIOR_BACKEND: "auto" (also when unset), "torch" or "ncnn"; DeviceError for
    another value, or for ncnn without the package. Checked when a CPU Upscaler is made, so a
    bad value stops the run before any image."""
    forced = os.environ.get(PRIOR_BACKEND_ENV, "").strip().lower() or "auto"
    if forced not in PRIOR_BACKENDS:
        raise DeviceError(f"{PRIOR_BACKEND_ENV}={forced!r}: choose one of {', '.join(PRIOR_BACKENDS)}")
    if forced == "ncnn" and not ncnn_available():
        raise DeviceError(f"{PRIOR_BACKEND_ENV}=ncnn, but the Python package 'ncnn' is not installed "
                          "(pip install ncnn, or the package's 'peers' extra)")
    return forced


def cpu_prior_backend(net_cfg: prior_nets.PriorNetConfig) -> PriorBackendDecision:
    """The one choice of the library that runs a prior of `net_cfg`'s shape on the CPU:
    $LINEARSR_PRIOR_BACKEND when it says torch or ncnn (`prior_backend_setting`), else torch
    without the `ncnn` package, else the faster on a timed probe (`time_prior_backends`; ncnn
    only at NCNN_MARGIN or better), timed once per process, shape and thread count."""
    forced = prior_backend_setting()
    if forced != "auto":
        return PriorBackendDecision(forced, f"{PRIOR_BACKEND_ENV}={forced}")
    if not ncnn_available():
        return PriorBackendDecision("torch", "the Python package 'ncnn' is not installed: torch")
    return _timed_prior_backend(net_cfg, torch.get_num_threads())


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


def parse_device(name: str) -> tuple[str, int | None]:
    """--device as (kind, GPU index): one of DEVICES, or cuda:N as PyTorch spells a GPU
    ('cuda:1' -> ('cuda', 1)); DeviceError for anything else. Checks the name only."""
    kind, sep, index = name.partition(":")
    if not sep and kind in DEVICES:
        return kind, None
    if kind == "cuda" and index.isdigit():
        return kind, int(index)
    raise DeviceError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}, or cuda:N for GPU N")


def check_dtype_name(name: str) -> str:
    """`name` when it is a --dtype choice (auto or DTYPES); DeviceError otherwise."""
    if name != "auto" and name not in DTYPES:
        raise DeviceError(f"unknown dtype {name!r}; choose auto, {', '.join(DTYPES)}")
    return name


def choose_device(name: str) -> torch.device:
    """The torch device for --device; raises DeviceError when it is not available here."""
    kind, index = parse_device(name)
    if kind == "auto":
        if cuda_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not cuda_available():
        raise DeviceError(f"--device {name} asked for, but no CUDA device is available")
    if kind == "cuda" and index is not None:
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"--device {name} asked for, but this machine has {count} CUDA device(s): "
                              f"cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}")
        return torch.device("cuda", index)
    if kind == "mps" and not mps_available():
        raise DeviceError("--device mps asked for, but MPS is not available")
    return torch.device(kind)


def use_cpu_threads(threads: int | None) -> None:
    """--threads N (>= 1, engine.batch.UpscaleRequest checks it): the CPU threads of PyTorch's
    operators (torch.set_num_threads); None keeps PyTorch's choice. Outputs of different thread
    counts stay within float tolerance of each other (summation order)."""
    if threads is not None:
        torch.set_num_threads(threads)


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) under torchrun (RANK, WORLD_SIZE); (0, 1) in a single process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def training_device(name: str) -> torch.device:
    """--device for training: auto (cuda if present, else cpu; training does not use MPS), cpu
    or cuda, which is cuda:LOCAL_RANK under torchrun (one process per GPU)."""
    if name not in TRAINING_DEVICES:
        raise DeviceError(f"unknown training device {name!r}; choose {', '.join(TRAINING_DEVICES)}")
    if name == "auto":
        name = "cuda" if cuda_available() else "cpu"
    dev = choose_device(name)  # DeviceError when cuda is asked for and absent
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if dev.type == "cuda" else dev


def choose_dtype(name: str, device: torch.device, *, training: bool = False) -> torch.dtype | None:
    """The autocast dtype for --dtype / --precision on `device`; None means fp32 without autocast.
    `auto`: see the module docstring (training on CUDA prefers bf16's range)."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if training and cuda_supports_bf16() else torch.float16
        if device.type == "cpu" and cpu_bf16().use_bf16:
            return torch.bfloat16
        return None
    check_dtype_name(name)
    if name == "fp32":
        return None
    if device.type == "mps" and name == "bf16":
        raise DeviceError("bf16 is not supported on MPS; use fp32 or fp16")
    if device.type == "cuda" and name == "bf16" and not cuda_supports_bf16():
        raise DeviceError("this CUDA device has no bf16 support; use fp16 or fp32")
    return DTYPES[name]


def plan_device(device: str = "auto", dtype: str = "auto") -> DevicePlan:
    """Resolve --device and --dtype together (both names checked before either is used)."""
    check_dtype_name(dtype)
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
