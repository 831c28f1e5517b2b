"""The copy-saving paths of the CPU speed work (issue 7) keep their values and their layouts."""

from __future__ import annotations

import torch
from einops import rearrange

from linearsr_cli.nn.attention import relu_linear_attention, softmax_attention
from linearsr_cli.nn.blocks import modulate, norm_modulate
from linearsr_cli.nn.dit import bicubic_upsample, compose_output
from tests.util import tiny_model_config


def _qkv(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    fused = torch.randn(2, 50, 3 * 4 * 8, generator=gen).to(dtype)  # (B, N, 3 H Dh), like SelfAttention
    return tuple(rearrange(fused, "b n (three h d) -> three b h n d", three=3, h=4))


def test_kernel_output_merges_heads_without_a_copy_and_keeps_the_dtype() -> None:
    for dtype in (torch.float32, torch.bfloat16):
        q, k, v = _qkv(dtype)
        out = relu_linear_attention(q, k, v)
        assert out.shape == q.shape and out.dtype == dtype
        merged = rearrange(out, "b h n d -> b n (h d)")  # (B, N, H Dh)
        assert merged.is_contiguous() and merged.data_ptr() == out.data_ptr()


def test_kernel_in_bf16_equals_the_fp32_formula_rounded_once() -> None:
    q, k, v = _qkv(torch.bfloat16)
    qf, kf, vf = (x.float() for x in (q, k, v))
    num = torch.einsum("bhnd,bhmd,bhme->bhne", qf.relu(), kf.relu(), vf)  # (B, H, N, Dh)
    den = torch.einsum("bhnd,bhmd->bhn", qf.relu(), kf.relu())[..., None] + 1e-6
    torch.testing.assert_close(relu_linear_attention(q, k, v), (num / den).bfloat16(), rtol=1e-2, atol=1e-2)


def test_kernel_gradients_flow_to_q_k_v() -> None:
    q, k, v = (x.clone().requires_grad_() for x in _qkv(torch.float32))
    relu_linear_attention(q, k, v).square().sum().backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in (q, k, v))


def test_modulate_is_x_times_one_plus_scale_plus_shift() -> None:
    gen = torch.Generator().manual_seed(1)
    x, shift, scale = torch.randn(2, 9, 16, generator=gen), torch.randn(2, 1, 16, generator=gen), torch.randn(2, 1, 16, generator=gen)
    torch.testing.assert_close(modulate(x, shift, scale), x * (1 + scale) + shift)


def test_compose_output_matches_formula_and_leaves_inputs_alone() -> None:
    cfg = tiny_model_config()
    gen = torch.Generator().manual_seed(2)
    lr, x0 = torch.rand(1, 3, 6, 5, generator=gen), torch.randn(1, 3, 24, 20, generator=gen) * 3
    lr_copy, x0_copy = lr.clone(), x0.clone()
    out = compose_output(lr, x0.bfloat16(), cfg)
    expected = (bicubic_upsample(lr, cfg.scale) + cfg.residual_scale * x0.bfloat16().float()).clamp(0, 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)
    assert torch.equal(lr, lr_copy) and torch.equal(x0, x0_copy)


def test_norm_modulate_fused_path_equals_norm_then_modulate() -> None:
    norm = torch.nn.LayerNorm(16, elementwise_affine=False, eps=1e-6)
    gen = torch.Generator().manual_seed(3)
    for batch in (1, 3):  # B = 1 takes the fused LayerNorm-affine path, B > 1 the general one
        x = torch.randn(batch, 9, 16, generator=gen) * 4 + 1
        shift, scale = torch.randn(batch, 1, 16, generator=gen), torch.randn(batch, 1, 16, generator=gen)
        torch.testing.assert_close(norm_modulate(norm, x, shift, scale), modulate(norm(x), shift, scale))


def test_cross_attention_with_only_the_null_token_equals_the_full_kernel() -> None:
    from linearsr_cli.nn.attention import CrossAttention

    attn = CrossAttention(16, 4)
    gen = torch.Generator().manual_seed(4)
    x, ctx = torch.randn(2, 30, 16, generator=gen), torch.randn(2, 1, 16, generator=gen)
    mask = torch.ones(2, 1, dtype=torch.bool)
    q = rearrange(attn.q(x), "b n (h d) -> b h n d", h=4)  # (B, H, N, Dh)
    k, v = rearrange(attn.kv(ctx), "b m (two h d) -> two b h m d", two=2, h=4)
    full = attn.proj(rearrange(softmax_attention(q, k, v, key_mask=mask), "b h n d -> b n (h d)"))
    fast = attn(x, ctx, mask)
    assert fast.shape == (2, 30, 16)
    torch.testing.assert_close(fast, full)
    # With real tag tokens the general kernel runs and the queries differ.
    ctx2 = torch.randn(2, 3, 16, generator=gen)
    out = attn(x, ctx2, torch.ones(2, 3, dtype=torch.bool))
    assert not torch.allclose(out[:, 0], out[:, 1])
