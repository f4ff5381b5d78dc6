"""MUSt3R post-processing on synthetic geometry with a known answer."""
from __future__ import annotations

import math

import pytest
import torch

from threeam.errors import InputError
from threeam.models.must3r.postprocess import (
    activate_pointmaps,
    confidence_from_logits,
    estimate_focal,
    estimate_pose,
    intrinsics_from_focal,
    pixel_grid,
    postprocess,
    rays_from_pointmap,
    weighted_procrustes,
)


def _rotation(axis, angle):
    axis = torch.tensor(axis, dtype=torch.float64)
    axis = axis / axis.norm()
    K = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=torch.float64)
    return (torch.eye(3, dtype=torch.float64) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K).float()


def _scene(h=24, w=32, focal=40.0, seed=0):
    """Own-frame pointmap of a pinhole camera (pp = (w/2, h/2)) looking at a bumpy surface."""
    g = torch.Generator().manual_seed(seed)
    depth = 2.0 + torch.rand(h, w, generator=g)
    uv = pixel_grid(h, w)
    x = (uv[..., 0] - w / 2) / focal * depth
    y = (uv[..., 1] - h / 2) / focal * depth
    return torch.stack([x, y, depth], dim=-1), depth


def _inverse_activation(p):
    n = p.norm(dim=-1, keepdim=True)
    return p / n * torch.log1p(n)


def test_activation_and_confidence():
    raw = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    out = activate_pointmaps(raw)
    torch.testing.assert_close(out[0], torch.tensor([3.0, 4.0, 0.0]) / 5 * math.expm1(5.0))
    assert torch.equal(out[1], torch.zeros(3))  # |x| clipped: no NaN at zero
    assert torch.equal(activate_pointmaps(raw, "linear"), raw)
    torch.testing.assert_close(confidence_from_logits(torch.tensor([0.0, math.log(2.0)])), torch.tensor([2.0, 3.0]))
    with pytest.raises(InputError):
        activate_pointmaps(raw, "exp")


def test_postprocess_recovers_known_geometry():
    pts_self, depth = _scene()
    R = _rotation([0.2, 1.0, -0.3], 0.4)
    t = torch.tensor([0.5, -0.2, 1.0])
    pts_ref = pts_self @ R.T + t
    conf_logit = torch.full(depth.shape, 0.5)
    raw = torch.cat([_inverse_activation(pts_ref), _inverse_activation(pts_self), conf_logit[..., None]], -1)[None]
    out = postprocess(raw)
    torch.testing.assert_close(out.pts_self[0], pts_self, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.depth[0], depth, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.conf[0], 1 + torch.exp(conf_logit))
    # rays are unit viewing directions through each pixel
    rays = out.rays[0]
    torch.testing.assert_close(rays.norm(dim=-1), torch.ones(depth.shape))
    uv = pixel_grid(24, 32)
    expected = torch.stack([(uv[..., 0] - 16) / 40.0, (uv[..., 1] - 12) / 40.0, torch.ones(24, 32)], -1)
    torch.testing.assert_close(rays, expected / expected.norm(dim=-1, keepdim=True), rtol=1e-4, atol=1e-5)
    # focal and pose
    focal = estimate_focal(out.pts_self)
    assert focal.shape == (1,) and abs(focal.item() - 40.0) < 1e-2
    c2w = estimate_pose(out.pts_self, out.pts_ref, out.conf)
    torch.testing.assert_close(c2w[0, :3, :3], R, atol=1e-4, rtol=0)
    torch.testing.assert_close(c2w[0, :3, 3], t, atol=1e-4, rtol=0)
    K = intrinsics_from_focal(focal, 24, 32)
    proj = (K[0] @ pts_self.reshape(-1, 3).T).T
    torch.testing.assert_close(proj[:, :2] / proj[:, 2:], uv.reshape(-1, 2), atol=2e-2, rtol=0)


def test_weighted_procrustes_ignores_zero_weight_outliers():
    torch.manual_seed(0)
    src = torch.randn(2, 100, 3)
    R = torch.stack([_rotation([1, 0, 0], 2.5), _rotation([0, 1, 1], -1.0)])
    t = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 0.5]])
    dst = src @ R.transpose(1, 2) + t[:, None]
    dst[:, :10] += 5 * torch.randn(2, 10, 3)  # outliers
    w = torch.ones(2, 100)
    w[:, :10] = 0
    R_est, t_est = weighted_procrustes(src, dst, w)
    torch.testing.assert_close(R_est, R, atol=1e-5, rtol=0)
    torch.testing.assert_close(t_est, t, atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(R_est), torch.ones(2))
    R_bad, _ = weighted_procrustes(src, dst)
    assert (R_bad - R).abs().max() > 1e-3  # the outliers do matter without weights
    # a reflection is never returned
    mirrored = src * torch.tensor([1.0, 1.0, -1.0])
    R_m, _ = weighted_procrustes(src, mirrored)
    assert torch.allclose(torch.linalg.det(R_m), torch.ones(2), atol=1e-5)


def test_focal_is_robust_to_outliers_and_batched():
    a, _ = _scene(focal=30.0, seed=1)
    b, _ = _scene(focal=55.0, seed=2)
    b = b.clone()
    b[:2, :] = b[:2, :] * torch.tensor([3.0, -2.0, 1.0])  # two corrupted rows
    f = estimate_focal(torch.stack([a, b]))
    assert abs(f[0].item() - 30.0) < 1e-2
    assert abs(f[1].item() - 55.0) < 0.05  # Weiszfeld down-weights the outlier rows ...
    assert abs(estimate_focal(b[None], iterations=0).item() - 55.0) > 5  # ... which spoil least squares
    with pytest.raises(InputError):
        estimate_focal(a)
