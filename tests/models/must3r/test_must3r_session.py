"""Streaming session: keyframe policy, bounded memory, per-frame outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from threeam.errors import InputError
from threeam.models.must3r.config import Must3rConfig, Must3rDecoderConfig, Must3rEncoderConfig
from threeam.models.must3r.model import Must3r
from threeam.models.must3r.session import (
    DEFAULT_FEATURE_LEVELS,
    Must3rStreamConfig,
    Must3rStreamingSession,
    new_geometry_score,
)


def _tiny(depth=4, seed=0):
    torch.manual_seed(seed)
    cfg = Must3rConfig(
        Must3rEncoderConfig(img_size=(64, 64), embed_dim=32, depth=1, num_heads=2),
        Must3rDecoderConfig(img_size=(64, 64), enc_embed_dim=32, embed_dim=16, depth=depth, num_heads=2),
    )
    return Must3r(cfg).eval()


def _frames(n, h=32, w=48, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for i in range(n):
        yield np.roll(base, i, axis=1)


def test_default_levels_documented():
    assert DEFAULT_FEATURE_LEVELS == (0, 4, 7, 11)
    with pytest.raises(InputError, match="out of range"):
        Must3rStreamingSession(_tiny(depth=4), Must3rStreamConfig())  # level 7 > depth 4


def test_outputs_and_interval_policy():
    model = _tiny()
    cfg = Must3rStreamConfig(res=48, feature_levels=(0, 2, 4), keyframe_interval=2, max_keyframes=10)
    session = Must3rStreamingSession(model, cfg)
    outs = list(session.stream(_frames(5)))
    assert [o.is_keyframe for o in outs] == [True, False, True, False, True]
    assert session.keyframe_indices == [0, 2, 4]
    o = outs[3]
    assert o.true_shape == (32, 48) and o.grid_hw == (2, 3)
    assert [f.shape for f in o.features] == [(1, 6, 32), (1, 6, 16), (1, 6, 16)]
    assert o.positions.shape == (1, 6, 2) and o.positions[0, 4].tolist() == [1, 1]
    assert o.pts_ref.shape == (1, 32, 48, 3) and o.pts_self.shape == (1, 32, 48, 3)
    assert o.conf.shape == (1, 32, 48) and bool((o.conf > 1).all())
    torch.testing.assert_close(o.rays.norm(dim=-1), torch.ones(1, 32, 48))
    assert o.c2w.shape == (1, 4, 4) and o.focal.shape == (1,)
    torch.testing.assert_close(o.feature(2), o.features[1])
    # outputs equal the plain model calls: init with frame 0, add frame 2, render frame 3
    frames = [torch.from_numpy(f).permute(2, 0, 1).float() / 255 * 2 - 1 for f in _frames(5)]
    with torch.no_grad():
        mem = model.init_memory(frames[0][None]).memory
        mem = model.add_frames(mem, frames[2][None]).memory
        ref = model.render(mem, frames[3][None])
    torch.testing.assert_close(o.features[2], ref.feats[4][:, 0])
    from threeam.models.must3r.postprocess import postprocess

    torch.testing.assert_close(o.pts_ref, postprocess(ref.pointmaps_raw[:, 0]).pts_ref)


def test_bounded_memory_over_a_long_stream():
    model = _tiny(depth=2)
    cfg = Must3rStreamConfig(res=32, feature_levels=(0, 2), keyframe_interval=1, max_keyframes=8, compute_camera=False)
    session = Must3rStreamingSession(model, cfg)
    tokens, sizes = [], []
    for out in session.stream(_frames(200, h=32, w=32)):
        tokens.append(session.memory_tokens)
        sizes.append(session.memory.nbytes())
        assert out.is_keyframe
    n_tok = 4  # 32x32 frames -> 2x2 tokens
    assert max(tokens) == 8 * n_tok and tokens[-1] == 8 * n_tok
    assert len(set(sizes[8:])) == 1  # constant after saturation
    assert len(session.keyframes) == 8
    assert session.keyframe_indices == [0] + list(range(193, 200))  # reference kept, oldest evicted
    assert session.memory.image_labels() == [0] + list(range(193, 200))
    assert session.frame_count == 200


def test_memory_eviction_really_changes_predictions():
    model = _tiny(depth=2)
    frames = list(_frames(6, h=32, w=32))
    outs = {}
    for max_kf in (2, 10):
        s = Must3rStreamingSession(model, Must3rStreamConfig(res=32, feature_levels=(0,), keyframe_interval=1,
                                                             max_keyframes=max_kf, compute_camera=False))
        outs[max_kf] = list(s.stream(frames))
    assert torch.allclose(outs[2][1].pts_ref, outs[10][1].pts_ref)  # same until the first eviction
    assert not torch.allclose(outs[2][5].pts_ref, outs[10][5].pts_ref)


def test_new_geometry_score():
    pts = torch.tensor([[0.0, 0.0, 2.0], [1.0, 0.0, 2.0]])
    depth = torch.tensor([2.0, 2.0])
    assert new_geometry_score(pts, depth, pts) == 0.0
    shifted = pts + torch.tensor([0.5, 0.0, 0.0])
    assert new_geometry_score(shifted, depth, pts, percentile=100) == pytest.approx(0.25)
    assert new_geometry_score(pts, depth, torch.zeros(0, 3)) == float("inf")


def test_geometry_policy_drives_keyframes():
    model = _tiny()
    frames = list(_frames(4))
    base = dict(res=48, feature_levels=(0,), keyframe_interval=None, min_keyframe_conf=1.0, compute_camera=False)
    always = Must3rStreamingSession(model, Must3rStreamConfig(new_geometry_threshold=0.0, new_geometry_percentile=100, **base))
    assert [o.is_keyframe for o in always.stream(frames)] == [True, True, True, True]
    never = Must3rStreamingSession(model, Must3rStreamConfig(new_geometry_threshold=1e9, **base))
    assert [o.is_keyframe for o in never.stream(frames)] == [True, False, False, False]
    assert never.memory_tokens == 6
    picky = Must3rStreamingSession(model, Must3rStreamConfig(new_geometry_threshold=0.0, **{**base, "min_keyframe_conf": 1e9}))
    assert [o.is_keyframe for o in picky.stream(frames)] == [True, False, False, False]


def test_inputs_and_config_errors():
    model = _tiny()
    session = Must3rStreamingSession(model, Must3rStreamConfig(res=48, feature_levels=(0,)))
    out = session.add_frame(torch.zeros(3, 32, 32))  # already normalised
    assert out.true_shape == (32, 32) and out.to_orig is None
    out = session.add_frame(np.zeros((64, 48, 3), dtype=np.uint8))  # portrait, other size
    assert out.true_shape == (48, 32) and out.to_orig is not None
    with pytest.raises(InputError):
        session.add_frame(torch.zeros(32, 32, 3, dtype=torch.float32))
    with pytest.raises(InputError):
        Must3rStreamConfig(max_keyframes=0)
    with pytest.raises(InputError):
        Must3rStreamConfig(keyframe_interval=0)
    session.reset()
    assert session.memory is None and session.frame_count == 0


def test_default_res_is_the_models_training_size():
    model = _tiny()  # trained size 64
    session = Must3rStreamingSession(model, Must3rStreamConfig(feature_levels=(0,)))
    out = session.add_frame(np.zeros((300, 450, 3), dtype=np.uint8))
    assert out.true_shape == (32, 64)  # long side 64, short side 43 cropped to 32
