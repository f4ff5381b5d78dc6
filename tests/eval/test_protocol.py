"""The paper's protocol: conditioning frame, forward + backward passes, assembly and scoring."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from threeam.errors import InputError
from threeam.eval.metrics import score_track
from threeam.eval.protocol import conditioning_frame, load_sequence, score_object, track_objects


def test_conditioning_frame_largest_earliest_on_ties():
    gt = np.zeros((5, 8, 8), bool)
    gt[1, :2, :2] = True      # 4 px
    gt[2, :3, :3] = True      # 9 px
    gt[4, 5:8, 5:8] = True    # 9 px (tie, later)
    assert conditioning_frame(gt) == 2
    with pytest.raises(InputError, match="never visible"):
        conditioning_frame(np.zeros((3, 4, 4), bool))
    with pytest.raises(InputError, match="never visible"):
        conditioning_frame(gt, min_pixels=10)


class FakePredictor:
    """Records the protocol's calls; forward passes predict the prompt mask, backward passes the
    complement, so the assembly can be checked frame by frame."""

    device = torch.device("cpu")

    def __init__(self):
        self.calls = []

    def init_state(self, frames):
        self.calls.append(("init", len(frames)))
        return {"T": len(frames), "hw": frames.shape[1:3], "prompts": {}, "obj_ids": []}

    def reset_state(self, state):
        self.calls.append(("reset",))
        state["prompts"] = {}
        state["obj_ids"] = []

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        self.calls.append(("mask", frame_idx, obj_id))
        state["prompts"][obj_id] = (frame_idx, mask)
        state["obj_ids"].append(obj_id)

    def propagate_in_video(self, state, start_frame_idx=None, reverse=False, progress=None):
        self.calls.append(("propagate", start_frame_idx, reverse))
        order = range(start_frame_idx, -1, -1) if reverse else range(start_frame_idx, state["T"])
        for t in order:
            m = np.stack([state["prompts"][o][1] for o in state["obj_ids"]])[:, None]
            m = ~m if reverse else m
            yield t, list(state["obj_ids"]), torch.from_numpy(np.where(m, 1.0, -1.0))


def _masks(h=6, w=7):
    a = np.zeros((h, w), bool)
    a[1:3, 1:4] = True
    b = np.zeros((h, w), bool)
    b[3:6, 4:7] = True
    return a, b


def test_track_objects_forward_backward_and_grouping():
    frames = np.zeros((6, 6, 7, 3), np.uint8)
    a, b = _masks()
    c = a | b
    fake = FakePredictor()
    run = track_objects(fake, frames, {1: (2, a), 2: (2, b), 3: (0, c)})
    # one session per conditioning frame; frame-0 objects need no backward pass
    props = [c for c in fake.calls if c[0] == "propagate"]
    assert props == [("propagate", 0, False), ("propagate", 2, False), ("propagate", 2, True)]
    assert fake.calls[0] == ("init", 6) and run.sessions == 2
    assert fake.calls.count(("reset",)) == 4  # before each pass and at the end
    masks = [c for c in fake.calls if c[0] == "mask"]
    assert ("mask", 2, 1) in masks and ("mask", 2, 2) in masks and ("mask", 0, 3) in masks
    # assembly: forward frames (cond frame included) from the forward pass, earlier ones backward
    for oid, m in ((1, a), (2, b)):
        p = run.masks[oid]
        assert p.shape == (6, 6, 7)
        for t in range(6):
            np.testing.assert_array_equal(p[t], m if t >= 2 else ~m, err_msg=f"obj {oid} frame {t}")
    assert all((run.masks[3][t] == c).all() for t in range(6))
    assert run.frames == 6 + 6  # each session covers the 6 frames once
    assert run.seconds > 0


def test_track_objects_without_grouping_and_errors():
    frames = np.zeros((4, 6, 7, 3), np.uint8)
    a, b = _masks()
    fake = FakePredictor()
    run = track_objects(fake, frames, {1: (3, a), 2: (3, b)}, group_by_frame=False)
    assert run.sessions == 2
    with pytest.raises(InputError, match="out of range"):
        track_objects(fake, frames, {1: (4, a)})
    with pytest.raises(InputError, match="shape"):
        track_objects(fake, frames, {1: (0, a[:3])})
    with pytest.raises(InputError, match="uint8"):
        track_objects(fake, frames.astype(np.float32), {1: (0, a)})
    with pytest.raises(InputError, match="no objects"):
        track_objects(fake, frames, {})


def test_score_object_skips_unannotated_frames():
    gt = np.zeros((4, 5, 5), bool)
    gt[:, 1:3, 1:3] = True
    pred = gt.copy()
    pred[1] = False  # a miss on frame 1 ...
    s_all = score_object(pred, gt)
    s_skip = score_object(pred, gt, unannotated=[1])  # ... which is not annotated
    assert s_all.n_frames == 4 and s_all.iou == pytest.approx(0.75)
    assert s_skip.n_frames == 3 and s_skip.iou == pytest.approx(1.0)
    assert s_skip.iou == score_track(pred, gt, frames=[0, 2, 3]).iou


def test_load_sequence_marks_frames_without_ids():
    from threeam.data.types import InMemoryScene, PosedFrame

    K = np.eye(3)
    fr = [PosedFrame(np.zeros((4, 5, 3), np.uint8), None, K, None,
                     None if t == 1 else np.full((4, 5), t, np.int32)) for t in range(3)]
    frames, ids, unknown = load_sequence(InMemoryScene("s", fr))
    assert frames.shape == (3, 4, 5, 3) and ids.shape == (3, 4, 5) and unknown == [1]
    assert (ids[1] == 0).all() and (ids[2] == 2).all()


def test_protocol_with_sam2_on_a_generated_scene(golden_dir, fill):
    """Real SAM 2 (small golden config, fill weights): the conditioning frame reproduces the prompt
    and both directions are tracked."""
    from threeam.data.eval_sequences import build_eval_sequences, EvalSequenceConfig
    from threeam.data.synth import generate_scene, get_synth_config
    from threeam.models.sam2.build import build_sam2_from_state_dict
    from threeam.models.sam2.config import SAM2Config, VideoPredictorConfig
    from threeam.predictor.video_predictor import VideoPredictor

    js = json.loads((golden_dir / "sam2" / "case_small_v21.json").read_text())
    cfg = SAM2Config.from_official_dict(js["config"])
    vcfg = VideoPredictorConfig.from_official_dict(js["config"])
    model = build_sam2_from_state_dict(cfg, fill.fill_state_dict(js["shapes"], js["overrides_s1_s3"]), video_config=vcfg)
    predictor = VideoPredictor(model, vcfg, progress=False)
    scene = generate_scene(get_synth_config("tiny", n_frames=8), seed=1)
    frames, ids, unknown = load_sequence(scene)
    seqs = build_eval_sequences(scene, EvalSequenceConfig(min_mask_pixels=50))[:3]
    assert seqs and not unknown
    prompts = {}
    for s in seqs:
        assert s.cond_frame == conditioning_frame(ids == s.object_id)
        prompts[s.object_id] = (s.cond_frame, ids[s.cond_frame] == s.object_id)
    run = track_objects(predictor, frames, prompts)
    assert run.frames == run.sessions * 8
    for s in seqs:
        gt = ids == s.object_id
        p = run.masks[s.object_id]
        inter = (p[s.cond_frame] & gt[s.cond_frame]).sum()
        union = (p[s.cond_frame] | gt[s.cond_frame]).sum()
        assert inter / union > 0.8
        assert score_object(p, gt).n_frames == 8
