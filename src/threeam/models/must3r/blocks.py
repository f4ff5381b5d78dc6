"""Transformer building blocks shared by the MUSt3R encoder and decoder (official attribute names)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from threeam.models.must3r.rope import RoPE2D

__all__ = ["Mlp", "SelfAttention", "EncoderBlock", "MemoryCrossAttention", "DecoderBlock"]


class Mlp(nn.Module):
    """``fc1 -> GELU (exact) -> fc2``."""

    def __init__(self, dim: int, hidden: int, out_dim: Optional[int] = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_dim or dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention with 2-D RoPE on queries and keys.

    ``qkv`` output channels are laid out ``[q | k | v]``, each of ``num_heads`` contiguous heads.
    """

    def __init__(self, dim: int, num_heads: int, rope: Optional[RoPE2D]):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """x (B, N, C), pos (B, N, 2) -> (B, N, C)."""
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, N, hd)
        if self.rope is not None:
            q = self.rope(q, pos)
            k = self.rope(k, pos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class EncoderBlock(nn.Module):
    """Pre-norm ViT block: ``x += attn(norm1(x))``; ``x += mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, rope: RoPE2D):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads, rope)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), pos)
        return x + self.mlp(self.norm2(x))


class MemoryCrossAttention(nn.Module):
    """Cross-attention of frame tokens to memory tokens, without any positional encoding.

    Keys and values are projected by ``projk``/``projv`` (possibly ahead of time: the ``kv`` memory
    mode stores them); queries by ``projq``.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim, bias=True)
        self.projk = nn.Linear(dim, dim, bias=True)
        self.projv = nn.Linear(dim, dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def project_kv(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """y (B, M, C) already normalised -> keys, values (B, M, C)."""
        return self.projk(y), self.projv(y)

    def forward(self, x: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """x (B, N, C); keys, values (B, M, C), already projected -> (B, N, C)."""
        B, N, C = x.shape
        M = keys.shape[1]
        h = self.num_heads
        q = self.projq(x).reshape(B, N, h, C // h).transpose(1, 2)
        k = keys.reshape(B, M, h, C // h).transpose(1, 2)
        v = values.reshape(B, M, h, C // h).transpose(1, 2)
        if q.dtype != v.dtype:
            q = q.to(v.dtype)
        if k.dtype != v.dtype:
            k = k.to(v.dtype)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class DecoderBlock(nn.Module):
    """Decoder block: RoPE self-attention, cross-attention to the layer's memory, MLP (all pre-norm).

    The memory of a layer is stored in one of three forms (``memory_mode``), none of which changes
    the weights:

    * ``raw``: the tokens themselves (width C); ``norm_y`` and the K/V projections run at read time;
    * ``norm_y``: ``norm_y(tokens)`` (width C);
    * ``kv``: ``cat(projk(norm_y(t)), projv(norm_y(t)))`` (width 2C), a KV cache.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, rope: RoPE2D, memory_mode: str = "kv"):
        super().__init__()
        self.memory_mode = memory_mode
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads, rope)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.norm_y = nn.LayerNorm(dim, eps=1e-6)
        self.cross_attn = MemoryCrossAttention(dim, num_heads)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def to_memory(self, tokens: Tensor) -> Tensor:
        """tokens (B, M, C) -> their stored form (B, M, C or 2C) for this block's memory mode."""
        if self.memory_mode == "raw":
            return tokens
        y = self.norm_y(tokens).to(tokens.dtype)
        if self.memory_mode == "norm_y":
            return y
        k, v = self.cross_attn.project_kv(y)
        return torch.cat([k, v], dim=-1)

    def memory_kv(self, memory: Tensor, dim: int) -> tuple[Tensor, Tensor]:
        """Stored memory (B, M, C or 2C) -> keys, values (B, M, C)."""
        if self.memory_mode == "kv":
            return memory[..., :dim], memory[..., dim:]
        y = self.norm_y(memory) if self.memory_mode == "raw" else memory
        return self.cross_attn.project_kv(y)

    def forward(self, x: Tensor, memory: Tensor, pos: Tensor) -> Tensor:
        """x (B, N, C) tokens, memory (B, M, C|2C) in stored form, pos (B, N, 2) -> (B, N, C)."""
        x = x + self.attn(self.norm1(x), pos)
        k, v = self.memory_kv(memory, x.shape[-1])
        x = x + self.cross_attn(self.norm2(x), k, v)
        return x + self.mlp(self.norm3(x))
