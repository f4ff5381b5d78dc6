"""MUSt3R / DUSt3R ViT encoder (``Dust3rEncoder``): patch embedding + RoPE ViT, always in float32."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from threeam.errors import InputError
from threeam.models.must3r.blocks import EncoderBlock
from threeam.models.must3r.config import Must3rEncoderConfig
from threeam.models.must3r.rope import RoPE2D, grid_positions, parse_rope_name

__all__ = ["PatchEmbed", "Must3rEncoder"]


class PatchEmbed(nn.Module):
    """``proj``: Conv2d(3, C, patch, stride=patch). Images (B, 3, H, W) -> tokens (B, N, C), pos (B, N, 2)."""

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        p = self.patch_size
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"MUSt3R encoder expects images of shape (B, 3, H, W), got {tuple(images.shape)}")
        H, W = images.shape[-2:]
        if H % p or W % p or H == 0 or W == 0:
            raise InputError(f"MUSt3R image height and width must be positive multiples of {p}, got {H}x{W}")
        x = self.proj(images)  # (B, C, h, w)
        B, _, h, w = x.shape
        return x.flatten(2).transpose(1, 2), grid_positions(h, w, batch=B, device=images.device)


class Must3rEncoder(nn.Module):
    """ViT encoder with official keys ``patch_embed.proj``, ``blocks_enc.{i}``, ``norm_enc``.

    ``forward(images (B, 3, H, W) in [-1, 1])`` returns ``tokens (B, N, C)`` and ``pos (B, N, 2)``
    with ``N = (H/16)(W/16)`` in row-major order. Runs in float32 even under CUDA autocast.
    """

    def __init__(self, config: Must3rEncoderConfig = Must3rEncoderConfig()):
        super().__init__()
        self.config = config
        freq, f0 = parse_rope_name(config.pos_embed)
        self.rope = RoPE2D(freq, f0)
        self.patch_embed = PatchEmbed(config.patch_size, config.embed_dim)
        self.blocks_enc = nn.ModuleList(
            EncoderBlock(config.embed_dim, config.num_heads, config.mlp_ratio, self.rope) for _ in range(config.depth)
        )
        self.norm_enc = nn.LayerNorm(config.embed_dim, eps=1e-6)

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    def forward(self, images: Tensor, true_shape: Optional[Sequence[int]] = None) -> tuple[Tensor, Tensor]:
        """images (B, 3, H, W) -> tokens (B, N, C) float32, pos (B, N, 2) int64."""
        if true_shape is not None and tuple(int(v) for v in true_shape) != tuple(images.shape[-2:]):
            raise InputError(f"true_shape {tuple(true_shape)} does not match the image size {tuple(images.shape[-2:])}")
        with torch.autocast(images.device.type, enabled=False):
            x, pos = self.patch_embed(images.float())
            for blk in self.blocks_enc:
                x = blk(x, pos)
            x = self.norm_enc(x)
        return x, pos
