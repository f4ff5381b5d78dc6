"""2-D axial RoPE: frequencies, norm preservation, relative-position property, key repetition and exclusion."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from threeam.models.sam2.rope import apply_rope_qk, axial_angles, axial_cos_sin, rotate
from threeam.models.sam2.transformer import RoPEAttention


def test_angles_follow_columns_then_rows():
    dim, h, w = 16, 3, 5
    ang = axial_angles(dim, h, w, theta=10000.0)
    assert ang.shape == (h * w, dim // 2)
    freqs = 10000.0 ** (-torch.arange(0, dim, 4, dtype=torch.float32) / dim)
    for n in range(h * w):
        r, c = divmod(n, w)
        torch.testing.assert_close(ang[n, : dim // 4], c * freqs)
        torch.testing.assert_close(ang[n, dim // 4:], r * freqs)


def test_rotation_preserves_norms():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 36, 32, generator=g)
    cos, sin = axial_cos_sin(32, 6, 6)
    y = rotate(x, cos, sin)
    assert not torch.allclose(x, y)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    # every channel pair keeps its length, not just the whole vector
    pair = lambda t: t.reshape(*t.shape[:-1], -1, 2).norm(dim=-1)
    torch.testing.assert_close(pair(y), pair(x))


def test_scores_depend_only_on_relative_position():
    dim, h, w = 16, 6, 7
    g = torch.Generator().manual_seed(1)
    qv, kv = torch.randn(dim, generator=g), torch.randn(dim, generator=g)
    cos, sin = axial_cos_sin(dim, h, w)
    n = h * w
    q = rotate(qv.expand(n, dim), cos, sin)
    k = rotate(kv.expand(n, dim), cos, sin)
    scores = q @ k.T  # (n, n)
    idx = lambda r, c: r * w + c
    for (r1, c1), (r2, c2), (dr, dc) in [((0, 0), (2, 3), (1, 2)), ((4, 1), (1, 5), (1, 1)), ((3, 3), (3, 3), (2, -3))]:
        a = scores[idx(r1, c1), idx(r2, c2)]
        b = scores[idx(r1 + dr, c1 + dc), idx(r2 + dr, c2 + dc)]
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # and it does depend on the offset
    assert not torch.isclose(scores[idx(0, 0), idx(0, 1)], scores[idx(0, 0), idx(1, 0)])


def test_repeated_keys_share_the_query_positions():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(1, 2, 16, 8, generator=g)
    k = torch.randn(1, 2, 48, 8, generator=g)
    cos, sin = axial_cos_sin(8, 4, 4)
    _, k_rot = apply_rope_qk(q, k, cos, sin, repeat_k=True)
    for f in range(3):
        torch.testing.assert_close(k_rot[:, :, 16 * f:16 * (f + 1)], rotate(k[:, :, 16 * f:16 * (f + 1)], cos, sin))
    with pytest.raises(ValueError):
        apply_rope_qk(q, k, cos, sin, repeat_k=False)


def test_rope_attention_leaves_excluded_keys_unrotated():
    torch.manual_seed(3)
    attn = RoPEAttention(32, 2, downsample_rate=1, kv_in_dim=8, rope_k_repeat=True, feat_sizes=(4, 4)).eval()
    q_in = torch.randn(1, 16, 32)
    k_in = torch.randn(1, 2 * 16 + 4, 8)  # two memory frames + four pointer tokens
    out = attn(q_in, k_in, k_in, num_k_exclude_rope=4)

    cos, sin = axial_cos_sin(16, 4, 4)
    q, k, v = attn._project(q_in, k_in, k_in)
    q = rotate(q, cos, sin)
    k = torch.cat([rotate(k[:, :, :16], cos, sin), rotate(k[:, :, 16:32], cos, sin), k[:, :, 32:]], dim=2)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(16), dim=-1)
    expect = attn.out_proj((weights @ v).transpose(1, 2).reshape(1, 16, 32))
    torch.testing.assert_close(out, expect, rtol=1e-5, atol=1e-5)
    # leaving the second frame unrotated as well gives a different answer
    assert not torch.allclose(out, attn(q_in, k_in, k_in, num_k_exclude_rope=20), atol=1e-4)
