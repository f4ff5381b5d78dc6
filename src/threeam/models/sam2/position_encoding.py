"""Fixed 2-D sine/cosine position encoding used by the SAM 2 FPN neck and memory encoder.

For a feature map of size (H, W) every pixel (row r, column c), 1-based, gets the normalised
coordinates y = r / H * scale and x = c / W * scale (scale defaults to 2*pi). Each coordinate is
expanded into ``num_pos_feats // 2`` channels: channel pairs (2i, 2i+1) share the frequency
``temperature ** (2i / (num_pos_feats // 2))`` and hold (sin, cos) of coordinate / frequency.
The output stacks the y-channels first, then the x-channels: (B, num_pos_feats, H, W).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """Sine/cosine position encoding of a (B, C, H, W) map; it has no parameters.

    Args:
        num_pos_feats: number of output channels (must be even); half encode y, half encode x.
        temperature: base of the geometric frequency progression.
        normalize: divide the 1-based coordinates by the map size (so they lie in (0, 1]).
        scale: multiplier applied after normalising; 2*pi when None. Requires ``normalize``.
    """

    def __init__(
        self,
        num_pos_feats: int,
        temperature: int = 10000,
        normalize: bool = True,
        scale: Optional[float] = None,
        **_unused_cache_options,
    ) -> None:
        super().__init__()
        if num_pos_feats % 2 != 0:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        if scale is not None and not normalize:
            raise ValueError("scale can only be given together with normalize=True")
        # As in the official module, this attribute holds the per-axis channel count.
        self.num_pos_feats = num_pos_feats // 2
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self._cache: dict[tuple[int, int, str], torch.Tensor] = {}

    def _frequencies(self, device: torch.device) -> torch.Tensor:
        """(num_pos_feats // 2,) float32 divisors; pairs (2i, 2i+1) share a value."""
        n = self.num_pos_feats
        idx = torch.arange(n, dtype=torch.float32, device=device)
        return self.temperature ** (2 * torch.div(idx, 2, rounding_mode="floor") / n)

    def _sin_cos(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (...,) already scaled -> (..., num_pos_feats // 2) interleaved sin/cos."""
        angles = coords[..., None] / self._frequencies(coords.device)
        out = torch.empty_like(angles)
        out[..., 0::2] = angles[..., 0::2].sin()
        out[..., 1::2] = angles[..., 1::2].cos()
        return out

    def _encode_xy(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x, y: (N,) coordinates normalised to [0, 1] -> two (N, num_pos_feats // 2) encodings."""
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"x and y must be 1-D of equal length, got {tuple(x.shape)} and {tuple(y.shape)}")
        return self._sin_cos(x.float() * self.scale), self._sin_cos(y.float() * self.scale)

    @torch.no_grad()
    def encode_boxes(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Box centres x, y (N,) in [0, 1] and sizes w, h (N,) -> (N, num_pos_feats + 2)."""
        pos_x, pos_y = self._encode_xy(x, y)
        return torch.cat((pos_y, pos_x, h[:, None], w[:, None]), dim=1)

    encode = encode_boxes

    @torch.no_grad()
    def encode_points(self, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Points x, y, labels (B, N) -> (B, N, num_pos_feats + 1)."""
        b, n = x.shape
        pos_x, pos_y = self._encode_xy(x.flatten(), y.flatten())
        return torch.cat((pos_y.reshape(b, n, -1), pos_x.reshape(b, n, -1), labels[:, :, None]), dim=2)

    @torch.no_grad()
    def _grid(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """(num_pos_feats, H, W) float32 encoding of an H x W grid (cached per size and device)."""
        key = (h, w, str(device))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        ys = torch.arange(1, h + 1, dtype=torch.float32, device=device)
        xs = torch.arange(1, w + 1, dtype=torch.float32, device=device)
        if self.normalize:
            eps = 1e-6
            ys = ys / (ys[-1:] + eps) * self.scale
            xs = xs / (xs[-1:] + eps) * self.scale
        enc_y = self._sin_cos(ys)  # (H, F)
        enc_x = self._sin_cos(xs)  # (W, F)
        f = enc_y.shape[-1]
        grid = torch.cat(
            (enc_y.t()[:, :, None].expand(f, h, w), enc_x.t()[:, None, :].expand(f, h, w)), dim=0
        ).contiguous()
        if device.type != "meta":
            self._cache[key] = grid
        return grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) (only its shape and device are used) -> (B, num_pos_feats, H, W) float32."""
        b, _, h, w = x.shape
        return self._grid(h, w, x.device)[None].expand(b, -1, -1, -1).clone()
