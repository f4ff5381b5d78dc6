"""2-D rotary position embedding (RoPE2D) as used by CroCo / DUSt3R / MUSt3R.

Each attention head of width ``D`` is split in two halves: the first ``D/2`` channels are rotated
by the token's row index, the last ``D/2`` by its column index.  Inside a half of width ``d``
the frequencies are ``inv_freq[j] = F0 / freq ** (2 j / d)`` for ``j < d/2`` and the rotation uses
the *half-split* convention ``t * cos + rotate_half(t) * sin`` with
``rotate_half(t) = cat(-t[d/2:], t[:d/2])`` (not interleaved pairs).

``F0`` is the "adaptive frequency" factor of the ``RoPE100_A:B`` name form (``F0 = A / B``).
The module has no parameters, so it never appears in a state dict.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RoPE2D", "grid_positions", "parse_rope_name"]


def grid_positions(h: int, w: int, batch: int = 1, device=None) -> Tensor:
    """Integer (row, col) positions of an ``h x w`` token grid in row-major order.

    Returns a LongTensor of shape ``(batch, h*w, 2)``; ``[..., 0]`` is the row, ``[..., 1]`` the col.
    """
    rows = torch.arange(h, device=device, dtype=torch.long)
    cols = torch.arange(w, device=device, dtype=torch.long)
    grid = torch.cartesian_prod(rows, cols) if h * w > 0 else torch.zeros(0, 2, dtype=torch.long, device=device)
    grid = grid.reshape(h * w, 2)
    return grid.unsqueeze(0).expand(batch, h * w, 2).clone()


def parse_rope_name(name: str) -> tuple[float, float]:
    """Parse ``'RoPE100'`` or ``'RoPE100_A:B'`` into ``(freq, F0)`` without evaluating anything.

    >>> parse_rope_name("RoPE100_512:768")
    (100.0, 0.6666666666666666)
    """
    from threeam.errors import CheckpointError

    if not isinstance(name, str) or not name.startswith("RoPE"):
        raise CheckpointError(f"unsupported pos_embed {name!r}: expected 'RoPE<freq>' or 'RoPE<freq>_<A>:<B>'")
    body = name[len("RoPE"):]
    f0 = 1.0
    if "_" in body:
        body, ratio = body.split("_", 1)
        parts = ratio.split(":")
        if len(parts) != 2:
            raise CheckpointError(f"bad pos_embed {name!r}: the suffix must be '_<A>:<B>'")
        try:
            a, b = float(parts[0]), float(parts[1])
        except ValueError as exc:
            raise CheckpointError(f"bad pos_embed {name!r}: A and B must be numbers") from exc
        if a <= 0 or b <= 0:
            raise CheckpointError(f"bad pos_embed {name!r}: A and B must be positive")
        f0 = a / b
    try:
        freq = float(body)
    except ValueError as exc:
        raise CheckpointError(f"bad pos_embed {name!r}: frequency {body!r} is not a number") from exc
    if freq <= 0:
        raise CheckpointError(f"bad pos_embed {name!r}: frequency must be positive")
    return freq, f0


class RoPE2D(nn.Module):
    """Pure-PyTorch 2-D RoPE.

    Args:
        freq: base frequency (100 for ``RoPE100``).
        F0: frequency scale (``A/B`` for ``RoPE100_A:B``; 1 otherwise).
    """

    def __init__(self, freq: float = 100.0, F0: float = 1.0):
        super().__init__()
        self.base = float(freq)
        self.F0 = float(F0)
        self._cache: dict = {}

    def _cos_sin(self, d: int, max_pos: int, device, dtype) -> tuple[Tensor, Tensor]:
        key = (d, max_pos, device, dtype)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        inv_freq = self.F0 / (self.base ** (torch.arange(0, d, 2, device=device).float() / d))
        t = torch.arange(max_pos, device=device, dtype=inv_freq.dtype)
        freqs = torch.einsum("i,j->ij", t, inv_freq).to(dtype)
        freqs = torch.cat((freqs, freqs), dim=-1)
        out = (freqs.cos(), freqs.sin())
        if len(self._cache) > 32:
            self._cache.clear()
        self._cache[key] = out
        return out

    @staticmethod
    def _rotate_half(x: Tensor) -> Tensor:
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def _apply_1d(self, tokens: Tensor, pos1d: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        # tokens (B, heads, N, d); pos1d (B, N) -> cos/sin (B, 1, N, d)
        c = nn.functional.embedding(pos1d, cos)[:, None, :, :]
        s = nn.functional.embedding(pos1d, sin)[:, None, :, :]
        return tokens * c + self._rotate_half(tokens) * s

    def forward(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """Rotate ``tokens`` (B, heads, N, head_dim) by ``positions`` (B, N, 2) as (row, col).

        ``head_dim`` must be divisible by 4. Returns a tensor of the same shape and dtype.
        """
        if tokens.ndim != 4 or tokens.shape[-1] % 4 != 0:
            raise ValueError(f"RoPE2D expects (B, heads, N, head_dim) with head_dim % 4 == 0, got {tuple(tokens.shape)}")
        if positions.ndim != 3 or positions.shape[-1] != 2 or positions.shape[1] != tokens.shape[2]:
            raise ValueError(f"RoPE2D positions must be (B, N, 2) with N={tokens.shape[2]}, got {tuple(positions.shape)}")
        d = tokens.shape[-1] // 2
        positions = positions.long()
        if positions.device.type == "cpu":
            max_pos = int(positions.max().item()) + 1 if positions.numel() else 1
        else:
            # no host synchronisation on an accelerator: patch-grid coordinates of N tokens are < N
            # (the table's rows do not depend on its length, so the result is the same)
            max_pos = max(int(positions.shape[1]), 1)
        cos, sin = self._cos_sin(d, max_pos, tokens.device, tokens.dtype)
        y, x = tokens.chunk(2, dim=-1)
        y = self._apply_1d(y, positions[:, :, 0], cos, sin)
        x = self._apply_1d(x, positions[:, :, 1], cos, sin)
        return torch.cat((y, x), dim=-1)
