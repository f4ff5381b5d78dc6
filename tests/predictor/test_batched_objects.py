"""Batched objects (issue 11, part 3): objects whose memory selections are equal go through memory
attention, the mask decoder and the memory encoder as one batch; the results equal the per-object
path within float32 rounding.

The model is the golden small SAM 2.1 case (reference config + `fill.py` weights, 256 input);
four objects on the first 6 frames: three prompted on frame 0 (one signature) and one on frame 4
(another signature), a forward pass, then a reverse pass from the last frame. Slow (minutes on a
shared CPU); in the default run the golden parity case s1 (two objects prompted on frame 0, hence
one batch) checks the batched path against the reference.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from threeam.models.sam2.build import build_sam2_from_state_dict
from threeam.models.sam2.config import SAM2Config, VideoPredictorConfig
from threeam.predictor.state import COND, NON_COND
from threeam.predictor.video_predictor import VideoPredictor, split_step_output

pytestmark = pytest.mark.slow

VIDEO_HW = (240, 320)
FRAMES = 6
LOGIT_ATOL = 1e-4


@pytest.fixture(scope="module")
def make(golden_dir, fill):
    js = json.loads((golden_dir / "sam2" / "case_small_v21.json").read_text())
    npz = np.load(golden_dir / "sam2" / "case_small_v21.npz")
    cfg = SAM2Config.from_official_dict(js["config"])
    vcfg = VideoPredictorConfig.from_official_dict(js["config"])
    state_dict = fill.fill_state_dict(js["shapes"], js["overrides_s1_s3"])
    frames = npz["frames"][:FRAMES]

    def build(**options) -> VideoPredictor:
        model = build_sam2_from_state_dict(cfg, state_dict, video_config=vcfg)
        return VideoPredictor(model, vcfg, progress=False, **options)

    return build, frames


def _mask(rows, cols) -> np.ndarray:
    m = np.zeros(VIDEO_HW, dtype=bool)
    m[rows[0]:rows[1], cols[0]:cols[1]] = True
    return m


def _session(predictor: VideoPredictor, frames: np.ndarray):
    """Prompt four objects, propagate forward then in reverse from the last frame; record batch sizes."""
    sizes: list[int] = []
    track_frame = predictor.model.track_frame

    def counting(features, *args, **kwargs):
        sizes.append(features.batch_size)
        return track_frame(features, *args, **kwargs)

    predictor.model.track_frame = counting
    try:
        state = predictor.init_state(frames, video_size=VIDEO_HW)
        predictor.add_new_points_or_box(state, 0, 1, box=[60, 40, 200, 170])
        predictor.add_new_mask(state, 0, 7, _mask((120, 200), (180, 290)))
        predictor.add_new_points_or_box(state, 0, 4, points=[[250, 60]], labels=[1])
        predictor.add_new_points_or_box(state, 4, 3, points=[[160, 120]], labels=[1])
        fwd = {t: m.clone() for t, _, m in predictor.propagate_in_video(state)}
        rev = {t: m.clone() for t, _, m in predictor.propagate_in_video(state, start_frame_idx=FRAMES - 1,
                                                                        reverse=True)}
    finally:
        del predictor.model.track_frame
    return state, fwd, rev, sizes


@pytest.fixture(scope="module")
def runs(make):
    build, frames = make
    return _session(build(batch_objects=False), frames), _session(build(batch_objects=True), frames)


def test_batching_happens_only_when_enabled(runs):
    (_, _, _, per_object), (_, _, _, batched) = runs
    assert max(per_object) == 1
    assert max(batched) == 3  # the three objects prompted on frame 0 share their memory selection
    assert len(batched) < len(per_object)


@pytest.mark.parametrize("which", ["forward", "reverse"])
def test_batched_masks_equal_per_object(runs, which):
    (_, f1, r1, _), (_, f2, r2, _) = runs
    a, b = (f1, f2) if which == "forward" else (r1, r2)
    assert sorted(a) == sorted(b) and len(a) > 0
    for t in a:
        diff = (a[t] - b[t]).abs().max().item()
        assert diff <= LOGIT_ATOL * max(1.0, a[t].abs().max().item()), f"frame {t}: video logits differ by {diff:.3e}"
        agree = ((a[t] > 0) == (b[t] > 0)).float().mean().item()
        assert agree >= 0.9999, f"frame {t}: binary masks agree on {agree:.5%}"


def test_batched_memory_banks_equal_per_object(runs):
    (s1, _, _, _), (s2, _, _, _) = runs
    assert s1.obj_ids == s2.obj_ids
    for obj_idx in s1.output_dict_per_obj:
        for kind in (COND, NON_COND):
            b1, b2 = s1.output_dict_per_obj[obj_idx][kind], s2.output_dict_per_obj[obj_idx][kind]
            assert sorted(b1) == sorted(b2)
            for t in b1:
                for key in ("pred_masks", "obj_ptr", "object_score_logits"):
                    x, y = b1[t][key].float(), b2[t][key].float()
                    assert x.shape == y.shape
                    assert (x - y).abs().max().item() <= LOGIT_ATOL * max(1.0, x.abs().max().item()), (obj_idx, t, key)
                m1, m2 = b1[t]["maskmem_features"], b2[t]["maskmem_features"]
                assert m1.dtype == m2.dtype == torch.bfloat16 and m1.shape == m2.shape == (1, *m1.shape[1:])
                rel = ((m1.float() - m2.float()).norm() / m1.float().norm().clamp_min(1e-12)).item()
                assert rel <= 1e-2, (obj_idx, t, rel)  # bfloat16 storage: one rounding step apart at most


def test_objects_with_different_cond_frames_are_separate_batches(make):
    build, frames = make
    predictor = build()
    state = predictor.init_state(frames, video_size=VIDEO_HW)
    predictor.add_new_points_or_box(state, 0, 1, box=[60, 40, 200, 170])
    predictor.add_new_points_or_box(state, 0, 4, points=[[250, 60]], labels=[1])
    predictor.add_new_points_or_box(state, 4, 3, points=[[160, 120]], labels=[1])
    predictor.propagate_in_video_preflight(state)
    groups = predictor._object_groups(state, [0, 1, 2], 3)
    assert sorted(map(sorted, groups)) == [[0, 1], [2]]
    assert predictor.memory_signature(state, 0, 3) != predictor.memory_signature(state, 2, 3)
    # a memory policy or batch_objects=False keeps the per-object path
    predictor.batch_objects = False
    assert predictor._object_groups(state, [0, 1, 2], 3) == [[0], [1], [2]]


def test_split_step_output_copies_what_the_bank_keeps(make):
    build, frames = make
    predictor = build()
    state = predictor.init_state(frames, video_size=VIDEO_HW)
    with torch.inference_mode():
        features = predictor.frame_features(state, 0, batch_size=2)
        out = predictor.model.track_frame(features, 0, {COND: {}, NON_COND: {}}, FRAMES, is_init_cond_frame=True,
                                          point_inputs={"point_coords": torch.tensor([[[10.0, 10.0]], [[200.0, 90.0]]]),
                                                        "point_labels": torch.ones(2, 1, dtype=torch.int32)})
    one = split_step_output(out, 1)
    assert one.pred_masks.shape[0] == 1 and torch.equal(one.pred_masks, out.pred_masks[1:2])
    assert one.pred_masks.untyped_storage().data_ptr() != out.pred_masks.untyped_storage().data_ptr()
    assert torch.equal(one.maskmem_features, out.maskmem_features[1:2])
