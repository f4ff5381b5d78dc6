"""2-D axial rotary position embedding (RoPE) as used by SAM 2's memory attention.

Channels of a head of width `dim` are taken as `dim // 2` adjacent pairs
``(x[2j], x[2j+1])``; each pair is rotated by an angle that depends on the token's
position on an (H, W) grid. The first `dim // 4` pairs rotate with the column index,
the last `dim // 4` pairs with the row index, with frequencies
``theta ** (-4 i / dim)`` for ``i = 0 .. dim//4 - 1``. Tokens are in row-major order
(token ``n`` sits at row ``n // W``, column ``n % W``).

Rotation keeps every pair's norm, and the dot product of a rotated query at position
``p`` with a rotated key at position ``p'`` depends on the positions only through
``p - p'`` (the relative-position property).

These frequencies are not part of any state dict; they are recomputed from the grid size.
"""
from __future__ import annotations

import torch


def axial_angles(dim: int, height: int, width: int, theta: float = 10000.0,
                 device: torch.device | None = None) -> torch.Tensor:
    """Rotation angles for every token of an (height, width) grid.

    Returns a float32 tensor of shape (height * width, dim // 2).
    """
    if dim % 4 != 0:
        raise ValueError(f"axial RoPE needs a head width divisible by 4, got {dim}")
    quarter = dim // 4
    exponents = torch.arange(0, dim, 4, device=device, dtype=torch.float32)[:quarter] / dim
    freqs = 1.0 / (theta ** exponents)  # (dim/4,)
    n = torch.arange(height * width, device=device, dtype=torch.float32)
    col = n % width
    row = torch.div(n, width, rounding_mode="floor")
    return torch.cat([torch.outer(col, freqs), torch.outer(row, freqs)], dim=-1)


def axial_cos_sin(dim: int, height: int, width: int, theta: float = 10000.0,
                  device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of :func:`axial_angles`, each (height * width, dim // 2), float32."""
    ang = axial_angles(dim, height, width, theta, device)
    return torch.cos(ang), torch.sin(ang)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the channel pairs of `x` (..., N, dim) by angles given as cos/sin (N, dim // 2).

    Computed in float32 and cast back to the dtype of `x`.
    """
    xf = x.float()
    pairs = xf.reshape(*xf.shape[:-1], -1, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)


def apply_rope_qk(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  repeat_k: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply RoPE to queries (B, heads, Nq, dim) and keys (B, heads, Nk, dim).

    `cos`/`sin` are (Nq, dim // 2). With ``repeat_k`` the keys are several grids of Nq
    tokens one after another (memory frames), and each gets the same positions as the
    queries (Nk must then be a multiple of Nq); otherwise Nk must equal Nq.
    An empty key set (Nk == 0) is returned unchanged.
    """
    q_out = rotate(q, cos, sin)
    nq, nk = q.shape[-2], k.shape[-2]
    if nk == 0:
        return q_out, k
    if nk != nq:
        if not repeat_k or nk % nq != 0:
            raise ValueError(
                f"RoPE keys ({nk} tokens) must match the queries ({nq}) or be a multiple of them with repeat_k")
    if nk != nq or repeat_k:
        reps = nk // nq
        cos = cos.repeat(reps, 1)
        sin = sin.repeat(reps, 1)
    return q_out, rotate(k, cos, sin)
