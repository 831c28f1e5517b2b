"""The SANA-style linear DiT block: adaLN-single modulation, linear self-attention,
masked cross-attention to tag tokens, and a Mix-FFN whose depthwise conv gives locality (NoPE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from linearsr_cli.nn.attention import CrossAttention, SelfAttention


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN modulation x * (1 + scale) + shift (DiT, Peebles & Xie 2023); shift/scale (B, 1, D)."""
    return torch.addcmul(shift, x, 1 + scale)  # one fused pass over x


def norm_modulate(norm: nn.LayerNorm, x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """modulate(LayerNorm(x), shift, scale) (DiT adaLN); x (B, N, D), shift/scale (B, 1, D).

    When the whole batch shares one (shift, scale), as in every upscaler call (B = 1), they are
    LayerNorm's own affine weight and bias, so the norm and the modulation are one pass over x.
    """
    if shift.shape[0] == 1 and not norm.elementwise_affine:
        weight, bias = (1 + scale).reshape(-1), shift.reshape(-1)  # (D,) each
        return F.layer_norm(x, norm.normalized_shape, weight, bias, norm.eps)
    return modulate(norm(x), shift, scale)


class MixFFN(nn.Module):
    """1x1 expand (GLU) -> 3x3 depthwise conv on the token grid -> 1x1 project (SANA Mix-FFN)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, 2 * hidden)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.project = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        h, w = hw
        y = self.expand(x)  # (B, N, 2 * hidden)
        b, _, c = y.shape
        # (B, N, C) tokens are already channels-last memory for (B, C, h, w): a view, no copy.
        y = y.view(b, h, w, c).permute(0, 3, 1, 2)  # (B, 2 * hidden, h, w), channels_last
        y = self.dwconv(y)
        y = y.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, N, 2 * hidden)
        value, gate = y.chunk(2, dim=-1)  # (B, N, hidden) each
        return self.project(value * F.silu(gate))


class LinearDiTBlock(nn.Module):
    """One block: x += g1 * SA(mod(norm x)); x += CA(norm x, tags); x += g2 * FFN(mod(norm x))."""

    def __init__(self, dim: int, heads: int, ffn_hidden: int, *, attention: str, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads, kind=attention, eps=eps)
        self.norm_cross = nn.LayerNorm(dim, eps=1e-6)
        self.cross = CrossAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ffn = MixFFN(dim, ffn_hidden)
        # adaLN-single: a learned per-block table added to the shared timestep projection.
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(
        self,
        x: Tensor,
        t_mod: Tensor,
        ctx: Tensor,
        ctx_mask: Tensor,
        hw: tuple[int, int],
        key_mask: Tensor | None = None,
    ) -> Tensor:
        """x: (B, N, D); t_mod: (B, 6, D); ctx: (B, M, D); ctx_mask: (B, M) bool."""
        mods = (self.scale_shift_table[None] + t_mod).chunk(6, dim=1)  # 6 x (B, 1, D)
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = mods
        # Gated residuals as one fused multiply-add each (addcmul), not a product then a sum.
        x = torch.addcmul(x, gate_sa, self.attn(norm_modulate(self.norm1, x, shift_sa, scale_sa), key_mask))
        x = x + self.cross(self.norm_cross(x), ctx, ctx_mask)
        x = torch.addcmul(x, gate_ff, self.ffn(norm_modulate(self.norm2, x, shift_ff, scale_ff), hw))
        return x
