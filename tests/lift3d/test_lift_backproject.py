"""Back-projection, depth agreement, vertex lifting and erosion on hand-built geometry."""
from __future__ import annotations

import numpy as np
import pytest

from threeam.data.geometry import look_at
from threeam.lift3d.backproject import (backproject_mask, depth_agrees, erode_masks, frame_visibility, lift_masks,
                                        project_to_frame, view_coverage)

K = np.array([[50.0, 0, 19.5], [0, 50.0, 14.5], [0, 0, 1]])
H, W = 30, 40


def _plane_depth(z: float = 2.0) -> np.ndarray:
    return np.full((H, W), z, dtype=np.float32)


def test_backproject_plane_identity_pose():
    mask = np.zeros((H, W), bool)
    mask[10, 5] = mask[20, 30] = True
    pts = backproject_mask(_plane_depth(2.0), K, np.eye(4), mask)
    # row-major order: (10, 5) first; x = (u - cx) / f * z, y = (v - cy) / f * z
    np.testing.assert_allclose(pts[0], [(5 - 19.5) / 50 * 2, (10 - 14.5) / 50 * 2, 2.0])
    np.testing.assert_allclose(pts[1], [(30 - 19.5) / 50 * 2, (20 - 14.5) / 50 * 2, 2.0])


def test_backproject_then_project_round_trip_with_a_pose():
    rng = np.random.default_rng(0)
    c2w = look_at(np.array([1.0, -2.0, 1.5]), np.array([0.0, 0.5, 0.8]))
    depth = rng.uniform(1.0, 4.0, (H, W)).astype(np.float32)
    depth[0, 0] = 0.0  # invalid: not lifted
    pts = backproject_mask(depth, K, c2w)
    assert len(pts) == H * W - 1
    inside, pix, z = project_to_frame(pts, K, c2w, (H, W))
    assert inside.all()
    np.testing.assert_array_equal(pix, np.arange(1, H * W))
    np.testing.assert_allclose(z, depth.reshape(-1)[1:], rtol=1e-5)


def test_depth_agreement_uses_the_smaller_of_absolute_and_relative_tolerance():
    d = np.array([0.2, 0.2, 4.0, 4.0, 0.0])
    z = np.array([0.225, 0.235, 4.04, 4.06, 0.0])
    # tol = min(0.05, 0.15 d): 0.03 at 0.2 m, 0.05 at 4 m; d = 0 never agrees
    np.testing.assert_array_equal(depth_agrees(z, d, 0.05, 0.15), [True, False, True, False, False])


def test_visibility_keeps_only_vertices_on_the_seen_surface():
    depth = _plane_depth(2.0)
    verts = np.array([
        [0.0, 0.0, 2.0],     # on the plane: visible
        [0.0, 0.0, 2.5],     # behind the surface at its pixel: occluded
        [0.0, 0.0, 1.5],     # in front of the measured surface: disagrees
        [0.0, 0.0, -2.0],    # behind the camera
        [10.0, 0.0, 2.0],    # outside the image
        [0.2, 0.1, 2.03],    # on the plane within 5 cm
    ])
    vis = frame_visibility(verts, depth, K, np.eye(4), tol_abs=0.05, tol_rel=0.15)
    np.testing.assert_array_equal(vis.vertices, [0, 5])
    u, v = np.rint(K[0, 0] * 0.2 / 2.03 + K[0, 2]), np.rint(K[1, 1] * 0.1 / 2.03 + K[1, 2])
    assert vis.pixels[1] == v * W + u
    np.testing.assert_array_equal(vis.mask(), [True, False, False, False, False, True])


def test_lift_masks_selects_visible_vertices_inside_each_mask():
    depth = _plane_depth(2.0)
    xs = np.linspace(-0.7, 0.7, 15)
    verts = np.stack([xs, np.zeros_like(xs), np.full_like(xs, 2.0)], -1)
    vis = frame_visibility(verts, depth, K, np.eye(4), 0.05, 0.15)
    assert len(vis.vertices) == 15
    left = np.zeros((H, W), bool)
    left[:, :20] = True
    both = np.stack([left, ~left])
    out = lift_masks(vis, both)
    u = np.rint(K[0, 0] * xs / 2.0 + K[0, 2])
    np.testing.assert_array_equal(out[0], np.nonzero(u < 20)[0])
    np.testing.assert_array_equal(out[1], np.nonzero(u >= 20)[0])
    with pytest.raises(ValueError):
        lift_masks(vis, both[:, :10])


def test_erosion_shrinks_masks_but_not_at_the_image_border():
    m = np.zeros((12, 12), bool)
    m[3:8, 3:8] = True
    e = erode_masks(m, 1)
    assert e.sum() == 9 and e[4:7, 4:7].all()
    corner = np.zeros((12, 12), bool)
    corner[:4, :4] = True
    ec = erode_masks(corner, 1)
    assert ec[:3, :3].all() and ec.sum() == 9  # the border does not erode it
    stack = erode_masks(np.stack([m, corner]), 1)
    np.testing.assert_array_equal(stack[0], e)
    np.testing.assert_array_equal(erode_masks(m, 0), m)


def test_view_coverage_same_view_full_opposite_view_empty():
    depth = _plane_depth(3.0)
    c2w = np.eye(4)
    assert view_coverage(depth, K, c2w, depth, K, c2w, 200, 0.05, 0.15) == pytest.approx(1.0)
    turned = look_at(np.zeros(3), np.array([0.0, 0.0, -1.0]), up=np.array([0.0, 1.0, 0.0]))
    assert view_coverage(depth, K, c2w, depth, K, turned, 200, 0.05, 0.15) == 0.0
    shifted = c2w.copy()
    shifted[0, 3] = 0.6  # the frustum is W / f * 3 m = 2.4 m wide there: a quarter leaves the view
    cov = view_coverage(depth, K, c2w, depth, K, shifted, 2000, 0.05, 0.15)
    assert 0.7 < cov < 0.8


@pytest.mark.parametrize("px", [1, 2, 3])
def test_erosion_equals_a_square_binary_erosion(px):
    from scipy import ndimage

    m = np.random.default_rng(px).random((4, 30, 40)) > 0.25
    ref = ndimage.binary_erosion(m, structure=np.ones((1, 2 * px + 1, 2 * px + 1), bool), border_value=1)
    np.testing.assert_array_equal(erode_masks(m, px), ref)
