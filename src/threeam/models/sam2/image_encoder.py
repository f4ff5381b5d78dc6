"""SAM 2 image encoder: Hiera trunk + FPN neck (official attribute names ``trunk``, ``neck``).

``ImageEncoder(image)`` returns a dict:

- ``backbone_fpn``: list of (B, d_model, H_l, W_l) maps, highest resolution first (stride 4, 8, 16
  for the official configs with ``scalp=1``; the stride-32 level is dropped),
- ``vision_pos_enc``: matching list of (B, d_model, H_l, W_l) sine position encodings,
- ``vision_features``: the last (lowest-resolution kept) level of ``backbone_fpn``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from threeam.errors import InputError


class FpnNeck(nn.Module):
    """Feature pyramid over the trunk's stage outputs (no output convs).

    Every level gets a lateral 1x1 conv to ``d_model`` (``convs.<j>.conv``, j = 0 for the lowest
    resolution). Levels in ``fpn_top_down_levels`` also add the 2x upsampled (``fpn_interp_model``)
    result of the level below; the others keep their lateral features only.

    forward(xs: list of (B, C_i, H_i, W_i), highest resolution first, C_i = backbone_channel_list[-1 - i])
    -> (features, pos): two lists of (B, d_model, H_i, W_i) in the same order.
    """

    def __init__(
        self,
        position_encoding: nn.Module,
        d_model: int,
        backbone_channel_list: Sequence[int],
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        fpn_interp_model: str = "bilinear",
        fuse_type: str = "sum",
        fpn_top_down_levels: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__()
        if fuse_type not in ("sum", "avg"):
            raise ValueError(f"fuse_type must be 'sum' or 'avg', got {fuse_type!r}")
        self.position_encoding = position_encoding
        self.backbone_channel_list = list(backbone_channel_list)
        self.d_model = d_model
        self.convs = nn.ModuleList()
        for channels in self.backbone_channel_list:
            lateral = nn.Sequential()
            lateral.add_module(
                "conv",
                nn.Conv2d(channels, d_model, kernel_size=kernel_size, stride=stride, padding=padding),
            )
            self.convs.append(lateral)
        self.fpn_interp_model = fpn_interp_model
        self.fuse_type = fuse_type
        if fpn_top_down_levels is None:
            fpn_top_down_levels = range(len(self.convs))
        self.fpn_top_down_levels = list(fpn_top_down_levels)

    def forward(self, xs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        n = len(self.convs)
        if len(xs) != n:
            raise ValueError(f"FpnNeck expects {n} feature levels, got {len(xs)}")
        features: list[Optional[torch.Tensor]] = [None] * n
        pos: list[Optional[torch.Tensor]] = [None] * n
        prev: Optional[torch.Tensor] = None
        # From the lowest resolution (last) up to the highest (first).
        for i in reversed(range(n)):
            lateral = self.convs[n - 1 - i](xs[i])
            if prev is not None and i in self.fpn_top_down_levels:
                align = None if self.fpn_interp_model == "nearest" else False
                top_down = F.interpolate(
                    prev.to(torch.float32),
                    scale_factor=2.0,
                    mode=self.fpn_interp_model,
                    align_corners=align,
                    antialias=False,
                )
                prev = lateral + top_down
                if self.fuse_type == "avg":
                    prev = prev / 2
            else:
                prev = lateral
            features[i] = prev
            pos[i] = self.position_encoding(prev).to(prev.dtype)
        return features, pos  # type: ignore[return-value]


class ImageEncoder(nn.Module):
    """Trunk + neck. image (B, 3, S, S), ImageNet-normalised -> dict (see module docstring)."""

    def __init__(self, trunk: nn.Module, neck: nn.Module, scalp: int = 0) -> None:
        super().__init__()
        trunk_channels = list(getattr(trunk, "channel_list", []))
        neck_channels = list(getattr(neck, "backbone_channel_list", []))
        if trunk_channels != neck_channels:
            raise ValueError(
                f"trunk channel_list {trunk_channels} does not match neck backbone_channel_list {neck_channels}"
            )
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, sample: torch.Tensor) -> dict:
        if sample.ndim != 4 or sample.shape[1] != 3:
            raise InputError(f"ImageEncoder expects a (B, 3, H, W) image batch, got shape {tuple(sample.shape)}")
        features, pos = self.neck(self.trunk(sample))
        if self.scalp > 0:
            features, pos = features[: -self.scalp], pos[: -self.scalp]
        return {"vision_features": features[-1], "vision_pos_enc": pos, "backbone_fpn": features}
