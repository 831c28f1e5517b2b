"""The linear-attention kernel against the naive formula, its masks, and low-precision safety."""

from __future__ import annotations

import pytest
import torch

from linearsr_cli.nn.attention import (
    SelfAttention,
    linear_attention_stats,
    relu_linear_attention,
    softmax_attention,
)


def naive_linear_attention(q, k, v, key_mask=None, eps=1e-6):
    """Explicit N x N kernel matrix A_ij = relu(q_i) . relu(k_j), row-normalised, in float64."""
    q, k, v = (x.double() for x in (q, k, v))
    a = torch.einsum("bhnd,bhmd->bhnm", q.relu(), k.relu())  # (B, H, N, M)
    if key_mask is not None:
        a = a * key_mask[:, None, None, :].double()
    out = torch.einsum("bhnm,bhmd->bhnd", a, v)
    return out / (a.sum(dim=-1, keepdim=True) + eps)


def qkv(b=2, h=3, n=37, d=8, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, h, n, d, generator=gen) * scale for _ in range(3))


def test_kernel_equals_naive_formula_fp32():
    q, k, v = qkv()
    out = relu_linear_attention(q, k, v)
    ref = naive_linear_attention(q, k, v)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_kernel_with_padding_mask_equals_naive_and_ignores_padded_tokens():
    q, k, v = qkv(n=20)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[0, 13:] = False
    mask[1, 5:9] = False
    out = relu_linear_attention(q, k, v, key_mask=mask)
    torch.testing.assert_close(out.double(), naive_linear_attention(q, k, v, mask), atol=1e-5, rtol=1e-5)
    # Changing padded keys/values must not change the output.
    k2, v2 = k.clone(), v.clone()
    k2[0, :, 13:] = 50.0
    v2[0, :, 13:] = -7.0
    out2 = relu_linear_attention(q, k2, v2, key_mask=mask)
    torch.testing.assert_close(out2, out, atol=1e-6, rtol=1e-6)


def test_kernel_does_not_modify_inputs():
    q, k, v = qkv()
    copies = [x.clone() for x in (q, k, v)]
    relu_linear_attention(q, k, v, key_mask=torch.ones(2, 37, dtype=torch.bool))
    for x, c in zip((q, k, v), copies, strict=True):
        assert torch.equal(x, c)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_large_activations_stay_finite(dtype):
    # Activations of magnitude 1e4: k v^T summed over 256 tokens reaches ~2.5e10, far past
    # fp16's 65504, yet the fp32 accumulators keep the kernel finite and accurate.
    q, k, v = qkv(b=1, h=2, n=256, d=16, scale=1e4)
    q, k, v = q.abs(), k.abs(), v.abs().clamp(max=6e4)
    ql, kl, vl = q.to(dtype), k.to(dtype), v.to(dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = relu_linear_attention(ql, kl, vl)
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    ref = naive_linear_attention(ql.float(), kl.float(), vl.float())
    torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=1e-2 * float(ref.abs().max()))


def test_naive_fp16_accumulation_overflows_where_kernel_does_not():
    q, k, v = qkv(b=1, h=1, n=256, d=16, scale=1e4)
    k, v = k.abs().half(), v.abs().clamp(max=6e4).half()
    naive_kv = torch.einsum("bhnd,bhne->bhde", k, v)  # accumulated and stored in fp16
    assert not torch.isfinite(naive_kv).all()
    assert torch.isfinite(relu_linear_attention(q.abs().half(), k, v)).all()


def test_softmax_twin_shares_parameters_and_matches_sdpa():
    lin = SelfAttention(16, 2, kind="linear")
    soft = SelfAttention(16, 2, kind="softmax")
    soft.load_state_dict(lin.state_dict())  # same parameter names and shapes
    x = torch.randn(2, 11, 16)
    q, k, v = lin.qkv(x).reshape(2, 11, 3, 2, 8).permute(2, 0, 3, 1, 4)  # 3 x (B, H, N, Dh)
    ref = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1) @ v
    torch.testing.assert_close(softmax_attention(q, k, v), ref, atol=1e-5, rtol=1e-5)
    assert soft(x).shape == lin(x).shape == (2, 11, 16)


def test_attention_stats_report_smallest_positive_normaliser():
    q, k, _ = qkv()
    q = q.clone()
    q[0, 0, 3] = -1.0  # phi(q) = 0 for this query: normaliser 0, excluded
    stats = linear_attention_stats(q, k)
    den = torch.einsum("bhnd,bhmd->bhnm", q.relu(), k.relu()).sum(-1)
    assert stats["min_normaliser"] == pytest.approx(float(den[den > 0].min()), rel=1e-5)
    assert stats["min_normaliser"] > 0
    assert stats["max_q"] == pytest.approx(float(q.relu().max()))
