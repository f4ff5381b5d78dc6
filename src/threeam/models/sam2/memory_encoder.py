"""Memory encoder: fuses the stride-16 image feature with a predicted mask into a memory feature."""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from threeam.models.sam2.mlp import LayerNorm2d


class MaskDownSampler(nn.Module):
    """Downsamples a (B, 1, H, W) mask by `total_stride` in steps of `stride`.

    Each step is conv (channels x stride**2) -> LayerNorm2d -> activation; a final 1x1
    conv maps to `embed_dim`. Output (B, embed_dim, H / total_stride, W / total_stride).
    State-dict keys: ``encoder.<i>.*`` with the official Sequential indices.
    """

    def __init__(self, embed_dim: int = 256, kernel_size: int = 4, stride: int = 4, padding: int = 0,
                 total_stride: int = 16, activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        num_layers = int(math.log2(total_stride) // math.log2(stride))
        if stride ** num_layers != total_stride:
            raise ValueError(f"total_stride {total_stride} is not a power of stride {stride}")
        self.encoder = nn.Sequential()
        ch_in = ch_out = 1
        for _ in range(num_layers):
            ch_out = ch_in * stride * stride
            self.encoder.append(nn.Conv2d(ch_in, ch_out, kernel_size=kernel_size, stride=stride, padding=padding))
            self.encoder.append(LayerNorm2d(ch_out))
            self.encoder.append(activation())
            ch_in = ch_out
        self.encoder.append(nn.Conv2d(ch_out, embed_dim, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a whole sample's residual branch with probability `drop_prob`."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        if self.scale_by_keep and keep > 0.0:
            mask = mask / keep
        return x * mask


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv -> LayerNorm2d -> Linear (4x) -> GELU -> Linear -> layer scale, residual.

    (B, dim, H, W) -> (B, dim, H, W).
    """

    def __init__(self, dim: int, kernel_size: int = 7, padding: int = 3, drop_path: float = 0.0,
                 layer_scale_init_value: float = 1e-6, use_dwconv: bool = True) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=kernel_size, padding=padding, groups=dim if use_dwconv else 1)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = (nn.Parameter(layer_scale_init_value * torch.ones(dim))
                      if layer_scale_init_value > 0 else None)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = self.gamma * y
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class Fuser(nn.Module):
    """Optional 1x1 input projection followed by `num_layers` copies of `layer`. (B, C, H, W) -> same."""

    def __init__(self, layer: nn.Module, num_layers: int, dim: int | None = None, input_projection: bool = False):
        super().__init__()
        self.proj = nn.Identity()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        if input_projection:
            if dim is None:
                raise ValueError("Fuser with input_projection needs dim")
            self.proj = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Encodes (pix_feat, mask) into a memory feature and its positional encoding.

    pix_feat (B, in_dim, H, W) is the stride-16 image feature; masks (B, 1, 16H, 16W) are
    mask logits (or, with ``skip_mask_sigmoid``, already-scaled probabilities).
    Returns ``{"vision_features": (B, out_dim, H, W), "vision_pos_enc": [(B, out_dim, H, W)]}``.
    """

    def __init__(self, out_dim: int, mask_downsampler: nn.Module, fuser: nn.Module, position_encoding: nn.Module,
                 in_dim: int = 256) -> None:
        super().__init__()
        self.mask_downsampler = mask_downsampler
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = fuser
        self.position_encoding = position_encoding
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim else nn.Identity()

    def forward(self, pix_feat: Tensor, masks: Tensor, skip_mask_sigmoid: bool = False) -> dict:
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        masks = self.mask_downsampler(masks)
        x = self.pix_feat_proj(pix_feat.to(masks.device)) + masks
        x = self.out_proj(self.fuser(x))
        pos = self.position_encoding(x).to(x.dtype)
        return {"vision_features": x, "vision_pos_enc": [pos]}
