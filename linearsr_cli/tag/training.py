"""TAG for training: each training photo tagged once, as `linearsr upscale` tags a whole image.

The one place training touches the tagger and the encoder: `TrainingTags` holds the two models
(loaded on first use), and the loop asks a `TagSource` for a batch's tag tokens; recipe.py builds
it with `make_tag_source`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from linearsr_cli.errors import TrainingError
from linearsr_cli.tag.config import TagConfig
from linearsr_cli.tag.guidance import TagGuidance

TagSource = Callable[[Tensor, Sequence[str], Tensor], tuple[Tensor | None, Tensor | None]]


TagKind = Literal["tags", "visual"]


class TrainingTags:
    """The tagger + encoder for training batches (models load on first use):

        tags = TrainingTags()
        lists = tags.tags_for_training(lr_crops)   # lr_crops (B, 3, h, w) in [0, 1]
        states, mask = tags.encode(lists)          # (B, M, 384), (B, M) bool
    """

    def __init__(self, cfg: TagConfig | None = None, device: torch.device | str = "cpu") -> None:
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


def make_tag_source(
    enabled: bool, photos: Mapping[str, Any] | None = None, *, scale: int = 4, kind: TagKind = "tags"
) -> TagSource | None:
    """The one place training touches TAG. Each training photo is tagged once, the way
    `linearsr upscale` tags a whole image: the tagger on its bicubic LR (`photos` maps the names
    the batches carry to HR uint8 (H, W, 3) arrays). A crop inherits its photo's tags; samples
    with keep[i] = False get none (the loop draws `keep` for tag dropout from its own generator,
    so resume stays exact), and each distinct tag list is encoded once. Crops of unknown photos
    are tagged themselves. None when disabled: training then uses the model's null tag throughout.

    kind = "visual" is the TAG ablation's other arm: instead of tags, one token per photo from
    the tagger's pooled feature (tag.tagger.visual_token), computed once per photo the same way."""
    if kind not in ("tags", "visual"):
        raise TrainingError(f"tag kind must be 'tags' or 'visual', got {kind!r}")
    if not enabled:
        return None
    from linearsr_cli.degrade import bicubic_downscale

    holder: list[Any] = []
    photo_tags: dict[str, list[str]] = {}
    encoded: dict[tuple[str, ...], Tensor] = {}

    def photo_lr(name: str) -> Tensor:
        lr = bicubic_downscale(photos[name], scale)  # (h, w, 3) uint8
        return torch.from_numpy(lr).permute(2, 0, 1).float()[None] / 255.0  # (1, 3, h, w)

    def tags_of(name: str, crop: Tensor) -> list[str]:
        if name not in photo_tags:
            tagger = holder[0]
            if photos is not None and name in photos:
                photo_tags[name] = tagger.tags_for_training(photo_lr(name))[0]
            else:
                return tagger.tags_for_training(crop[None].float())[0]
        return photo_tags[name]

    def encode(tags: list[str]) -> Tensor:
        key = tuple(tags)
        if key not in encoded:
            states, mask = holder[0].encode([tags])  # (1, M, 384), (1, M)
            encoded[key] = states[0, : int(mask.sum())]  # (M, 384)
        return encoded[key]

    visual: dict[str, Tensor] = {}

    def visual_of(name: str, crop: Tensor) -> Tensor:
        if photos is None or name not in photos:
            return holder[0].visual_batch(crop[None].float())[0][0]  # (1, 384)
        if name not in visual:
            visual[name] = holder[0].visual_batch(photo_lr(name))[0][0]  # (1, 384)
        return visual[name]

    def source(lr: Tensor, names: Sequence[str], keep: Tensor) -> tuple[Tensor | None, Tensor | None]:
        if not bool(keep.any()):
            return None, None
        if not holder:
            holder.append(TrainingTags())
        if kind == "visual":
            rows = [visual_of(n, lr[i]) if bool(keep[i]) else lr.new_zeros(1, 384) for i, n in enumerate(names)]
            states = torch.stack([r.to(lr) for r in rows])  # (B, 1, 384)
            return states, keep.to(lr.device).bool()[:, None]  # dropped -> only the null token
        lists = [tags_of(n, lr[i]) if bool(keep[i]) else [] for i, n in enumerate(names)]
        if not any(lists):
            return None, None
        rows = [encode(tags) if tags else lr.new_zeros(0, 384) for tags in lists]
        m = max(r.shape[0] for r in rows)
        states = lr.new_zeros(len(rows), m, 384)  # (B, M, 384), zero padding
        mask = torch.zeros(len(rows), m, dtype=torch.bool, device=lr.device)
        for i, r in enumerate(rows):
            states[i, : r.shape[0]] = r.to(states)
            mask[i, : r.shape[0]] = True
        return states, mask

    return source
