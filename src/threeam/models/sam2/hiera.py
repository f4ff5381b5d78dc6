"""Hiera trunk of the SAM 2 image encoder (hierarchical ViT with windowed attention).

Layout (official attribute names, so official checkpoints load unchanged):

- ``patch_embed.proj``: 7x7 stride-4 convolution, image (B, 3, S, S) -> tokens (B, S/4, S/4, C).
- ``pos_embed`` (1, C, bh, bw) is resized bicubically to the token grid and ``pos_embed_window``
  (1, C, w0, w0) is tiled over it (w0 = first-stage window size); both are added to the tokens.
- ``blocks.<i>``: ``sum(stages)`` transformer blocks. A block attends inside non-overlapping
  windows (``window_size`` > 0, the map is zero-padded to a multiple of it) or globally
  (``window_size`` == 0, the blocks listed in ``global_att_blocks``). The first block of
  stages 2..(q_pool+1) halves the resolution by max-pooling its queries (and its shortcut) and
  multiplies the width by ``dim_mul`` and the heads by ``head_mul``.

``forward`` returns the last token map of every stage as (B, C_s, H_s, W_s), highest resolution
first; ``channel_list`` lists the stage widths lowest resolution first (as the FPN neck expects).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from threeam.errors import InputError


def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Cut (B, H, W, C) into windows (B * nH * nW, ws, ws, C), zero-padding H and W up to multiples of ws.

    Returns the windows and the padded size (Hp, Wp).
    """
    b, h, w, c = x.shape
    pad_h = -h % window_size
    pad_w = -w % window_size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.reshape(b, hp // window_size, window_size, wp // window_size, window_size, c)
    windows = x.transpose(2, 3).reshape(-1, window_size, window_size, c)
    return windows, (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nH * nW, ws, ws, C) -> (B, H, W, C), padding removed."""
    hp, wp = pad_hw
    h, w = hw
    nh, nw = hp // window_size, wp // window_size
    b = windows.shape[0] // (nh * nw)
    x = windows.reshape(b, nh, nw, window_size, window_size, -1).transpose(2, 3).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :].contiguous()
    return x


def _pool_nhwc(x: torch.Tensor, pool: Optional[nn.Module]) -> torch.Tensor:
    """Apply a 2-D pooling module to a (B, H, W, C) map; returns (B, H', W', C)."""
    if pool is None:
        return x
    return pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """Image to token map: Conv2d (key ``proj``), then channels last. (B, 3, H, W) -> (B, H/4, W/4, C)."""

    def __init__(
        self,
        kernel_size: tuple[int, int] = (7, 7),
        stride: tuple[int, int] = (4, 4),
        padding: tuple[int, int] = (3, 3),
        in_chans: int = 3,
        embed_dim: int = 768,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class _TwoLayerMLP(nn.Module):
    """Linear -> activation -> Linear with official keys ``layers.0`` and ``layers.1``. (..., d) -> (..., d_out)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(input_dim, hidden_dim), nn.Linear(hidden_dim, output_dim)])
        self.act = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[1](self.act(self.layers[0](x)))


class _DropPath(nn.Module):
    """Stochastic depth per sample (identity at eval time or with drop_prob 0)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention on a (B, H, W, dim) map with optional query pooling.

    Output: (B, H', W', dim_out) where (H', W') is (H, W) after ``q_pool`` (unchanged without it).
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_pool: Optional[nn.Module] = None) -> None:
        super().__init__()
        if dim_out % num_heads != 0:
            raise ValueError(f"dim_out={dim_out} is not divisible by num_heads={num_heads}")
        self.dim = dim
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.q_pool = q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        heads = self.num_heads
        # (B, HW, 3, heads, hd) -> three (B, heads, HW, hd)
        qkv = self.qkv(x).reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.q_pool is not None:
            # Pool queries spatially: (B, heads, HW, hd) -> (B, H, W, heads*hd) -> pooled -> back.
            hd = q.shape[-1]
            q_map = q.permute(0, 2, 1, 3).reshape(b, h, w, heads * hd)
            q_map = _pool_nhwc(q_map, self.q_pool)
            h, w = q_map.shape[1:3]
            q = q_map.reshape(b, h * w, heads, hd).permute(0, 2, 1, 3)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, H'W', hd)
        out = out.permute(0, 2, 1, 3).reshape(b, h, w, -1)
        return self.proj(out)


class MultiScaleBlock(nn.Module):
    """One Hiera block: (B, H, W, dim) -> (B, H', W', dim_out), H' = H / q_stride when pooling."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        norm_layer: str | type[nn.Module] = "LayerNorm",
        q_stride: Optional[tuple[int, int]] = None,
        act_layer: type[nn.Module] = nn.GELU,
        window_size: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(norm_layer, str):
            norm_cls = getattr(nn, norm_layer)

            def make_norm(d: int) -> nn.Module:
                return norm_cls(d, eps=1e-6)
        else:
            make_norm = norm_layer
        self.dim = dim
        self.dim_out = dim_out
        self.window_size = window_size
        self.norm1 = make_norm(dim)
        self.q_stride = tuple(q_stride) if q_stride else None
        self.pool = nn.MaxPool2d(kernel_size=self.q_stride, stride=self.q_stride, ceil_mode=False) if self.q_stride else None
        self.attn = MultiScaleAttention(dim, dim_out, num_heads=num_heads, q_pool=self.pool)
        self.drop_path = _DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = make_norm(dim_out)
        self.mlp = _TwoLayerMLP(dim_out, int(dim_out * mlp_ratio), dim_out, activation=act_layer)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = _pool_nhwc(self.proj(x), self.pool)
        elif self.pool is not None:
            shortcut = _pool_nhwc(shortcut, self.pool)

        ws = self.window_size
        if ws > 0:
            x, pad_hw = window_partition(x, ws)
        x = self.attn(x)
        if ws > 0:
            h, w = shortcut.shape[1:3]
            if self.q_stride:
                # Each window shrank by the query stride; the padded grid follows the pooled map.
                ws = ws // self.q_stride[0]
                pad_hw = (h + (-h % ws), w + (-w % ws))
            x = window_unpartition(x, ws, pad_hw, (h, w))

        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Hiera(nn.Module):
    """Hiera trunk. Image (B, 3, S, S) -> list of stage outputs (B, C_s, S/4/2^s, S/4/2^s), s = 0..3.

    Arguments and defaults follow the official ``Hiera`` (Hiera-B+ values).
    """

    def __init__(
        self,
        embed_dim: int = 96,
        num_heads: int = 1,
        drop_path_rate: float = 0.0,
        q_pool: int = 3,
        q_stride: tuple[int, int] = (2, 2),
        stages: Sequence[int] = (2, 3, 16, 3),
        dim_mul: float = 2.0,
        head_mul: float = 2.0,
        window_pos_embed_bkg_spatial_size: Sequence[int] = (14, 14),
        window_spec: Sequence[int] = (8, 4, 14, 7),
        global_att_blocks: Sequence[int] = (12, 16, 20),
        weights_path: None = None,
        return_interm_layers: bool = True,
    ) -> None:
        super().__init__()
        if len(stages) != len(window_spec):
            raise ValueError(f"stages {list(stages)} and window_spec {list(window_spec)} must have the same length")
        if weights_path is not None:
            raise ValueError("Hiera(weights_path=...) is not supported; load weights with threeam's checkpoint loader")
        self.window_spec = list(window_spec)
        self.q_stride = tuple(q_stride)
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        if not 0 <= q_pool <= len(self.stage_ends) - 1:
            raise ValueError(f"q_pool must be in [0, {len(self.stage_ends) - 1}], got {q_pool}")
        self.q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]][:q_pool]
        self.return_interm_layers = return_interm_layers
        self.global_att_blocks = list(global_att_blocks) if global_att_blocks is not None else None
        self.window_pos_embed_bkg_spatial_size = tuple(window_pos_embed_bkg_spatial_size)

        self.patch_embed = PatchEmbed(embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *self.window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, self.window_spec[0], self.window_spec[0]))

        depth = sum(stages)
        drop_rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist() if depth else []
        self.blocks = nn.ModuleList()
        stage = 0
        dim = embed_dim
        heads = num_heads
        for i in range(depth):
            # The window size lags by one block: the first block of a stage still uses the
            # previous stage's window (it pools the queries inside those windows).
            window_size = self.window_spec[stage]
            if self.global_att_blocks is not None and i in self.global_att_blocks:
                window_size = 0
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out = int(dim * dim_mul)
                heads = int(heads * head_mul)
                stage += 1
            self.blocks.append(
                MultiScaleBlock(
                    dim=dim,
                    dim_out=dim_out,
                    num_heads=heads,
                    drop_path=drop_rates[i],
                    q_stride=self.q_stride if i in self.q_pool_blocks else None,
                    window_size=window_size,
                )
            )
            dim = dim_out

        ends = self.stage_ends[::-1] if return_interm_layers else [self.stage_ends[-1]]
        self.channel_list = [self.blocks[i].dim_out for i in ends]

    def _get_pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        """(1, H, W, C) position embedding for an H x W token grid."""
        h, w = hw
        win = self.pos_embed_window
        wh, ww = win.shape[-2:]
        if h % wh or w % ww:
            raise InputError(
                f"token grid {h}x{w} is not a multiple of the first window size {wh}x{ww}; "
                f"use an image size that is a multiple of {4 * wh}"
            )
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        pos = pos + win.tile(1, 1, h // wh, w // ww)
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, S, S) normalised image -> stage outputs (B, C_s, H_s, W_s), high resolution first."""
        x = self.patch_embed(x)
        x = x + self._get_pos_embed(tuple(x.shape[1:3]))
        outputs = []
        last = self.stage_ends[-1]
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == last or (self.return_interm_layers and i in self.stage_ends):
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
