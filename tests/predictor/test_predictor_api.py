"""The predictor's session API beyond the golden cases: bad input gets clear errors, and the
session operations (clear prompts, remove object, reset, start frame / max frames, reverse)
behave as the official video predictor's do. Small golden config, deterministic weights."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from threeam.errors import InputError, VideoError
from threeam.models.sam2.build import build_sam2_from_state_dict
from threeam.models.sam2.config import SAM2Config, VideoPredictorConfig
from threeam.predictor.video_predictor import VideoPredictor

H, W = 240, 320


@pytest.fixture(scope="module")
def predictor(golden_dir, fill) -> VideoPredictor:
    js = json.loads((golden_dir / "sam2" / "case_small_v21.json").read_text())
    cfg = SAM2Config.from_official_dict(js["config"])
    vcfg = VideoPredictorConfig.from_official_dict(js["config"])
    model = build_sam2_from_state_dict(cfg, fill.fill_state_dict(js["shapes"], js["overrides_s1_s3"]),
                                       video_config=vcfg)
    return VideoPredictor(model, vcfg, progress=False)


@pytest.fixture(scope="module")
def frames(golden_dir) -> np.ndarray:
    return np.load(golden_dir / "sam2" / "case_small_v21.npz")["frames"][:6]


def _state(predictor, frames):
    return predictor.init_state(frames, video_size=(H, W))


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("point", [(-1, 10), (10, -0.5), (2 * W + 1, 10), (10, 2 * H + 3)])  # see test_prompt_bounds
def test_point_outside_the_frame(predictor, frames, point):
    state = _state(predictor, frames)
    with pytest.raises(InputError, match="outside the frame"):
        predictor.add_new_points_or_box(state, 0, 1, points=[point], labels=[1])
    assert state.obj_ids == [] or list(state.obj_ids) == []  # nothing was added


def test_box_with_swapped_corners(predictor, frames):
    state = _state(predictor, frames)
    with pytest.raises(InputError, match="x1 >= x0"):
        predictor.add_new_points_or_box(state, 0, 1, box=[200, 40, 60, 170])
    with pytest.raises(InputError, match="y1 >= y0"):
        predictor.add_new_points_or_box(state, 0, 1, box=[60, 170, 200, 40])


def test_mask_of_the_wrong_size(predictor, frames):
    state = _state(predictor, frames)
    with pytest.raises(InputError, match=f"{H}, {W}"):
        predictor.add_new_mask(state, 0, 1, np.ones((H // 2, W), dtype=bool))  # another aspect ratio


def test_labels_points_mismatch_and_frame_range(predictor, frames):
    state = _state(predictor, frames)
    with pytest.raises(InputError, match="labels"):
        predictor.add_new_points_or_box(state, 0, 1, points=[[10, 10], [20, 20]], labels=[1])
    with pytest.raises(InputError, match="out of range"):
        predictor.add_new_points_or_box(state, len(frames), 1, points=[[10, 10]], labels=[1])


def test_unknown_object_id_and_no_prompts(predictor, frames):
    state = _state(predictor, frames)
    with pytest.raises(InputError, match="no prompts"):
        next(iter(predictor.propagate_in_video(state)))
    predictor.add_new_points_or_box(state, 0, 1, points=[[160, 120]], labels=[1])
    with pytest.raises(InputError, match="42"):
        predictor.remove_object(state, 42, strict=True)
    assert predictor.remove_object(state, 42)[0] == [1]  # the official default (strict=False) ignores it
    with pytest.raises(InputError, match="42"):
        predictor.clear_all_prompts_in_frame(state, 0, 42)


def test_empty_and_corrupt_videos(predictor, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError):
        predictor.init_state(str(empty))
    with pytest.raises(VideoError):
        predictor.init_state(str(tmp_path / "missing.mp4"))
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(np.zeros((32, 48, 3), dtype=np.uint8)).save(bad / "00000.jpg")
    (bad / "00001.jpg").write_bytes(b"not a jpeg at all")
    state = predictor.init_state(str(bad))  # frames stream: a bad frame raises when tracking reaches it
    predictor.add_new_points_or_box(state, 0, 1, points=[[10, 10]], labels=[1])
    with pytest.raises(VideoError, match="00001.jpg"):
        list(predictor.propagate_in_video(state))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(VideoError):
        predictor.init_state(str(broken))


# ----------------------------------------------------------------------------- session operations

def _run(predictor, state, **kw) -> dict[int, tuple[list[int], torch.Tensor]]:
    return {t: (list(ids), m.clone()) for t, ids, m in predictor.propagate_in_video(state, **kw)}


def test_start_frame_max_frames_and_reverse(predictor, frames):
    state = _state(predictor, frames)
    predictor.add_new_points_or_box(state, 2, 1, points=[[160, 120]], labels=[1])
    fwd = _run(predictor, state, start_frame_idx=2, max_frame_num_to_track=2)
    assert list(fwd) == [2, 3, 4]
    back = _run(predictor, state, start_frame_idx=2, reverse=True)
    assert list(back) == [2, 1, 0]
    assert all(m.shape == (1, 1, H, W) for _, m in fwd.values())
    # the per-frame "tracked" records are two shared read-only entries, not one dict per frame
    tracked = state["frames_tracked_per_obj"][0]
    assert {t: v["reverse"] for t, v in tracked.items()} == {2: True, 3: False, 4: False, 1: True, 0: True}
    assert len({id(v) for v in tracked.values()}) == 2
    with pytest.raises(TypeError):
        tracked[3]["reverse"] = True
    import copy
    import pickle

    assert copy.deepcopy(tracked) == tracked and pickle.loads(pickle.dumps(tracked)) == tracked


def test_remove_object_keeps_the_other_objects_results(predictor, frames):
    state = _state(predictor, frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[[160, 120]], labels=[1])
    predictor.add_new_points_or_box(state, 0, 5, box=[20, 20, 120, 100])
    both = _run(predictor, state)
    assert all(ids == [1, 5] for ids, _ in both.values())
    predictor.remove_object(state, 5)
    assert list(state.obj_ids) == [1]
    alone = _run(predictor, state)
    assert all(ids == [1] for ids, _ in alone.values())
    # objects are tracked independently: object 1's masks do not change when object 5 goes
    # (with batched objects, up to float32 rounding: the two were one batch of 2)
    for t in both:
        a, b = both[t][1][0], alone[t][1][0]
        assert torch.allclose(a, b, rtol=0, atol=1e-4 * max(1.0, a.abs().max().item())), f"frame {t}"
        assert ((a > 0) == (b > 0)).float().mean().item() >= 0.9999, f"frame {t}"


def test_clear_prompts_in_frame_and_reset(predictor, frames):
    state = _state(predictor, frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[[160, 120]], labels=[1])
    predictor.add_new_points_or_box(state, 3, 1, points=[[100, 80]], labels=[1])
    predictor.clear_all_prompts_in_frame(state, 3, 1)
    cleared = _run(predictor, state)
    fresh = _state(predictor, frames)
    predictor.add_new_points_or_box(fresh, 0, 1, points=[[160, 120]], labels=[1])
    only_first = _run(predictor, fresh)
    for t in only_first:  # the frame-3 click left no trace
        assert torch.equal(cleared[t][1], only_first[t][1]), f"frame {t}"
    predictor.reset_state(state)
    assert list(state.obj_ids) == []
    with pytest.raises(InputError, match="no prompts"):
        next(iter(predictor.propagate_in_video(state)))


def test_mask_prompt_returns_the_mask_on_its_frame(predictor, frames):
    """use_mask_input_as_output_without_sam: a mask prompt is the output on its own frame."""
    state = _state(predictor, frames)
    mask = np.zeros((H, W), dtype=bool)
    mask[60:180, 80:240] = True
    _, ids, masks = predictor.add_new_mask(state, 0, 3, mask)
    assert ids == [3]
    agree = ((masks[0, 0] > 0).numpy() == mask).mean()
    assert agree > 0.99
