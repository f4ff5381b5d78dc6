import math

import pytest
import torch

from threeam.errors import CheckpointError
from threeam.models.must3r.rope import RoPE2D, grid_positions, parse_rope_name


def test_grid_positions_row_major():
    pos = grid_positions(2, 3, batch=2)
    assert pos.shape == (2, 6, 2) and pos.dtype == torch.long
    assert pos[0].tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    assert torch.equal(pos[0], pos[1])


def _reference_rope(t, pos, base=100.0, f0=1.0):
    # explicit per-element loop formula (half split, rotate_half)
    B, H, N, D = t.shape
    out = torch.empty_like(t)
    d = D // 2
    for half, axis in ((0, 0), (1, 1)):
        seg = t[..., half * d:(half + 1) * d]
        for j in range(d):
            jj = j % (d // 2)
            inv = f0 / base ** (2 * jj / d)
            ang = pos[:, :, axis].double() * inv  # (B, N)
            c, s = torch.cos(ang)[:, None], torch.sin(ang)[:, None]
            other = -seg[..., j + d // 2] if j < d // 2 else seg[..., j - d // 2]
            out[..., half * d + j] = (seg[..., j].double() * c + other.double() * s).to(t.dtype)
    return out


@pytest.mark.parametrize("f0", [1.0, 512 / 768])
def test_rope_matches_formula(f0):
    torch.manual_seed(0)
    t = torch.randn(2, 3, 12, 16)
    pos = grid_positions(3, 4, batch=2)
    pos[1] = pos[1].flip(0)
    out = RoPE2D(100.0, f0)(t, pos)
    ref = _reference_rope(t, pos, 100.0, f0)
    assert out.shape == t.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_rope_relative_property_and_norm():
    torch.manual_seed(1)
    rope = RoPE2D()
    q = torch.randn(1, 1, 1, 8).expand(1, 1, 2, 8)
    k = torch.randn(1, 1, 1, 8).expand(1, 1, 2, 8)
    pa = torch.tensor([[[1, 2], [5, 7]]])
    pb = pa + torch.tensor([3, 4])
    qa, ka = rope(q, pa), rope(k, pa)
    qb, kb = rope(q, pb), rope(k, pb)
    # dot products depend only on relative positions
    assert math.isclose((qa[0, 0, 0] @ ka[0, 0, 1]).item(), (qb[0, 0, 0] @ kb[0, 0, 1]).item(), rel_tol=1e-4)
    torch.testing.assert_close(qa.norm(dim=-1), q.norm(dim=-1))


def test_parse_rope_name():
    assert parse_rope_name("RoPE100") == (100.0, 1.0)
    freq, f0 = parse_rope_name("RoPE100_512:768")
    assert freq == 100.0 and math.isclose(f0, 512 / 768)
    for bad in ["cosine", "RoPE", "RoPE100_512", "RoPE100_a:b", "RoPE__import__('os')"]:
        with pytest.raises(CheckpointError):
            parse_rope_name(bad)
