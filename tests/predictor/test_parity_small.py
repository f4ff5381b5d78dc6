"""Golden parity of the video predictor on the small SAM 2.1 case (cases s1..s4), through the public API.

The model comes from the reference config (`SAM2Config.from_official_dict` + `build_sam2_from_state_dict`)
with the `fill.py` weights; frames are given at model size (256x256) with the declared video size
240x320, exactly as the reference ran.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from threeam.models.sam2.build import build_sam2_from_state_dict
from threeam.models.sam2.config import SAM2Config, VideoPredictorConfig
from threeam.predictor.video_predictor import VideoPredictor

from .golden_check import check_object_outputs, check_video_masks

VIDEO_HW = (240, 320)


def _obj7_mask() -> np.ndarray:
    # 'rows 120:200, cols 180:290, minus rows 150:170 cols 230:260' (video resolution)
    m = np.zeros(VIDEO_HW, dtype=bool)
    m[120:200, 180:290] = True
    m[150:170, 230:260] = False
    return m


@pytest.fixture(scope="module")
def case(golden_dir, fill):
    js = json.loads((golden_dir / "sam2" / "case_small_v21.json").read_text())
    npz = np.load(golden_dir / "sam2" / "case_small_v21.npz")
    assert tuple(js["video_hw"]) == VIDEO_HW
    cfg = SAM2Config.from_official_dict(js["config"])
    vcfg = VideoPredictorConfig.from_official_dict(js["config"])
    assert vcfg.fill_hole_area == 0 and vcfg.binarize_mask_from_pts_for_mem_enc

    def predictor(overrides: str, **options) -> VideoPredictor:
        model = build_sam2_from_state_dict(cfg, fill.fill_state_dict(js["shapes"], js[overrides]), video_config=vcfg)
        return VideoPredictor(model, vcfg, progress=False, **options)

    return js, npz, predictor


@pytest.fixture(scope="module")
def s1_run(case):
    """Runs s1 and keeps the session (s2 continues it)."""
    js, npz, make = case
    predictor = make("overrides_s1_s3")
    state = predictor.init_state(npz["frames"], video_size=VIDEO_HW)
    p = js["prompts"]["s1"]
    _, ids, masks = predictor.add_new_points_or_box(state, 0, 1, box=p["obj1_box_xyxy_video"])
    assert ids == [1] and masks.shape == (1, 1, *VIDEO_HW)
    _, ids, masks = predictor.add_new_mask(state, 0, 7, _obj7_mask())
    assert ids == [1, 7] and masks.shape == (2, 1, *VIDEO_HW)
    outputs = {t: (ids, m.clone()) for t, ids, m in predictor.propagate_in_video(state)}
    # s2 goes on with this session: keep a copy of the s1 memory bank for the s1 checks
    snapshot = SimpleNamespace(obj_id_to_idx=dict(state.obj_id_to_idx),
                               output_dict_per_obj={i: {k: dict(v) for k, v in bank.items()}
                                                    for i, bank in state.output_dict_per_obj.items()})
    return predictor, state, outputs, snapshot


def _check_case(npz, case_name: str, state, outputs: dict, obj_ids: list[int]) -> None:
    """Video-resolution masks of every yielded frame, then every stored per-object output."""
    frames = sorted({int(k.split("/")[-1][1:]) for k in npz.files if k.startswith(f"{case_name}/video_masks/")})
    assert sorted(outputs) == frames, f"{case_name}: yielded frames {sorted(outputs)} != reference {frames}"
    for t in frames:
        ids, masks = outputs[t]
        check_video_masks(npz, f"{case_name}/video_masks/f{t:03d}", f"{case_name}/video_ids/f{t:03d}", ids, masks,
                          f"{case_name} frame {t}")
    for obj_id in obj_ids:
        check_object_outputs(npz, case_name, state, obj_id)


def test_s1_box_and_mask_forward(case, s1_run):
    _, npz, _ = case
    _, _, outputs, snapshot = s1_run
    _check_case(npz, "s1", snapshot, outputs, [1, 7])


def test_s2_correction_as_conditioning_frame(case, s1_run):
    js, npz, _ = case
    predictor, state, _, _ = s1_run
    p = js["prompts"]["s2"]
    assert p["add_all_frames_to_correct_as_cond"]
    predictor.add_all_frames_to_correct_as_cond = True
    try:
        t, ids, masks = predictor.add_new_points_or_box(state, p["frame"], p["obj"], points=p["points_video"],
                                                        labels=p["labels"])
        check_video_masks(npz, f"s2/correction_video_masks/f{t:03d}", f"s2/video_ids/f{t:03d}", ids, masks,
                          "s2 correction")
        outputs = {t: (ids, m.clone()) for t, ids, m in predictor.propagate_in_video(state)}
    finally:
        predictor.add_all_frames_to_correct_as_cond = False
    _check_case(npz, "s2", state, outputs, [1, 7])


def test_s3_click_on_last_frame_reverse(case):
    js, npz, make = case
    predictor = make("overrides_s1_s3")
    state = predictor.init_state(npz["frames"], video_size=VIDEO_HW)
    p = js["prompts"]["s3"]
    predictor.add_new_points_or_box(state, p["frame"], p["obj"], points=p["points_video"], labels=p["labels"])
    outputs = {t: (ids, m.clone()) for t, ids, m in predictor.propagate_in_video(state, reverse=p["reverse"])}
    _check_case(npz, "s3", state, outputs, [p["obj"]])


def test_s4_absent_object(case):
    js, npz, make = case
    predictor = make("overrides_s4")
    p = js["prompts"]["s4"]
    state = predictor.init_state(npz["frames"][: p["frames"]], video_size=VIDEO_HW)
    predictor.add_new_points_or_box(state, p["frame"], p["obj"], points=p["points_video"], labels=p["labels"])
    outputs = {t: (ids, m.clone()) for t, ids, m in predictor.propagate_in_video(state)}
    _check_case(npz, "s4", state, outputs, [p["obj"]])
    # the object is predicted absent on every frame: no foreground at video resolution
    assert all(not (m > 0).any() for _, m in outputs.values())
