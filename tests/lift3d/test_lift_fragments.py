"""Fragments from tracked masks: multi-view hit ratio, the erosion band and its growth rule."""
from __future__ import annotations

import numpy as np

from threeam.lift3d.backproject import frame_visibility
from threeam.lift3d.config import get_lift_config
from threeam.lift3d.fragments import WindowLifter
from threeam.lift3d.proposals import Proposal
from threeam.lift3d.propagate import TrackStep

H, W = 40, 40
K = np.array([[40.0, 0, 19.5], [0, 40.0, 19.5], [0, 0, 1]])


def _plane():
    """A 40 x 40 grid of vertices on the plane z = 2, one per pixel centre (identity camera)."""
    v, u = np.meshgrid(np.arange(H, dtype=float), np.arange(W, dtype=float), indexing="ij")
    z = 2.0
    pts = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, np.full_like(u, z)], -1)
    return pts.reshape(-1, 3)


def _lift(masks, cfg, verts):
    """One proposal tracked with the given per-frame masks (same camera on every frame)."""
    depth = np.full((H, W), 2.0, dtype=np.float32)
    vis = frame_visibility(verts, depth, K, np.eye(4), cfg.depth_tol_abs, cfg.depth_tol_rel)
    lifter = WindowLifter(0, [Proposal(masks[0])], 0, cfg, vertices=verts)
    for t, m in enumerate(masks):
        lifter.add(TrackStep(t, m[None], np.ones(1)), vis)
    frags = lifter.finish()
    return set(frags[0].vertices.tolist()) if frags else set(), frags


def _square(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_vertices_need_the_mask_in_enough_of_their_frames():
    verts = _plane()
    cfg = get_lift_config("paper", erode_px=0, min_fragment_vertices=1)
    a, b = _square(10, 20, 10, 20), _square(10, 20, 15, 25)
    got, frags = _lift([a, a, b], cfg, verts)  # columns 10-14: 2 of 3 frames, 20-24: 1 of 3
    cols = {i % W for i in got}
    assert cols == set(range(10, 20))
    assert 0.6 < frags[0].consistency < 1.0


def test_erosion_cuts_the_rim_and_the_band_rule_grows_it_back():
    verts = _plane()
    mask = _square(10, 30, 10, 30)
    full = {r * W + c for r in range(10, 30) for c in range(10, 30)}
    pure, _ = _lift([mask] * 3, get_lift_config("paper", erode_px=2, band_radius=0.0, min_fragment_vertices=1), verts)
    assert pure == {r * W + c for r in range(12, 28) for c in range(12, 28)}  # the eroded core only
    grown, _ = _lift([mask] * 3, get_lift_config("paper", erode_px=2, band_radius=0.08, min_fragment_vertices=1), verts)
    assert grown == full  # vertex spacing 5 cm: the rim is connected to the core
    # a separate blob in the mask that is too thin to survive the erosion is not connected: it stays out
    blob = mask.copy()
    blob[2:5, 34:37] = True
    got, _ = _lift([blob] * 3, get_lift_config("paper", erode_px=2, band_radius=0.08, min_fragment_vertices=1), verts)
    assert got == full
