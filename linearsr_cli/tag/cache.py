"""Tags for training: the same tagger and encoder on training LR crops.

The training loop (train/loop.py, make_tag_source) tags each photo once, draws its own tag
dropout and encodes each distinct tag list once; this class is the models it calls:

    tags = TrainingTags()
    lists = tags.tags_for_training(lr_crops)   # lr_crops (B, 3, h, w) in [0, 1]
    states, mask = tags.encode(lists)          # (B, M, 384), (B, M) bool
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from linearsr_cli.tag.guidance import TagConfig, TagGuidance


class TrainingTags:
    """The tagger + encoder for training batches (models load on first use)."""

    def __init__(
        self,
        cfg: TagConfig | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.cfg = cfg or TagConfig()
        self.guidance = TagGuidance(self.cfg, torch.device(device))

    def tags_for_training(self, images: Tensor) -> list[list[str]]:
        """Tagger labels for (B, 3, h, w) LR images in [0, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, h, w), got {tuple(images.shape)}")
        preds = self.guidance.tagger.predict(images)
        return [[label for label, _ in pred] for pred in preds]

    def encode(self, tag_lists: Sequence[Sequence[str]]) -> tuple[Tensor, Tensor]:
        """(B, M, 384) float32 token states and (B, M) bool mask on the device."""
        states, mask = self.guidance.encoder.encode_batch(tag_lists)
        return states.to(self.guidance.device), mask.to(self.guidance.device)

    def visual_batch(self, images: Tensor, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The ablation's "visual embedding" guidance for training: one (B, 1, 384) token per
        image from the tagger's pooled feature (tagger.visual_token), mask False where
        keep[i] is False (dropped -> null token)."""
        from linearsr_cli.tag.tagger import visual_token

        tok, mask = visual_token(self.guidance.tagger.features(images))  # (B, 1, 384), (B, 1)
        if keep is not None:
            mask = mask & keep.to(mask.device).bool()[:, None]
        return tok.to(self.guidance.device), mask.to(self.guidance.device)
