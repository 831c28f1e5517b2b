"""Tags for training: the same tagger on the training LR images, cached on disk, plus dropout.

The cache is one JSON file (default data/tag_cache.json):
    {"version": 1, "tagger": "...", "top_k": 5, "threshold": 0.1, "entries": {key: [tags]}}
keyed by the SHA-256 of the image quantised to 8 bits (with its shape), so the same crop gives
the same key in every run and float noise does not matter. A file written with other tagger
settings is ignored (and replaced on the next save), never mixed in.

Use from the training loop:

    tags = TrainingTags(cache_path=Path("data/tag_cache.json"), dropout=0.1)
    states, mask = tags.batch(lr_crops, generator=gen)   # lr_crops (B, 3, h, w) in [0, 1]
    loss = ... model(x_t, t, lr_crops, states, mask) ...
    tags.save()                                          # also done automatically when dirty

or `tags_for_training(lr_crops)` for the tag lists alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from linearsr_cli.errors import TagError
from linearsr_cli.fileio import write_atomic
from linearsr_cli.tag.guidance import TagConfig, TagGuidance
from linearsr_cli.tag.tagger import TAGGER_ID

DEFAULT_CACHE = Path("data/tag_cache.json")
CACHE_VERSION = 1


def image_key(image: Tensor) -> str:
    """SHA-256 of (3, h, w) in [0, 1] quantised to uint8, with the shape; hex string."""
    q = (image.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu()
    digest = hashlib.sha256(f"{tuple(q.shape)}".encode())
    digest.update(q.contiguous().numpy().tobytes())
    return digest.hexdigest()


def apply_tag_dropout(
    tag_lists: Sequence[Sequence[str]], p: float, generator: torch.Generator | None = None
) -> list[list[str]]:
    """Replace each image's tags by [] with probability p, so the model learns the null token."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"tag dropout must be in [0, 1], got {p}")
    keep = torch.rand(len(tag_lists), generator=generator) >= p
    return [list(tags) if k else [] for tags, k in zip(tag_lists, keep.tolist(), strict=True)]


class TagCache:
    """An on-disk {image key: tags} map for one tagger setting; save() writes atomically."""

    def __init__(self, path: Path, cfg: TagConfig) -> None:
        self.path = Path(path)
        self.header = {
            "version": CACHE_VERSION,
            "tagger": f"{TAGGER_ID}:{cfg.tagger}",
            "top_k": cfg.top_k,
            "threshold": cfg.threshold,
        }
        self.entries: dict[str, list[str]] = {}
        self.dirty = False
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return  # a damaged cache is only a cache: start afresh, overwrite on save
        if not isinstance(data, dict) or any(data.get(k) != v for k, v in self.header.items()):
            return
        entries = data.get("entries")
        if isinstance(entries, dict):
            self.entries = {
                str(k): [str(t) for t in v] for k, v in entries.items() if isinstance(v, list)
            }

    def get(self, key: str) -> list[str] | None:
        return self.entries.get(key)

    def put(self, key: str, tags: Sequence[str]) -> None:
        self.entries[key] = list(tags)
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            write_atomic(self.path, json.dumps({**self.header, "entries": self.entries}).encode("utf-8"))
        except OSError as exc:
            raise TagError(f"{self.path}: cannot write tag cache: {exc.strerror or exc}") from None
        self.dirty = False


class TrainingTags:
    """The tagger + encoder for training batches, with the cache and tag dropout."""

    def __init__(
        self,
        cfg: TagConfig | None = None,
        device: torch.device | str = "cpu",
        cache_path: Path | None = DEFAULT_CACHE,
        dropout: float = 0.1,
    ) -> None:
        self.cfg = cfg or TagConfig()
        self.guidance = TagGuidance(self.cfg, torch.device(device))
        self.cache = TagCache(cache_path, self.cfg) if cache_path is not None else None
        self.dropout = dropout

    def tags_for_training(self, images: Tensor) -> list[list[str]]:
        """Tagger labels for (B, 3, h, w) LR images in [0, 1]; cached by content hash."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, h, w), got {tuple(images.shape)}")
        keys = [image_key(img) for img in images]
        found = [self.cache.get(k) if self.cache else None for k in keys]
        todo = [i for i, tags in enumerate(found) if tags is None]
        if todo:
            preds = self.guidance.tagger.predict(images[todo])
            for i, pred in zip(todo, preds, strict=True):
                found[i] = [label for label, _ in pred]
                if self.cache is not None:
                    self.cache.put(keys[i], found[i])
            if self.cache is not None:
                self.cache.save()
        return [list(tags or []) for tags in found]

    def encode(self, tag_lists: Sequence[Sequence[str]]) -> tuple[Tensor, Tensor]:
        """(B, M, 384) float32 token states and (B, M) bool mask on the device."""
        states, mask = self.guidance.encoder.encode_batch(tag_lists)
        return states.to(self.guidance.device), mask.to(self.guidance.device)

    def batch(
        self, images: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Tags for the batch with dropout applied, encoded: (B, M, 384), (B, M) bool."""
        tag_lists = apply_tag_dropout(self.tags_for_training(images), self.dropout, generator)
        return self.encode(tag_lists)

    def visual_batch(self, images: Tensor, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The ablation's "visual embedding" guidance for training: one (B, 1, 384) token per
        image from the tagger's pooled feature (tagger.visual_token), mask False where
        keep[i] is False (dropped -> null token)."""
        from linearsr_cli.tag.tagger import visual_token

        tok, mask = visual_token(self.guidance.tagger.features(images))  # (B, 1, 384), (B, 1)
        if keep is not None:
            mask = mask & keep.to(mask.device).bool()[:, None]
        return tok.to(self.guidance.device), mask.to(self.guidance.device)

    def save(self) -> None:
        if self.cache is not None:
            self.cache.save()


_DEFAULT: TrainingTags | None = None


def tags_for_training(images: Tensor) -> list[list[str]]:
    """Tag lists for (B, 3, h, w) LR training images via a process-wide TrainingTags
    (default settings, CPU, cache at data/tag_cache.json)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = TrainingTags()
    return _DEFAULT.tags_for_training(images)
