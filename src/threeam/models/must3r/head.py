"""MUSt3R linear head: per-token linear projection unpatchified to per-pixel channels."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LinearHead"]


class LinearHead(nn.Module):
    """``proj``: Linear(C, patch**2 * channels). Output feature ``c * p*p + py * p + px`` is channel ``c``
    of pixel ``(py, px)`` inside the patch (pixel-shuffle order).
    """

    def __init__(self, embed_dim: int, output_dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(embed_dim, output_dim, bias=True)

    def forward(self, tokens: Tensor, hw: tuple[int, int]) -> Tensor:
        """tokens (B, N, C) with N = (H/p)(W/p), hw = (H, W) pixels -> (B, H, W, channels)."""
        H, W = hw
        p = self.patch_size
        x = self.proj(tokens)  # (B, N, p*p*c)
        B = x.shape[0]
        x = x.transpose(1, 2).reshape(B, -1, H // p, W // p)
        return F.pixel_shuffle(x, p).permute(0, 2, 3, 1)
