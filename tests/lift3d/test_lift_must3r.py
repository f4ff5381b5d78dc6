"""RGB-only mode: MUSt3R's depth and poses, aligned to the scan's trajectory by a similarity."""
from __future__ import annotations

import numpy as np
import pytest

import threeam.lift3d.must3r_geometry as mg
from threeam.data.geometry import look_at
from threeam.errors import InputError
from threeam.lift3d.config import get_lift_config
from threeam.lift3d.pipeline import lift_scene
from threeam.lift3d.proposals import GTProposals
from threeam.lift3d.propagate import GTTracker
from threeam.lift3d.scene import from_synthetic


def _rot(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _apply(s, R, t, c2w):
    out = c2w.copy()
    out[:, :3, :3] = np.einsum("ij,tjk->tik", R, c2w[:, :3, :3])
    out[:, :3, 3] = s * c2w[:, :3, 3] @ R.T + t
    return out


def test_similarity_is_recovered_from_two_trajectories():
    rng = np.random.default_rng(0)
    src = np.stack([look_at(rng.normal(size=3), rng.normal(size=3) + 3.0) for _ in range(6)])
    s, R, t = 2.5, _rot([1, 2, 0.5], 0.7), np.array([0.3, -1.0, 2.0])
    dst = _apply(s, R, t, src)
    s2, R2, t2 = mg.similarity_from_trajectories(src, dst)
    assert s2 == pytest.approx(s) and np.allclose(R2, R) and np.allclose(t2, t)
    # straight-line motion still fixes the rotation (from the orientations)
    line = src.copy()
    line[:, :3, 3] = np.linspace(0, 1, 6)[:, None] * np.array([1.0, 0, 0])
    s3, R3, _ = mg.similarity_from_trajectories(line, _apply(s, R, t, line))
    assert s3 == pytest.approx(s) and np.allclose(R3, R)
    still = src.copy()
    still[:, :3, 3] = 0.0
    with pytest.raises(InputError, match="hardly moves"):
        mg.similarity_from_trajectories(still, _apply(s, R, t, still))


def test_aligned_must3r_geometry_lifts_like_the_sensor(gt_scenes, monkeypatch):
    """MUSt3R replaced by the sensor's geometry in another frame and scale: after the alignment the
    depth and poses are the scan's again, and the lifted instances are the sensor run's."""
    scene = gt_scenes[1]
    frames = [scene.frame(t) for t in range(len(scene))]
    s, R, t = 0.4, _rot([0, 0, 1], 1.1), np.array([1.0, 2.0, -0.5])
    gt_c2w = np.stack([f.cam_to_world for f in frames])
    inv_R = R.T
    fake = mg.Must3rGeometry(depth=np.stack([f.depth * s for f in frames]), K=np.stack([f.K for f in frames]),
                             c2w=_apply(s, inv_R, -s * (t @ inv_R.T), gt_c2w))
    monkeypatch.setattr(mg, "run_must3r", lambda *a, **k: fake)
    aligned, info = mg.must3r_scene(scene, None, None)
    assert info["scale"] == pytest.approx(1 / s)
    f3 = aligned.frame(3)
    np.testing.assert_allclose(f3.depth, frames[3].depth, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f3.cam_to_world, frames[3].cam_to_world, atol=1e-8)
    cfg = get_lift_config("synthetic")
    a = lift_scene(scene, GTProposals(), GTTracker(), cfg)
    b = lift_scene(aligned, GTProposals(), GTTracker(), cfg)
    assert [v.tolist() for v in a.instances] == [v.tolist() for v in b.instances]


def test_tiny_random_must3r_runs_over_a_scene(small_scene):
    scene = from_synthetic(small_scene, max_frames=3)
    model, stream = mg.build_must3r_model(None, random_weights=True)
    geo = mg.run_must3r(scene, model, stream)
    h, w = scene.frame(0).size
    assert geo.depth.shape == (3, h, w) and geo.depth.dtype == np.float32
    assert geo.K.shape == (3, 3, 3) and np.all(np.isfinite(geo.K))
    assert geo.c2w.shape == (3, 4, 4) and np.allclose(geo.c2w[:, 3], [0, 0, 0, 1])
    assert np.all(geo.depth >= 0)
    with pytest.raises(InputError, match="MUSt3R weights"):
        mg.build_must3r_model(None, random_weights=False)
