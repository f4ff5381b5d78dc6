"""Post-processing of MUSt3R head outputs: activations, confidence, rays, depth, focal and pose.

Conventions (as in the official code):

* channels ``[0:3]`` are the pointmap in the reference camera frame (``pts_ref``), ``[3:6]`` the
  pointmap in the view's own camera frame (``pts_self``), ``[6]`` the confidence logit;
* pointmaps are activated by ``x / |x| * expm1(|x|)`` (``norm_exp``; |x| clipped at 1e-8), the
  confidence by ``1 + exp(logit)`` (always > 1);
* pixel ``(u, v)`` of the network image has integer coordinates ``0 .. W-1`` / ``0 .. H-1`` and the
  principal point is ``(W/2, H/2)`` (the official half-pixel convention);
* the camera pose is camera-to-reference (``c2w``): ``pts_ref ~= R @ pts_self + t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from threeam.errors import InputError

__all__ = [
    "activate_pointmaps",
    "confidence_from_logits",
    "Must3rPointmaps",
    "postprocess",
    "rays_from_pointmap",
    "depth_from_pointmap",
    "pixel_grid",
    "estimate_focal",
    "weighted_procrustes",
    "estimate_pose",
    "intrinsics_from_focal",
]


def activate_pointmaps(x: Tensor, activation: str = "norm_exp") -> Tensor:
    """x (..., 3) raw -> points (..., 3): ``x/|x| * expm1(|x|)`` for ``norm_exp``; identity for ``linear``."""
    if activation == "linear":
        return x
    if activation != "norm_exp":
        raise InputError(f"unknown pointmap activation {activation!r}; expected 'norm_exp' or 'linear'")
    d = x.norm(dim=-1, keepdim=True)
    return x / d.clamp_min(1e-8) * torch.expm1(d)


def confidence_from_logits(logits: Tensor) -> Tensor:
    """logits (...) -> confidence ``1 + exp(logits)`` (...)."""
    return 1.0 + logits.exp()


@dataclass
class Must3rPointmaps:
    """Activated head outputs for frames of H x W pixels (any leading batch dims ``...``).

    Attributes:
        pts_ref: (..., H, W, 3) points in the reference camera frame.
        pts_self: (..., H, W, 3) points in the view's own camera frame.
        conf: (..., H, W) confidence (> 1).
    """

    pts_ref: Tensor
    pts_self: Tensor
    conf: Tensor

    @property
    def depth(self) -> Tensor:
        return depth_from_pointmap(self.pts_self)

    @property
    def rays(self) -> Tensor:
        return rays_from_pointmap(self.pts_self)


def postprocess(raw: Tensor, activation: str = "norm_exp") -> Must3rPointmaps:
    """raw (..., H, W, 7) head output -> :class:`Must3rPointmaps` (float32)."""
    if raw.shape[-1] != 7:
        raise InputError(f"expected 7 channels in the raw MUSt3R output, got {raw.shape[-1]}")
    raw = raw.float()
    return Must3rPointmaps(
        pts_ref=activate_pointmaps(raw[..., 0:3], activation),
        pts_self=activate_pointmaps(raw[..., 3:6], activation),
        conf=confidence_from_logits(raw[..., 6]),
    )


def rays_from_pointmap(pts_self: Tensor) -> Tensor:
    """pts_self (..., 3) own-frame points -> unit viewing directions (..., 3) from the camera centre."""
    return pts_self / pts_self.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def depth_from_pointmap(pts_self: Tensor) -> Tensor:
    """pts_self (..., 3) -> depth (...) = z in the view's own frame."""
    return pts_self[..., 2]


def pixel_grid(h: int, w: int, device=None, dtype=torch.float32) -> Tensor:
    """(h, w, 2) pixel coordinates (u, v) = (col, row), integers 0..w-1 / 0..h-1."""
    v, u = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                          indexing="ij")
    return torch.stack([u, v], dim=-1)


def estimate_focal(pts_self: Tensor, pp: Optional[Tensor] = None, weights: Optional[Tensor] = None,
                   iterations: int = 10) -> Tensor:
    """Focal length (in pixels) of pinhole cameras that best explain own-frame pointmaps.

    Minimises ``sum |pixel - pp - f * (x/z, y/z)|`` by reweighted least squares (Weiszfeld):
    a closed-form least-squares start, then ``iterations`` steps with weights ``1/residual``.

    Args:
        pts_self: (B, H, W, 3) points in each view's own frame.
        pp: (B, 2) or (2,) principal point; default ``(W/2, H/2)``.
        weights: optional (B, H, W) non-negative per-pixel weights (e.g. ``conf - 1``).
    Returns:
        (B,) focal lengths.
    """
    if pts_self.ndim != 4 or pts_self.shape[-1] != 3:
        raise InputError(f"pts_self must be (B, H, W, 3), got {tuple(pts_self.shape)}")
    B, H, W, _ = pts_self.shape
    pts = pts_self.float()
    if pp is None:
        pp = torch.tensor([W / 2, H / 2], device=pts.device)
    pix = pixel_grid(H, W, pts.device).reshape(1, -1, 2) - pp.reshape(-1, 1, 2).float()
    flat = pts.reshape(B, -1, 3)
    xy = (flat[..., :2] / flat[..., 2:3]).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
    w0 = torch.ones(B, H * W, device=pts.device) if weights is None else weights.reshape(B, -1).float().clamp_min(0)
    dot_xp = (xy * pix).sum(-1)
    dot_xx = xy.square().sum(-1)
    focal = (w0 * dot_xp).sum(1) / (w0 * dot_xx).sum(1).clamp_min(1e-12)
    for _ in range(iterations):
        res = (pix - focal.view(-1, 1, 1) * xy).norm(dim=-1)
        w = w0 / res.clamp_min(1e-8)
        focal = (w * dot_xp).sum(1) / (w * dot_xx).sum(1).clamp_min(1e-12)
    return focal


def weighted_procrustes(src: Tensor, dst: Tensor, weights: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Rigid transform (no scale) with ``dst ~= R @ src + t`` by weighted Kabsch.

    Args:
        src, dst: (B, N, 3) corresponding points.
        weights: (B, N) non-negative weights (default uniform).
    Returns:
        R (B, 3, 3) rotation (det +1) and t (B, 3).
    """
    if src.shape != dst.shape or src.ndim != 3 or src.shape[-1] != 3:
        raise InputError(f"src and dst must both be (B, N, 3), got {tuple(src.shape)} and {tuple(dst.shape)}")
    src, dst = src.double(), dst.double()
    w = torch.ones(src.shape[:2], dtype=torch.float64, device=src.device) if weights is None else weights.double().clamp_min(0)
    wsum = w.sum(1, keepdim=True).clamp_min(1e-12)
    mu_s = (w[..., None] * src).sum(1) / wsum
    mu_d = (w[..., None] * dst).sum(1) / wsum
    cov = torch.einsum("bn,bni,bnj->bij", w, dst - mu_d[:, None], src - mu_s[:, None])
    U, _, Vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(U @ Vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    S = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1))
    R = U @ S @ Vh
    t = mu_d - (R @ mu_s[..., None])[..., 0]
    return R.float(), t.float()


def estimate_pose(pts_self: Tensor, pts_ref: Tensor, conf: Optional[Tensor] = None) -> Tensor:
    """Camera-to-reference pose (B, 4, 4) from own-frame to reference-frame points.

    Args:
        pts_self, pts_ref: (B, H, W, 3).
        conf: (B, H, W) confidence; the Procrustes weights are ``conf - 1`` (uniform if None).
    """
    B = pts_self.shape[0]
    w = None if conf is None else (conf.reshape(B, -1) - 1.0)
    R, t = weighted_procrustes(pts_self.reshape(B, -1, 3), pts_ref.reshape(B, -1, 3), w)
    c2w = torch.eye(4, device=pts_self.device).repeat(B, 1, 1)
    c2w[:, :3, :3] = R
    c2w[:, :3, 3] = t
    return c2w


def intrinsics_from_focal(focal: Tensor, h: int, w: int) -> Tensor:
    """focal (B,) -> K (B, 3, 3) with the principal point at (w/2, h/2)."""
    K = torch.zeros(focal.shape[0], 3, 3, device=focal.device)
    K[:, 0, 0] = focal
    K[:, 1, 1] = focal
    K[:, 0, 2] = w / 2
    K[:, 1, 2] = h / 2
    K[:, 2, 2] = 1
    return K
