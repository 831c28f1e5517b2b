"""TAG guidance for one batch run: where each image's tags come from, and their token states.

TAG ("precision over volume", LinearSR): a few object tags taken from the low-res image itself
condition the denoiser through cross-attention. Sources, highest precedence first:

    cli       --tags "cat, grass"               the same tags for every image
    sidecar   photo.jpg.tags next to the image  UTF-8, comma- or newline-separated
    metadata  XMP dc:subject / IPTC 2:25        keywords a photo pipeline already wrote
    tagger    EfficientNet-Lite0 on the LR image top-k ImageNet labels over a threshold
    off       --tags off                         no tokens: the model's learned null token

The tagger and the text encoder are loaded lazily, once, on the chosen device, and reused for
every image of the batch. Nothing here touches the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from linearsr_cli.tag.config import TagConfig
from linearsr_cli.tag.sources import (
    normalize_tags,
    read_metadata_tags,
    read_sidecar,
)

if TYPE_CHECKING:
    from linearsr_cli.tag.encoder import TagEncoder
    from linearsr_cli.tag.tagger import Tagger

SOURCES = ("cli", "sidecar", "metadata", "tagger", "off")


@dataclass(frozen=True)
class ResolvedTags:
    """The tags that guide one image and where they came from (one of SOURCES).

    `scores` holds the tagger's probabilities, aligned with `tags`, when source == "tagger".
    """

    tags: tuple[str, ...]
    source: str
    scores: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"tags": list(self.tags), "source": self.source}
        if self.scores:
            out["scores"] = [round(s, 4) for s in self.scores]
        return out


class TagGuidance:
    """Resolves and encodes tags for a batch; loads the tagger/encoder on first use only."""

    def __init__(self, cfg: TagConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self._tagger: Tagger | None = None
        self._encoder: TagEncoder | None = None

    @property
    def tagger(self) -> Tagger:
        if self._tagger is None:
            from linearsr_cli.tag.tagger import Tagger

            self._tagger = Tagger.load(self.cfg, self.device)
        return self._tagger

    @property
    def encoder(self) -> TagEncoder:
        if self._encoder is None:
            from linearsr_cli.tag.encoder import TagEncoder

            self._encoder = TagEncoder.load(self.device)
        return self._encoder

    def resolve_without_tagger(self, path: Path | None) -> ResolvedTags | None:
        """The tags from --no-tags, --tags, a sidecar or metadata; None when the tagger must run.

        Raises TagError for an unreadable sidecar (bad encoding, too large).
        """
        if not self.cfg.enabled:
            return ResolvedTags((), "off")
        if self.cfg.tags:
            return ResolvedTags(self.cfg.tags, "cli")
        if path is not None:
            side = read_sidecar(Path(path))
            if side is not None:
                return ResolvedTags(side, "sidecar")
            meta = read_metadata_tags(Path(path))
            if meta:
                return ResolvedTags(meta, "metadata")
        return None

    def resolve(self, path: Path | None, lr_rgb: Tensor) -> ResolvedTags:
        """Tags for one image; lr_rgb (3, h, w) float32 in [0, 1]. cli > sidecar > metadata > tagger."""
        found = self.resolve_without_tagger(path)
        return found if found is not None else self.auto_tags(lr_rgb)

    def auto_tags(self, lr_rgb: Tensor) -> ResolvedTags:
        """The tagger's tags for lr_rgb (3, h, w) in [0, 1], ignoring every other source."""
        if lr_rgb.ndim != 3 or lr_rgb.shape[0] != 3:
            raise ValueError(f"lr_rgb must be (3, h, w), got {tuple(lr_rgb.shape)}")
        (preds,) = self.tagger.predict(lr_rgb[None])
        return ResolvedTags(
            tuple(label for label, _ in preds), "tagger", tuple(float(p) for _, p in preds)
        )

    def encode(self, tags: Sequence[str]) -> tuple[Tensor | None, Tensor | None]:
        """(1, M, 384) float32 token states and (1, M) bool mask on the device; (None, None)
        for no tags, so the model falls back to its learned null token."""
        tags = normalize_tags(tags)
        if not tags:
            return None, None
        states, mask = self.encoder.encode_batch([tags])
        return states.to(self.device), mask.to(self.device)
