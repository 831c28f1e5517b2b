"""TAG for training: each training photo tagged once, as `linearsr upscale` tags a whole image.

The one place training touches the tagger and the encoder (the loop asks a `TagSource` for a
batch's tag tokens; recipe.py builds it with `make_tag_source`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from linearsr_cli.errors import TrainingError

TagSource = Callable[[Tensor, Sequence[str], Tensor], tuple[Tensor | None, Tensor | None]]


TagKind = Literal["tags", "visual"]


def make_tag_source(
    enabled: bool, photos: Mapping[str, Any] | None = None, *, scale: int = 4, kind: TagKind = "tags"
) -> TagSource | None:
    """The one place training touches TAG. Each training photo is tagged once, the way
    `linearsr upscale` tags a whole image: the tagger on its bicubic LR (`photos` maps the names
    the batches carry to HR uint8 (H, W, 3) arrays). A crop inherits its photo's tags; samples
    with keep[i] = False get none (the loop draws `keep` for tag dropout from its own generator,
    so resume stays exact), and each distinct tag list is encoded once. Crops of unknown photos
    are tagged themselves. None when disabled or when the tag package is not importable:
    training then uses the model's null tag throughout.

    kind = "visual" is the TAG ablation's other arm: instead of tags, one token per photo from
    the tagger's pooled feature (tag.tagger.visual_token), computed once per photo the same way."""
    if kind not in ("tags", "visual"):
        raise TrainingError(f"tag kind must be 'tags' or 'visual', got {kind!r}")
    if not enabled:
        return None
    try:
        from linearsr_cli.tag.cache import TrainingTags
    except ImportError:
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
