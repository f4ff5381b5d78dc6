"""The 3AM merged-feature cache's default bound (issue 11, part 2): by default it keeps the 2 W most
recently used frames plus the prompted frames, so a long video's memory is flat; prompted frames
stay (pinned); a frame evicted and recomputed gives the first visit's features when MUSt3R's stream
is unchanged, so corrections and second passes stay correct."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from threeam.errors import InputError
from threeam.predictor.build import build_predictor, build_three_am_model
from threeam.predictor.three_am_predictor import MergedFeatureCache, ThreeAMVideoPredictor


def test_frame_limit_keeps_the_newest_and_every_pinned_frame():
    one = torch.zeros(1, 4, 8, 8)  # 1 KiB
    cache = MergedFeatureCache(max_mib=None, max_frames=3)
    cache.pin({0, 5})
    for t in range(10):
        cache[t] = one.clone()
    assert sorted(cache) == [0, 5, 7, 8, 9]
    assert cache.nbytes == 5 * 1024 and cache.evictions == 5
    cache.get(7)  # used again: 8 is now the least recently used unpinned frame
    cache[10] = one.clone()
    assert sorted(cache) == [0, 5, 7, 9, 10]
    # the MiB limit bounds everything, pinned frames included (unpinned ones go first)
    small = MergedFeatureCache(max_mib=2 * 1024 / 2**20, max_frames=None)
    small.pin({0})
    for t in range(4):
        small[t] = one.clone()
    assert sorted(small) == [0, 3]
    small.pin(set())
    small[4] = one.clone()
    assert sorted(small) == [3, 4]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="merged_cache_frames"):
            MergedFeatureCache(max_frames=bad)


def test_default_limit_is_twice_the_memory_window_and_configurable():
    p = build_predictor("3am", preset="3am_tiny", random_weights=True, progress=False)
    assert p.merged_cache_frames == "auto"
    assert p.merged_cache_frame_limit() == 2 * p.memory_window()
    assert p.merged_cache_mib == 1024.0
    q = build_predictor("3am", preset="3am_tiny", random_weights=True, progress=False, merged_cache_frames=5)
    assert q.merged_cache_frame_limit() == 5
    r = build_predictor("3am", preset="3am_tiny", random_weights=True, progress=False, merged_cache_frames=None)
    assert r.merged_cache_frame_limit() is None
    with pytest.raises(InputError, match="merged_cache_frames"):
        build_predictor("3am", preset="3am_tiny", random_weights=True, progress=False, merged_cache_frames="all")
    with pytest.raises(InputError, match="merged_cache_frames"):
        build_predictor("3am", preset="3am_tiny", random_weights=True, progress=False, merged_cache_frames=0)


def _geometry_model():
    """3am_tiny with a non-zero merger output (so masks depend on MUSt3R's features) and a stream
    whose only keyframe is the reference: every later frame is rendered against the same memory."""
    model = build_three_am_model("3am_tiny", random_weights=True, seed=5)
    with torch.no_grad():
        conv = model.merger.last_conv
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    model.stream_config = dataclasses.replace(model.stream_config, keyframe_interval=None,
                                              new_geometry_threshold=None)
    return model


def _video(n=7):
    rng = np.random.default_rng(2)
    return (rng.random((n, 48, 64, 3)) * 255).astype(np.uint8)


def _bank(state):
    """Every tracked output's object pointer and memory (they depend on the frame features; with
    random weights the masks themselves are all 'no object')."""
    return {(i, t): torch.cat([e["obj_ptr"].flatten().float(), e["maskmem_features"].flatten().float()])
            for i, bank in state.output_dict_per_obj.items() for t, e in bank["non_cond_frame_outputs"].items()}


def _prompt(predictor, state):
    predictor.add_new_points_or_box(state, 1, 1, box=[10, 10, 40, 30])
    predictor.add_new_points_or_box(state, 4, 2, box=[20, 12, 50, 40])


def test_evicted_frames_recompute_the_same_features_and_prompted_frames_stay():
    model = _geometry_model()
    video = _video()
    results = {}
    for name, frames in (("bounded", 2), ("full", None)):
        predictor = ThreeAMVideoPredictor(model, progress=False, merged_cache_frames=frames, merged_cache_mib=None)
        state = predictor.init_state(video)
        _prompt(predictor, state)
        masks = [m.clone() for _, _, m in predictor.propagate_in_video(state)]
        first = _bank(state)
        geo = predictor.geometry(state)
        if name == "bounded":
            # the two prompted frames (pinned) and the 2 most recent others
            assert sorted(geo.merged) == [1, 4, 5, 6]
        else:
            assert sorted(geo.merged) == [1, 2, 3, 4, 5, 6]
        calls, tokens = geo.must3r_calls, geo.stream.memory_tokens
        # a correction on frame 2 and a second pass from there: frames 2, 3 are read again
        predictor.add_new_points_or_box(state, 2, 1, points=[[30, 20]], labels=[1], clear_old_points=False)
        masks += [m.clone() for _, _, m in predictor.propagate_in_video(state, start_frame_idx=2)]
        assert geo.must3r_calls == calls and geo.stream.memory_tokens == tokens
        results[name] = (first, _bank(state), masks, geo.recomputed, {t: f.clone() for t, f in geo.merged.items()})
    (b1, b2, b_masks, b_re, b_feat), (f1, f2, f_masks, f_re, f_feat) = results["bounded"], results["full"]
    assert b_re > 0 and f_re == 0
    for t in f_feat.keys() & b_feat.keys():
        assert torch.equal(b_feat[t], f_feat[t]), f"frame {t}: recomputed merged feature differs"
    assert b1.keys() == f1.keys() and b2.keys() == f2.keys() and len(f2) > 0
    for k in f1:
        assert torch.equal(b1[k], f1[k]), f"first pass, object/frame {k}"
    for k in f2:
        assert torch.equal(b2[k], f2[k]), f"second pass, object/frame {k}"
    assert all(torch.equal(a, b) for a, b in zip(b_masks, f_masks))
    # the check can fail: with the merger's output the memories are not SAM 2's own
    sam2 = ThreeAMVideoPredictor(model, progress=False)
    state = sam2.init_state(video)
    sam2.set_use_geometry(state, False)
    _prompt(sam2, state)
    for _ in sam2.propagate_in_video(state):
        pass
    plain = _bank(state)
    assert plain.keys() == f1.keys()
    assert all(not torch.allclose(plain[k], f1[k], atol=1e-3) for k in f1)
