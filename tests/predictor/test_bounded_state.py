"""Bounded per-frame state (issue 11, part 2): tracked outputs no later step can read leave the
memory bank while propagating, results stay exactly those of keeping everything (forward and
reverse passes from a prompted frame), and a spill folder brings dropped outputs back for a
correction. Debug SAM 2 model (256 input, random weights) with a short memory window (W = 5:
3 spatial memories, 4 object pointers), 28 generated frames of 64x64. The end-to-end checks are
slow (minutes on a shared CPU); the release rule itself is checked fast on a fabricated bank."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from threeam.io.synthetic_video import SyntheticVideo
from threeam.predictor.state import COND, NON_COND

FRAMES, PROMPT = 28, 8


@pytest.fixture(scope="module")
def video():
    v = SyntheticVideo(FRAMES, 64, 64, seed=0)
    return v, [v[t] for t in range(FRAMES)]


def _predictor(**options):
    import dataclasses

    from threeam.models.three_am import debug_sam2_config
    from threeam.predictor.build import build_predictor

    cfg = dataclasses.replace(debug_sam2_config(), num_maskmem=3, max_obj_ptrs_in_encoder=4)
    return build_predictor("sam2", preset=cfg, random_weights=True, seed=0, progress=False, **options)


def _run(predictor, video):
    v, frames = video
    import numpy as np

    state = predictor.init_state(np.stack(frames))
    predictor.add_new_points_or_box(state, PROMPT, 1, box=v.box(PROMPT))
    predictor.add_new_points_or_box(state, PROMPT, 2, points=[[5, 5]], labels=[1])
    fwd = {t: m.clone() for t, _, m in predictor.propagate_in_video(state)}
    held_after_forward = sorted(state.output_dict_per_obj[0][NON_COND])
    rev = {t: m.clone() for t, _, m in predictor.propagate_in_video(state, reverse=True)}
    return state, fwd, rev, held_after_forward


@pytest.fixture(scope="module")
def runs(video):
    full = _predictor(keep_all_outputs=True)
    bounded = _predictor()
    return (full, _run(full, video)), (bounded, _run(bounded, video))


def test_release_rule_on_a_fabricated_bank():
    from collections import OrderedDict

    predictor = _predictor()
    w = predictor.memory_window()
    assert w == 5
    state = SimpleNamespace(obj_idx_to_id=OrderedDict({0: 1}), spilled={}, spill_folder=None,
                            output_dict_per_obj={0: {COND: {10: {}}, NON_COND: {t: {} for t in range(40) if t != 10}}})
    dropped = predictor.release_unreachable_outputs(state, 0, 30, reverse=False)
    # behind frame 30 by more than W, and not within W of the prompted frame 10
    assert sorted(dropped) == [t for t in range(25) if abs(t - 10) > w]
    assert sorted(state.output_dict_per_obj[0][NON_COND]) == [t for t in range(40) if t != 10 and (abs(t - 10) <= w or t >= 25)]
    dropped = predictor.release_unreachable_outputs(state, 0, 12, reverse=True)
    assert sorted(dropped) == list(range(25, 40))
    assert sorted(state.output_dict_per_obj[0][NON_COND]) == [t for t in range(5, 16) if t != 10]


@pytest.mark.slow
def test_bounded_outputs_equal_keeping_everything(runs):
    (_, (_, f1, r1, _)), (_, (_, f2, r2, _)) = runs
    assert sorted(f1) == sorted(f2) == list(range(PROMPT, FRAMES))
    assert sorted(r1) == sorted(r2) == list(range(PROMPT + 1))
    for a, b in ((f1, f2), (r1, r2)):
        for t in a:
            assert torch.equal(a[t], b[t]), f"frame {t} differs"


@pytest.mark.slow
def test_bank_is_bounded_and_keeps_what_a_reverse_pass_needs(runs):
    (full, (s1, _, _, held1)), (bounded, (s2, _, _, held2)) = runs
    w = bounded.memory_window()
    assert held1 == sorted(set(range(PROMPT, FRAMES)) - {PROMPT})
    # after the forward pass: the last W frames and those within W of the prompted frame
    expected = [t for t in range(PROMPT + 1, FRAMES) if t >= FRAMES - 1 - w or t - PROMPT <= w]
    assert held2 == expected and len(held2) < len(held1)
    # after the reverse pass: the frames within W behind frame 0 and within W of the prompted frame
    assert sorted(s2.output_dict_per_obj[0][NON_COND]) == [t for t in range(PROMPT + w + 1) if t != PROMPT]
    assert len(s1.output_dict_per_obj[0][NON_COND]) == FRAMES - 1
    # every frame still counts as tracked (corrections are corrections, not new prompts)
    assert sorted(s2.frames_tracked_per_obj[0]) == list(range(FRAMES))
    assert sorted(s2.output_dict_per_obj[0][COND]) == [PROMPT]


@pytest.mark.slow
def test_spilled_outputs_come_back_for_a_correction(video, tmp_path):
    v, frames = video
    import numpy as np

    results = {}
    for name, options in (("full", dict(keep_all_outputs=True)), ("spill", dict(spill_dir=tmp_path / "spill"))):
        predictor = _predictor(**options)
        state = predictor.init_state(np.stack(frames))
        predictor.add_new_points_or_box(state, 0, 1, box=v.box(0))
        for _ in predictor.propagate_in_video(state):
            pass
        if name == "spill":
            assert 14 not in state.output_dict_per_obj[0][NON_COND] and 10 not in state.output_dict_per_obj[0][NON_COND]
            assert 14 in state.spilled[1] and state.spilled[1][14].exists()
        _, _, masks = predictor.add_new_points_or_box(state, 14, 1, points=[[30, 30]], labels=[0],
                                                      clear_old_points=False)
        results[name] = masks
        if name == "spill":
            assert 14 in state.output_dict_per_obj[0][NON_COND] and 14 not in state.spilled[1]
            folder = state.spill_folder
            assert any(folder.iterdir())
            predictor.reset_state(state)
            assert state.spilled == {} and not any(folder.iterdir())
    assert torch.equal(results["full"], results["spill"])


def test_spill_dir_must_be_a_folder(tmp_path):
    from threeam.errors import InputError

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        _predictor(spill_dir=f)
