"""Attention kernels (pure functions) and the multi-head modules built on them.

`relu_linear_attention` is the O(N) kernel of LinearSR; `softmax_attention` is its O(N^2) twin,
used with the same parameters for parity tests and the baseline benchmark.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def relu_linear_attention(
    q: Tensor, k: Tensor, v: Tensor, *, key_mask: Tensor | None = None, eps: float = 1e-6
) -> Tensor:
    """ReLU linear attention: out_i = phi(q_i) (sum_j phi(k_j) v_j^T) / (phi(q_i) . sum_j phi(k_j) + eps).

    q, k, v: (B, H, N, Dh); key_mask: (B, N) bool, True = real token. The kv state and the
    normaliser are accumulated in fp32 with autocast off, whatever the input dtype, so fp16/bf16
    activations of large magnitude do not overflow; V is padded with ones so one matmul gives
    numerator and denominator together (as in SANA's LiteLA). Inputs are never modified.
    """
    b, h, n, dh = q.shape
    with torch.autocast(device_type=q.device.type, enabled=False):
        # ReLU is exact in every float dtype, so it runs before the upcast (one pass at the
        # input's width); each result is a fresh tensor, never the caller's.
        qf = F.relu(q).float()  # (B, H, N, Dh) fp32
        kf = F.relu(k).float()  # (B, H, N, Dh) fp32
        if key_mask is not None:
            kf = kf * key_mask[:, None, :, None].to(kf.dtype)  # (B, 1, N, 1) zeroes padded keys
        v1 = torch.empty(b, h, n, dh + 1, dtype=torch.float32, device=v.device)  # (B, H, N, Dh + 1)
        v1[..., :dh].copy_(v)  # upcast straight into place
        v1[..., dh] = 1.0  # last column = 1: the normaliser rides along in the same matmul
        kv = torch.einsum("bhnd,bhne->bhde", kf, v1)  # (B, H, Dh, Dh + 1)
        qkv = torch.einsum("bhnd,bhde->bhne", qf, kv)  # (B, H, N, Dh + 1)
        out = qkv[..., :dh] / (qkv[..., dh:] + eps)  # (B, H, N, Dh) fp32
        # One pass casts back and lays the result out as (B, N, H, Dh) memory, so the caller's
        # head merge "b h n d -> b n (h d)" is a view instead of another copy.
        merged = torch.empty(b, n, h, dh, dtype=q.dtype, device=q.device)  # (B, N, H, Dh)
        merged.copy_(out.transpose(1, 2))
    return merged.transpose(1, 2)  # (B, H, N, Dh) view


def linear_attention_stats(q: Tensor, k: Tensor) -> dict[str, float]:
    """Diagnostics of the linear kernel: largest |phi(q)|, |phi(k)| and the smallest normaliser
    phi(q_i) . sum_j phi(k_j) among queries where it is positive.

    Queries whose normaliser is exactly 0 (phi(q_i) = 0 after the ReLU) produce 0 / eps = 0 and
    are harmless; a small positive normaliser is where the division amplifies errors.
    """
    with torch.autocast(device_type=q.device.type, enabled=False):
        qf = F.relu(q.float())
        kf = F.relu(k.float())
        den = torch.einsum("bhnd,bhd->bhn", qf, kf.sum(dim=2))  # (B, H, N)
    positive = den[den > 0]
    return {
        "max_q": float(qf.abs().max()),
        "max_k": float(kf.abs().max()),
        "min_normaliser": float(positive.min()) if positive.numel() else 0.0,
    }


def softmax_attention(
    q: Tensor, k: Tensor, v: Tensor, *, key_mask: Tensor | None = None
) -> Tensor:
    """Scaled dot-product softmax attention (Vaswani et al. 2017); q, k, v: (B, H, N, Dh)."""
    mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, M)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class SelfAttention(nn.Module):
    """Multi-head self-attention over image tokens: ReLU-linear, or its softmax twin.

    Both variants own the same parameters (qkv, proj), so a state dict moves between them.
    """

    def __init__(self, dim: int, heads: int, *, kind: str = "linear", eps: float = 1e-6) -> None:
        super().__init__()
        self.heads = heads
        self.kind = kind
        self.eps = eps
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.last_stats: dict[str, float] | None = None
        self.record_stats = False

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        if self.record_stats:
            self.last_stats = linear_attention_stats(q, k)
        if self.kind == "linear":
            out = relu_linear_attention(q, k, v, key_mask=key_mask, eps=self.eps)
        else:
            out = softmax_attention(q, k, v, key_mask=key_mask)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))  # (B, N, dim)


class CrossAttention(nn.Module):
    """Masked softmax cross-attention from N image tokens to M <= 33 tag tokens: O(N * M)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, ctx: Tensor, ctx_mask: Tensor) -> Tensor:
        if ctx.shape[1] == 1:
            # One key (the null token alone, i.e. no tags): softmax over a single score is 1, so
            # every query receives that key's value; skip the query projection and the kernel.
            v = self.kv(ctx)[..., ctx.shape[-1] :]  # (B, 1, dim): the (h d) value half
            return self.proj(v).expand(-1, x.shape[1], -1)  # (B, N, dim), a broadcast view
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads)  # (B, H, N, Dh)
        k, v = rearrange(self.kv(ctx), "b m (two h d) -> two b h m d", two=2, h=self.heads)
        out = softmax_attention(q, k, v, key_mask=ctx_mask)  # (B, H, N, Dh)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))
