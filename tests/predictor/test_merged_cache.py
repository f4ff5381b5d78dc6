"""The bounded 3AM merged-feature cache (issue 11, part 2): LRU by MiB, and a frame evicted from
it is rendered again by MUSt3R against the current stream without changing the stream."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from threeam.errors import InputError
from threeam.predictor.build import build_three_am_model
from threeam.predictor.three_am_predictor import MergedFeatureCache, ThreeAMVideoPredictor


def test_cache_is_lru_by_bytes():
    one = torch.zeros(1, 4, 16, 16)  # 4 KiB
    cache = MergedFeatureCache(max_mib=3 * one.numel() * 4 / 2**20)
    for t in range(3):
        cache[t] = one.clone()
    assert list(cache) == [0, 1, 2] and cache.nbytes == 3 * 4096
    assert cache.get(0) is not None  # 0 becomes the most recently used
    cache[3] = one.clone()
    assert list(cache) == [2, 0, 3]
    assert 1 not in cache and cache.evictions == 1 and cache.nbytes == 3 * 4096
    cache[4] = torch.zeros(1, 4, 64, 64)  # larger than the limit alone: kept, everything else goes
    assert list(cache) == [4] and cache.nbytes == 4 * 64 * 64 * 4
    del cache[4]
    assert cache.nbytes == 0 and cache == {}
    unlimited = MergedFeatureCache(None)
    for t in range(50):
        unlimited[t] = one
    assert len(unlimited) == 50
    with pytest.raises(InputError, match="merged_cache_mib"):
        MergedFeatureCache(0)


def test_evicted_frames_are_rendered_again_without_touching_the_stream():
    tiny = build_three_am_model("3am_tiny", random_weights=True, seed=3)
    rng = np.random.default_rng(0)
    video = (rng.random((6, 48, 64, 3)) * 255).astype(np.uint8)
    # room for one merged feature only
    three = ThreeAMVideoPredictor(tiny, progress=False, merged_cache_mib=1e-6)
    full = ThreeAMVideoPredictor(tiny, progress=False, merged_cache_mib=None)
    masks = {}
    for name, predictor in (("small", three), ("full", full)):
        state = predictor.init_state(video)
        predictor.add_new_points_or_box(state, 2, 1, box=[10, 10, 40, 30])
        for _ in predictor.propagate_in_video(state):
            pass
        for _ in predictor.propagate_in_video(state, reverse=True):
            pass
        geo = predictor.geometry(state)
        assert geo.must3r_calls == 6 and geo.visit_order == [2, 3, 4, 5, 1, 0]
        count, tokens = geo.stream.frame_count, geo.stream.memory_tokens
        # a second forward pass (after a correction, say) needs frames 3, 4, 5 again
        masks[name] = {t: m.clone() for t, _, m in predictor.propagate_in_video(state)}
        assert geo.must3r_calls == 6 and (geo.stream.frame_count, geo.stream.memory_tokens) == (count, tokens)
        if name == "small":
            assert len(geo.merged) == 1 and geo.merged.evictions > 0
            assert geo.recomputed == 3
        else:
            assert len(geo.merged) == 6 and geo.recomputed == 0
    for t in masks["full"]:  # zero-initialised merger output: the masks do not depend on the geometry
        assert torch.equal(masks["full"][t], masks["small"][t])


def test_render_frame_leaves_the_stream_unchanged():
    from threeam.models.must3r.session import Must3rStreamingSession

    tiny = build_three_am_model("3am_tiny", random_weights=True, seed=3)
    stream = Must3rStreamingSession(tiny.must3r, tiny.stream_config)
    rng = np.random.default_rng(1)
    frames = (rng.random((3, 48, 64, 3)) * 255).astype(np.uint8)
    with pytest.raises(InputError, match="started stream"):
        stream.render_frame(frames[0])
    first = stream.add_frame(frames[0])
    stream.add_frame(frames[1])
    count, tokens, keys = stream.frame_count, stream.memory_tokens, stream.keyframe_indices
    again = stream.render_frame(frames[1])
    assert (stream.frame_count, stream.memory_tokens, stream.keyframe_indices) == (count, tokens, keys)
    assert [f.shape for f in again.features] == [f.shape for f in first.features]
