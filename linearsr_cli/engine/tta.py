"""Test-time augmentation: the 8 flips/rotations of the dihedral group D4 (pure tensor math).

The self-ensemble of SR papers (Timofte et al., "Seven ways to improve example-based single
image super resolution", CVPR 2016; EDSR's "+" models): run the model on each transform of the
input, undo the transform on each output, average. Each transform acts on the last two dims.
"""

from __future__ import annotations

import torch
from torch import Tensor

Transform = tuple[int, bool]  # (quarter turns counter-clockwise, mirrored left-right first)
DIHEDRAL: tuple[Transform, ...] = tuple((k, flip) for flip in (False, True) for k in range(4))  # identity first


def apply(x: Tensor, g: Transform) -> Tensor:
    """g(x): mirror (if asked), then rotate by k quarter turns, over the last two dims."""
    k, flip = g
    x = x.flip(-1) if flip else x
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def invert(x: Tensor, g: Transform) -> Tensor:
    """g^-1(x): rotate back, then mirror back; invert(apply(x, g), g) == x."""
    k, flip = g
    x = torch.rot90(x, -k, dims=(-2, -1)) if k else x
    return x.flip(-1) if flip else x
