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
