"""The ST-LPIPS weights (stlpips-pytorch wheel, BSD-2-Clause) loaded into our nn.stlpips module,
for `linearsr eval` (a full-reference perceptual metric) and as an optional training loss.

The trained weights are the authors' release in the PyPI wheel `stlpips-pytorch`
(weights/vST0.0/alex_shift_tolerant.pth). The wheel's own code needs torchvision, so it is never
imported: the file is located with importlib and read with torch.load(weights_only=True).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from linearsr_cli.errors import ConfigError
from linearsr_cli.ncnn_files import package_dir
from linearsr_cli.nn.stlpips import STLPIPS

PACKAGE = "stlpips_pytorch"
WEIGHTS = "weights/vST0.0/alex_shift_tolerant.pth"


# the wheel's state-dict names -> ours
_KEY_MAP = {
    "net.slice1.0": "trunk.conv1",
    "net.slice2.5": "trunk.conv2",
    "net.slice3.9": "trunk.conv3",
    "net.slice4.11": "trunk.conv4",
    "net.slice5.13": "trunk.conv5",
    **{f"lin{i}.model.1": f"lins.{i}" for i in range(5)},
}


def weights_path() -> Path:
    """The wheel's alex_shift_tolerant.pth; ConfigError naming the fix when it is missing."""
    root = package_dir(PACKAGE)
    if root is None:
        raise ConfigError("ST-LPIPS needs the weights in the 'stlpips-pytorch' wheel (pip install --no-deps stlpips-pytorch)")
    path = root / WEIGHTS
    if not path.is_file():
        raise ConfigError(f"{path}: missing from the installed stlpips-pytorch")
    return path


def load_stlpips(path: Path | None = None) -> STLPIPS:
    """ST-LPIPS (AlexNet) with the released weights, fp32, eval mode, no gradients."""
    path = path or weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    ours: dict[str, Tensor] = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in _KEY_MAP:
            ours[f"{_KEY_MAP[prefix]}.{leaf}"] = value.float()
        elif key.endswith(".filt") or key.startswith("scaling_layer."):
            continue  # fixed blur filters and input scaling: rebuilt above, checked in the tests
        else:
            raise ConfigError(f"{path}: unexpected tensor {key}")
    model = STLPIPS()
    try:
        model.load_state_dict(ours, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"{path}: does not match the ST-LPIPS AlexNet: {exc}") from None
    return model.eval().requires_grad_(False)


class LpipsScorer:
    """ST-LPIPS of (3, H, W) RGB arrays in [0, 1] against HR, on the CPU."""

    def __init__(self, model: STLPIPS | None = None) -> None:
        self.model = model or load_stlpips()

    @torch.no_grad()
    def __call__(self, sr: np.ndarray, hr: np.ndarray) -> float:
        a = torch.from_numpy(np.ascontiguousarray(sr, dtype=np.float32))[None]
        b = torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32))[None]
        return float(self.model(a, b)[0])
