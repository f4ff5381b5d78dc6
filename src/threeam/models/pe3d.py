"""PE3D: a 3-D positional encoding of MUSt3R tokens from its pointmap and ray map.

The 3AM paper says only that PE3D is made by "processing" MUSt3R's pointmap and ray map.
Our choice (documented in docs/merger.md):

1. **Pool to the token grid.** The per-pixel pointmap (B, H, W, 3) and ray map (B, H, W, 3)
   (H = patch * h, W = patch * w) are averaged over each token's patch, giving one 3-D point
   and one ray per token. Non-finite values are treated as zero.
2. **Normalise.** Points are divided by a scale ``s``: by default the median distance to the
   origin of the frame's pooled points (a "median depth"; MUSt3R's points live in the
   reference camera's frame, whose origin is that camera). A caller that wants the same 3-D
   location to get the same code in every frame of a clip passes one scale for the whole
   clip (e.g. :func:`pointmap_scale` of the first frame). Normalised coordinates are clamped
   to ``[-max_coord, max_coord]`` so a few far points cannot dominate. Rays are made unit length.
3. **Fourier features.** For each of the 6 coordinates ``c``: ``c`` itself and
   ``sin(2^k * pi * c), cos(2^k * pi * c)`` for ``k = 0 .. num_freqs - 1``.
4. **MLP** ``Linear(6 * (1 + 2 * num_freqs), width) -> GELU -> Linear(width, width)``.

Output: (B, h * w, width), tokens in row-major order (MUSt3R's order).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from threeam.errors import InputError

__all__ = ["PE3D", "pool_to_tokens", "pointmap_scale", "fourier_features", "ray_map"]


def ray_map(local_points: torch.Tensor, cam_to_world: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel viewing rays from MUSt3R's camera-frame pointmap.

    MUSt3R has no ray output; a pixel's ray is the unit direction from its camera to its 3-D
    point, i.e. ``normalize(p_local)`` in the camera frame, rotated into the reference frame by
    ``cam_to_world`` ((B, 4, 4) or (B, 3, 3); only the rotation is used) when given.
    local_points: (B, H, W, 3) -> (B, H, W, 3) unit vectors (zero where the point is zero).
    """
    if local_points.dim() != 4 or local_points.shape[-1] != 3:
        raise InputError(f"local_points must have shape (B, H, W, 3), got {tuple(local_points.shape)}")
    rays = F.normalize(local_points.float(), dim=-1, eps=1e-12)
    if cam_to_world is not None:
        if cam_to_world.dim() != 3 or cam_to_world.shape[0] != rays.shape[0] or \
                tuple(cam_to_world.shape[1:]) not in ((3, 3), (4, 4)):
            raise InputError(f"cam_to_world must have shape ({rays.shape[0]}, 4, 4) or ({rays.shape[0]}, 3, 3), "
                             f"got {tuple(cam_to_world.shape)}")
        rot = cam_to_world[:, :3, :3].float()
        rays = torch.einsum("bij,bhwj->bhwi", rot, rays)
    return rays


def pool_to_tokens(pixel_map: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Average a per-pixel map (B, H, W, C) over each token's patch: returns (B, h * w, C).

    H and W must be multiples of h and w (each token covers an (H/h) x (W/w) patch).
    Non-finite entries count as zero.
    """
    b, hh, ww, c = pixel_map.shape
    h, w = grid_hw
    if hh % h or ww % w:
        raise InputError(f"a per-pixel map of size {hh}x{ww} cannot be pooled onto a {h}x{w} token grid "
                         "(sizes must be multiples)")
    x = torch.nan_to_num(pixel_map.float(), nan=0.0, posinf=0.0, neginf=0.0).permute(0, 3, 1, 2)
    x = F.avg_pool2d(x, kernel_size=(hh // h, ww // w))
    return x.flatten(2).transpose(1, 2)


def pointmap_scale(points: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Median distance to the origin of a point set: points (B, ..., 3) -> (B,), at least ``eps``."""
    dist = points.float().reshape(points.shape[0], -1, 3).norm(dim=-1)
    return dist.median(dim=1).values.clamp(min=eps)


def fourier_features(x: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """(..., D) -> (..., D * (1 + 2 * num_freqs)): x, then sin and cos of 2^k * pi * x."""
    if num_freqs == 0:
        return x
    freqs = (2.0 ** torch.arange(num_freqs, device=x.device, dtype=x.dtype)) * math.pi
    angles = (x.unsqueeze(-1) * freqs).flatten(-2)  # (..., D * num_freqs)
    return torch.cat([x, angles.sin(), angles.cos()], dim=-1)


class PE3D(nn.Module):
    """3-D positional encoding of MUSt3R tokens (see the module docstring).

    forward(pointmap (B, H, W, 3), raymap (B, H, W, 3), grid_hw (h, w), scale (B,) or None)
    -> (B, h * w, width).
    """

    def __init__(self, width: int, num_freqs: int = 6, max_coord: float = 8.0) -> None:
        super().__init__()
        self.num_freqs = num_freqs
        self.max_coord = max_coord
        in_dim = 6 * (1 + 2 * num_freqs)
        self.mlp = nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, pointmap: torch.Tensor, raymap: torch.Tensor, grid_hw: tuple[int, int],
                scale: torch.Tensor | None = None) -> torch.Tensor:
        for name, t in (("pointmap", pointmap), ("raymap", raymap)):
            if t.dim() != 4 or t.shape[-1] != 3:
                raise InputError(f"{name} must have shape (B, H, W, 3), got {tuple(t.shape)}")
        if pointmap.shape != raymap.shape:
            raise InputError(f"pointmap {tuple(pointmap.shape)} and raymap {tuple(raymap.shape)} differ in shape")
        pts = pool_to_tokens(pointmap, grid_hw)  # (B, N, 3), float32
        rays = pool_to_tokens(raymap, grid_hw)
        if scale is None:
            scale = pointmap_scale(pts)
        scale = torch.as_tensor(scale, dtype=pts.dtype, device=pts.device).reshape(-1, 1, 1)
        if scale.shape[0] not in (1, pts.shape[0]):
            raise InputError(f"scale must hold 1 or {pts.shape[0]} values, got {scale.shape[0]}")
        pts = (pts / scale.clamp(min=1e-6)).clamp(-self.max_coord, self.max_coord)
        rays = F.normalize(rays, dim=-1, eps=1e-6)
        feats = fourier_features(torch.cat([pts, rays], dim=-1), self.num_freqs)
        dtype = self.mlp[0].weight.dtype
        return self.mlp(feats.to(dtype))
