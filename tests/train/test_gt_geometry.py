"""The geometry oracle (`threeam.train.gt_geometry`): MUSt3R's features, the GT pointmap and rays.

Training (``model.geometry_input=gt_points``) and evaluation (`use_gt_points` on a 3AM predictor) must
hand the merger exactly the GT of the frame, in the camera of the reference frame (clip frame 0 in
training, the prompted frame in evaluation), and keep MUSt3R's token features unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from threeam.data.synth import generate_scene, get_synth_config
from threeam.errors import InputError
from threeam.models.must3r.session import Must3rStreamingSession
from threeam.train.config import apply_overrides
from threeam.train.gt_geometry import GroundTruthPoints, network_res, use_gt_points, with_gt_points
from threeam.train.must3r_task import gt_pointmaps
from threeam.train.recipes import get_train_config
from threeam.train.three_am_task import build_model

SMALL = ["data.scene_frames=4", "data.scene_height=48", "data.scene_width=64"]


@pytest.fixture(scope="module")
def scene():
    return generate_scene(get_synth_config("tiny", n_frames=4, height=48, width=64), seed=5)


@pytest.fixture(scope="module")
def model():
    return build_model(apply_overrides(get_train_config("tiny-synthetic"), SMALL + ["model.geometry_input=gt_points"]))


def _arrays(scene, frames):
    f = [scene.frame(t) for t in frames]
    return (np.stack([x.rgb for x in f]), np.stack([x.depth for x in f]), np.stack([x.K for x in f]),
            np.stack([x.cam_to_world for x in f]))


def test_gt_points_equal_the_must3r_training_targets_in_the_reference_camera(scene, model):
    rgb, depth, K, c2w = _arrays(scene, [2, 0, 3])
    res = network_res(model)
    gt = gt_pointmaps(rgb, depth, K, c2w, res)
    with torch.no_grad():
        out = Must3rStreamingSession(model.must3r, model.stream_config).add_frame(rgb[1])
    got = with_gt_points(out, rgb[1], depth[1], K[1], c2w[1], c2w[0], res)
    valid = gt.valid[1]
    assert torch.allclose(got.pts_ref[0][valid], gt.pts_ref[1][valid], atol=1e-5)
    assert torch.allclose(got.pts_self[0][valid], gt.pts_self[1][valid], atol=1e-5)
    assert torch.all(got.pts_ref[0][~valid] == 0)
    assert torch.allclose(got.rays[0][valid].norm(dim=-1), torch.ones(int(valid.sum())), atol=1e-5)
    assert all(a is b for a, b in zip(got.features, out.features))  # MUSt3R's features untouched
    assert not torch.allclose(got.pts_ref, out.pts_ref)
    ref = with_gt_points(out, rgb[0], depth[0], K[0], c2w[0], c2w[0], res)  # the reference frame itself
    assert torch.allclose(ref.pts_ref, ref.pts_self, atol=1e-5)
    with pytest.raises(InputError, match="depth and camera poses"):
        with_gt_points(out, rgb[1], None, K[1], c2w[1], c2w[0], res)


def test_training_step_feeds_the_merger_the_clip_gt(scene, model, monkeypatch):
    from threeam.train import three_am_task as task

    cfg = apply_overrides(get_train_config("tiny-synthetic"), SMALL + ["model.geometry_input=gt_points"])
    rgb, depth, K, c2w = _arrays(scene, [1, 2, 3])
    oid = scene.object_ids()[0]
    masks = np.stack([scene.frame(t).instance_ids == oid for t in (1, 2, 3)])
    seen = []
    real = task.clip_forward

    def spy(net, rgb_, masks_, kind, seed, geometry, *rest):
        seen.append(geometry)
        return real(net, rgb_, masks_, kind, seed, geometry, *rest)

    monkeypatch.setattr(task, "clip_forward", spy)
    step = task.make_step_fn(cfg)
    out = step(model, {"rgb": rgb, "masks": masks, "prompt_kind": "mask", "prompt_seed": 0,
                       "depth": depth, "K": K, "cam_to_world": c2w})
    assert torch.isfinite(out["loss"])
    gt = gt_pointmaps(rgb, depth, K, c2w, network_res(model))
    for t in range(3):
        v = gt.valid[t]
        assert torch.allclose(seen[0][t].pts_ref[0][v], gt.pts_ref[t][v], atol=1e-5)
    with pytest.raises(InputError, match="depth and camera poses"):
        step(model, {"rgb": rgb, "masks": masks, "prompt_kind": "mask", "prompt_seed": 0})


def test_predictor_with_gt_points_uses_the_prompted_frame_as_reference(scene, model, monkeypatch):
    from threeam.predictor.build import video_predictor_config
    from threeam.predictor.three_am_predictor import ThreeAMVideoPredictor

    model.eval()
    predictor = ThreeAMVideoPredictor(model, video_predictor_config(), progress=False)
    set_scene = use_gt_points(predictor)
    frames = np.stack([scene.frame(t).rgb for t in range(len(scene))])
    with pytest.raises(InputError, match="set_scene"):
        predictor.init_state(frames)
    set_scene(scene)
    merged = []
    real_merge = model.merge_backbone_output
    monkeypatch.setattr(model, "merge_backbone_output",
                        lambda out, m, hw: merged.append(m) or real_merge(out, m, hw))
    state = predictor.init_state(frames)
    assert isinstance(state.three_am.stream, GroundTruthPoints)
    oid = scene.object_ids()[0]
    t0 = 2
    predictor.add_new_mask(state, t0, oid, scene.frame(t0).instance_ids == oid)
    visited = [t for t, _, _ in predictor.propagate_in_video(state, start_frame_idx=t0, progress=False)]
    rgb, depth, K, c2w = _arrays(scene, [t0] + [t for t in range(len(scene)) if t != t0])
    gt = gt_pointmaps(rgb, depth, K, c2w, network_res(model))  # frame t0 first: the reference camera
    order = [t0] + [t for t in range(len(scene)) if t != t0]
    assert state.three_am.stream.reference == t0 and state.three_am.visit_order == visited
    for m, t in zip(merged, state.three_am.visit_order):
        v = gt.valid[order.index(t)]
        assert torch.allclose(m.pts_ref[0][v], gt.pts_ref[order.index(t)][v], atol=1e-4)
    predictor.reset_session(state)
    assert state.three_am.stream.reference is None


def test_pose_noise_moves_each_frame_rigidly_and_deterministically(scene, model):
    """`PoseNoise`: a non-reference frame's GT pointmap moves rigidly (its ``pts_self`` mapped by the new
    ``c2w`` gives the new ``pts_ref``), by the same error every time, growing with the noise; the reference frame
    and zero noise leave the GT exact; the training config's fields build it and refuse negative values."""
    from threeam.train.gt_geometry import PoseNoise
    from threeam.train.three_am_task import gt_pose_noise

    rgb, depth, K, c2w = _arrays(scene, [0, 2])
    res = network_res(model)
    with torch.no_grad():
        out = Must3rStreamingSession(model.must3r, model.stream_config).add_frame(rgb[1])
    exact = with_gt_points(out, rgb[1], depth[1], K[1], c2w[1], c2w[0], res)
    assert torch.equal(with_gt_points(out, rgb[1], depth[1], K[1], c2w[1], c2w[0], res, PoseNoise()).pts_ref,
                       exact.pts_ref)
    shifts = []
    for trans, rot in ((0.05, 2.0), (0.5, 20.0)):
        noise = PoseNoise(trans, rot)
        a = with_gt_points(out, rgb[1], depth[1], K[1], c2w[1], c2w[0], res, noise)
        b = with_gt_points(out, rgb[1], depth[1], K[1], c2w[1], c2w[0], res, noise)
        assert torch.equal(a.pts_ref, b.pts_ref) and torch.equal(a.c2w, b.c2w)  # deterministic per frame
        assert torch.equal(a.pts_self, exact.pts_self) and torch.equal(a.rays, exact.rays)
        valid = exact.pts_self[0].norm(dim=-1) > 0
        R, t = a.c2w[0, :3, :3].double(), a.c2w[0, :3, 3].double()
        mapped = exact.pts_self[0].double() @ R.T + t
        assert torch.allclose(mapped[valid], a.pts_ref[0].double()[valid], atol=1e-4)  # rigid
        shifts.append(float((a.pts_ref[0] - exact.pts_ref[0])[valid].norm(dim=-1).mean()))
        ref = with_gt_points(out, rgb[0], depth[0], K[0], c2w[0], c2w[0], res, noise)
        assert torch.allclose(ref.pts_ref, ref.pts_self, atol=1e-5)  # the reference stays exact
    assert 0 < shifts[0] < shifts[1]
    cfg = apply_overrides(get_train_config("tiny-synthetic"), ["model.gt_points_trans_noise=0.2"])
    assert gt_pose_noise(cfg) == PoseNoise(0.2, 0.0)
    assert gt_pose_noise(get_train_config("tiny-synthetic")) is None
    with pytest.raises(InputError, match="gt_points_trans_noise"):
        apply_overrides(get_train_config("tiny-synthetic"), ["model.gt_points_rot_noise=-1"])
    with pytest.raises(InputError, match="pose noise"):
        PoseNoise(-0.1)


def test_training_step_applies_the_configured_pose_noise(scene, model, monkeypatch):
    from threeam.train import three_am_task as task

    cfg = apply_overrides(get_train_config("tiny-synthetic"),
                          SMALL + ["model.geometry_input=gt_points", "model.gt_points_trans_noise=0.3"])
    rgb, depth, K, c2w = _arrays(scene, [1, 2, 3])
    oid = scene.object_ids()[0]
    masks = np.stack([scene.frame(t).instance_ids == oid for t in (1, 2, 3)])
    seen = []
    real = task.clip_forward
    monkeypatch.setattr(task, "clip_forward", lambda net, r, m, k, s, geometry, *rest:
                        seen.append(geometry) or real(net, r, m, k, s, geometry, *rest))
    task.make_step_fn(cfg)(model, {"rgb": rgb, "masks": masks, "prompt_kind": "mask", "prompt_seed": 0,
                                   "depth": depth, "K": K, "cam_to_world": c2w})
    gt = gt_pointmaps(rgb, depth, K, c2w, network_res(model))
    v = [gt.valid[t] for t in range(3)]
    assert torch.allclose(seen[0][0].pts_ref[0][v[0]], gt.pts_ref[0][v[0]], atol=1e-5)  # the reference
    for t in (1, 2):
        assert not torch.allclose(seen[0][t].pts_ref[0][v[t]], gt.pts_ref[t][v[t]], atol=1e-3)
