"""SAM2Long and DAM4SAM memory policies: equal to SAM 2 where they should be, different where not.

Model: the small golden SAM 2.1 config with `fill.py` weights (as the predictor parity tests);
frames: a tiny generated scene (48x64, resized to the model's 256).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from threeam.data.synth import generate_scene, get_synth_config
from threeam.errors import InputError
from threeam.eval.baselines import (DAM4SAMConfig, DAM4SAMPolicy, SAM2LongConfig, SAM2LongPolicy, attach_policy)
from threeam.eval.baselines.dam4sam import bbox_iou, has_distractor
from threeam.eval.baselines.policy import Candidates, sam2_memory_frames
from threeam.models.sam2.tracking import FrameFeatures, TrackStepOutput
from threeam.models.sam2.build import build_sam2_from_state_dict
from threeam.models.sam2.config import SAM2Config, VideoPredictorConfig
from threeam.predictor.state import NON_COND
from threeam.predictor.video_predictor import VideoPredictor

N_FRAMES = 12


@pytest.fixture(scope="module")
def predictor(golden_dir, fill) -> VideoPredictor:
    js = json.loads((golden_dir / "sam2" / "case_small_v21.json").read_text())
    cfg = SAM2Config.from_official_dict(js["config"])
    vcfg = VideoPredictorConfig.from_official_dict(js["config"])
    model = build_sam2_from_state_dict(cfg, fill.fill_state_dict(js["shapes"], js["overrides_s1_s3"]), video_config=vcfg)
    assert model.multimask_output_for_tracking and model.memory_temporal_stride_for_eval == 1
    return VideoPredictor(model, vcfg, progress=False)


@pytest.fixture(scope="module")
def video():
    scene = generate_scene(get_synth_config("tiny", n_frames=N_FRAMES), seed=0)
    frames = np.stack([scene.frame(t).rgb for t in range(len(scene))])
    ids = np.stack([scene.instance_ids(t) for t in range(len(scene))])
    return frames, ids


def _run(pred, video, obj=1, start=0, reverse=False):
    """Prompt `obj`'s GT mask on `start`, propagate; returns ({t: logits}, state)."""
    frames, ids = video
    state = pred.init_state(frames)
    pred.add_new_mask(state, start, 1, ids[start] == obj)
    out = {t: m.clone() for t, _, m in pred.propagate_in_video(state, start_frame_idx=start, reverse=reverse)}
    revised = getattr(pred, "revised_outputs", None)
    if revised is not None:
        out.update(revised(state))
    return out, state


@pytest.fixture(scope="module")
def sam2_run(predictor, video):
    return _run(predictor, video)


def test_sam2long_one_pathway_no_gate_equals_sam2(predictor, video, sam2_run):
    ref, _ = sam2_run
    policy = SAM2LongPolicy(SAM2LongConfig(num_pathways=1, iou_threshold=None))
    out, state = _run(attach_policy(predictor, policy), video)
    assert sorted(out) == sorted(ref) == list(range(N_FRAMES))
    for t in ref:
        assert torch.equal(out[t], ref[t]), f"frame {t}"
    assert any((ref[t] > 0).any() for t in range(1, N_FRAMES))  # not a trivially empty track
    # its memory selection is SAM 2's
    for t, used in policy.memory_trace[0].items():
        assert used["recent"] == sam2_memory_frames(predictor.model, t, range(1, t)), t


def test_sam2long_pathways_differ_from_sam2(predictor, video, sam2_run):
    ref, ref_state = sam2_run
    policy = SAM2LongPolicy()  # 3 pathways, IoU gate 0.1
    pred = attach_policy(predictor, policy)
    out, state = _run(pred, video)
    paths = policy.paths[0]
    assert len(paths) == 3
    assert paths[0].score >= paths[1].score >= paths[2].score
    # the candidates differ: the surviving pathways hold different masks on some frame
    differ = any(not torch.equal(paths[0].history[t]["pred_masks"], paths[i].history[t]["pred_masks"])
                 for i in (1, 2) for t in paths[0].history)
    assert differ
    assert any(not torch.equal(out[t], ref[t]) for t in ref)
    # the offline answer is the best pathway's history, also stored in the session's bank
    bank = state.output_dict_per_obj[0][NON_COND]
    for t, o in paths[0].history.items():
        assert bank[t] is o
    # the plain predictor is untouched by attach_policy
    assert type(predictor) is VideoPredictor


def test_sam2long_iou_gate_keeps_low_iou_frames_out_of_memory(predictor, video):
    policy = SAM2LongPolicy(SAM2LongConfig(num_pathways=1, iou_threshold=1.0))  # nothing passes
    _run(attach_policy(predictor, policy), video)
    for t, used in policy.memory_trace[0].items():
        assert used["recent"] == ([t - 1] if t > 1 else []), t  # only the previous frame


def test_sam2long_gated_frames_are_replaced_by_older_valid_ones(predictor, video):
    # a gate that lets only even frames into memory
    policy = SAM2LongPolicy(SAM2LongConfig(num_pathways=1, iou_threshold=None))
    pred = attach_policy(predictor, policy)
    orig = policy.step

    def step(predictor_, state, obj_idx, bank, frame_idx, reverse):
        out = orig(predictor_, state, obj_idx, bank, frame_idx, reverse)
        path = policy.paths[obj_idx][0]
        if frame_idx % 2:
            path.memory.pop(frame_idx, None)
        return out

    policy.step = step
    _run(pred, video)
    trace = policy.memory_trace[0]
    assert trace[11]["recent"] == [2, 4, 6, 8, 10]  # previous frame 10 + older even frames
    assert trace[10]["recent"] == [2, 4, 6, 8, 9]  # previous frame 9 is always used


def test_dam4sam_every_frame_no_drm_equals_sam2(predictor, video, sam2_run):
    ref, _ = sam2_run
    policy = DAM4SAMPolicy("sam2_equivalent")
    out, _ = _run(attach_policy(predictor, policy), video)
    for t in ref:
        assert torch.equal(out[t], ref[t]), f"frame {t}"
    for t, used in policy.memory_trace[0].items():
        assert used == {"cond": [0], "recent": sam2_memory_frames(predictor.model, t, range(1, t))}


def test_dam4sam_defaults_select_other_memory_frames(predictor, video, sam2_run):
    ref, _ = sam2_run
    policy = DAM4SAMPolicy()
    out, _ = _run(attach_policy(predictor, policy), video)
    trace = policy.memory_trace[0]
    # present on every tracked frame here, so RAM = previous frame + multiples of 5 (frame 0 is the
    # prompted frame, not a RAM frame)
    assert all((ref[t] > 0).any() for t in range(1, 8))
    assert trace[3]["recent"] == [2]
    assert trace[8]["recent"] == [5, 7]
    assert sam2_memory_frames(predictor.model, 8, range(1, 8)) == [2, 3, 4, 5, 6, 7]
    assert trace[11]["recent"] == [5, 10]
    assert any(not torch.equal(out[t], ref[t]) for t in ref)


def test_dam4sam_backward_pass(predictor, video):
    policy = DAM4SAMPolicy()
    out, _ = _run(attach_policy(predictor, policy), video, start=N_FRAMES - 1, reverse=True)
    assert sorted(out) == list(range(N_FRAMES))
    trace = policy.memory_trace[0]
    assert trace[N_FRAMES - 2]["recent"] == []
    assert trace[9]["recent"] == [10]  # the previous (later) frame; no multiple of 5 above 10 tracked
    assert trace[8]["recent"] == [9, 10]  # the previous frame, then the next multiple of 5


def test_dam4sam_drm_anchors_become_conditioning_memories(predictor, video):
    # accept every frame whose alternatives have pixels outside the chosen mask
    cfg = DAM4SAMConfig(drm_min_iou=-1.0, drm_area_tolerance=1e9, distractor_bbox_iou=1.0, drm_min_gap=2)
    policy = DAM4SAMPolicy(cfg)
    _run(attach_policy(predictor, policy), video)
    anchors = policy.drm_frames[0]
    assert anchors, "no distractor anchor was added"
    assert len(anchors) <= cfg.drm_size and all(b - a > 2 for a, b in zip(anchors, anchors[1:]))
    first = anchors[0]
    assert first in policy.memory_trace[0][first + 1]["cond"]


def test_has_distractor_on_hand_made_masks():
    chosen = np.zeros((32, 32), bool)
    chosen[4:12, 4:12] = True
    near = chosen.copy()
    near[4:12, 12:14] = True  # slightly larger hypothesis: same object
    far = np.zeros_like(chosen)
    far[20:28, 20:28] = True  # a look-alike elsewhere
    speck = np.zeros_like(chosen)
    speck[0, 31] = True
    assert not has_distractor(chosen, [chosen.copy()])
    assert not has_distractor(chosen, [near])
    assert has_distractor(chosen, [far])
    assert has_distractor(chosen, [near, far | speck])  # any alternative; largest component of each
    assert not has_distractor(chosen, [near, speck], max_bbox_iou=0.1)  # the speck: box IoU 64/336
    assert not has_distractor(np.zeros_like(chosen), [far])
    assert bbox_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)


def _cands(masks: list[np.ndarray], ious: list[float], present: bool = True) -> Candidates:
    low = torch.stack([torch.where(torch.from_numpy(m), 5.0, -5.0) for m in masks])[None].float()
    m = len(masks)
    step = TrackStepOutput(multimask_logits=low, multimask_logits_high_res=low, ungated_multimask_logits=low,
                           ious=torch.tensor([ious]), candidate_obj_ptrs=torch.zeros(1, m, 4),
                           chosen=torch.zeros(1, dtype=torch.long), pred_masks=low[:, :1], pred_masks_high_res=low[:, :1],
                           obj_ptr=torch.zeros(1, 4), object_score_logits=torch.tensor([[3.0 if present else -3.0]]))
    return Candidates(step, FrameFeatures([], [], []))


def test_dam4sam_drm_rules():
    from threeam.eval.baselines.dam4sam import _ObjectMemory

    chosen = np.zeros((32, 32), bool)
    chosen[4:12, 4:12] = True
    far = np.zeros_like(chosen)
    far[20:28, 20:28] = True
    policy = DAM4SAMPolicy()
    mem = _ObjectMemory(areas=[64, 64, 60])
    ok = _cands([chosen, far, chosen], [0.9, 0.5, 0.4])
    assert policy._drm_ok(mem, ok, 0, chosen, 64, 10)
    assert not policy._drm_ok(mem, _cands([chosen, far], [0.7, 0.5]), 0, chosen, 64, 10)  # IoU <= 0.8
    assert not policy._drm_ok(mem, ok, 0, chosen, 90, 10)  # area +40% of the median
    assert not policy._drm_ok(mem, _cands([chosen, chosen], [0.9, 0.5]), 0, chosen, 64, 10)  # no distractor
    mem.last_drm = 7
    assert not policy._drm_ok(mem, ok, 0, chosen, 64, 10)  # 3 frames since the last anchor
    assert not policy._drm_ok(mem, ok, 0, chosen, 64, 12)  # 5: not more than 5
    assert policy._drm_ok(mem, ok, 0, chosen, 64, 13)
    assert not policy._drm_ok(_ObjectMemory(), ok, 0, chosen, 64, 10)  # no earlier present frame


def test_policy_configs_and_attach_errors(predictor):
    with pytest.raises(InputError):
        SAM2LongConfig(num_pathways=0)
    with pytest.raises(InputError):
        SAM2LongPolicy("nope")
    with pytest.raises(InputError):
        DAM4SAMConfig(ram_every=0)
    with pytest.raises(InputError):
        DAM4SAMPolicy("nope")
    with pytest.raises(InputError):
        attach_policy(object(), SAM2LongPolicy())
    with pytest.raises(InputError):
        attach_policy(attach_policy(predictor, SAM2LongPolicy()), DAM4SAMPolicy())


def test_dam4sam_ram_selection_rules():
    from threeam.eval.baselines.dam4sam import _ObjectMemory

    policy = DAM4SAMPolicy()
    frames = range(1, 23)  # tracked forward from a prompt on frame 0
    mem = _ObjectMemory(outputs={t: {} for t in frames}, usable={t: True for t in frames})
    assert policy._ram_sources(mem, 23, False, 6) == [22, 20, 15, 10, 5]
    assert policy._ram_sources(mem, 23, False, 2) == [22, 20]
    mem.usable[22] = mem.usable[20] = mem.usable[10] = False  # object absent there
    assert policy._ram_sources(mem, 23, False, 6) == [21, 15, 5]  # older frames replace absent ones
    mem.drm = [15]  # an anchor is attended as a prompted frame, not as RAM
    assert policy._ram_sources(mem, 23, False, 6) == [21, 5]
    back = _ObjectMemory(outputs={t: {} for t in range(3, 20)}, usable={t: True for t in range(3, 20)})
    assert policy._ram_sources(back, 2, True, 6) == [3, 5, 10, 15]


def test_sam2long_survivor_selection():
    from threeam.eval.baselines.sam2long import _Branch

    m = np.zeros((4, 4), bool)
    sure = _cands([m], [0.5])  # object score 3 > uncertainty 2
    sure.step.object_score_logits = torch.tensor([[3.0]])
    unsure = _cands([m], [0.5])
    unsure.step.object_score_logits = torch.tensor([[1.0]])

    def branches(c):  # (score, parent, k, iou)
        spec = [(-0.1, 0, 0, 0.90), (-0.2, 0, 1, 0.901), (-0.3, 0, 2, 0.5), (-0.4, 1, 0, 0.899), (-0.5, 1, 1, 0.3)]
        return [_Branch(sc, p, k, iou, c) for sc, p, k, iou in spec]

    policy = SAM2LongPolicy()  # P = 3
    assert [(b.parent, b.k) for b in policy._select(branches(sure))] == [(0, 0), (0, 1), (0, 2)]
    # ambiguous frame: distinct rounded IoUs first (0.90 and 0.901 and 0.899 all round to 0.9)
    assert [(b.parent, b.k) for b in policy._select(branches(unsure))] == [(0, 0), (0, 2), (1, 1)]
    policy2 = SAM2LongPolicy(SAM2LongConfig(num_pathways=2, uncertainty=2.0))
    same = [_Branch(-0.1 * i, i // 2, i % 2, 0.9, unsure) for i in range(4)]  # one rounded IoU
    # then the best branch of a pathway not yet continued (by score alone: (0, 0), (0, 1))
    assert [(b.parent, b.k) for b in policy2._select(same)] == [(0, 0), (1, 0)]
    for b in same:
        b.cands = sure
    assert [(b.parent, b.k) for b in policy2._select(same)] == [(0, 0), (0, 1)]
