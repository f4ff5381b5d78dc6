"""Which frames SAM2Base uses as memory (spatial memories and object pointers), forward and reverse."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sam2_small_build import build_small
from threeam.models.sam2.sam2_base import (
    get_1d_sine_pe,
    memory_frame_indices,
    obj_ptr_frame_offsets,
    select_closest_cond_frames,
)


def test_recent_frames_forward_stride_1():
    assert memory_frame_indices(10, 7) == [(1, 4), (2, 5), (3, 6), (4, 7), (5, 8), (6, 9)]


def test_recent_frames_reverse_stride_1():
    assert memory_frame_indices(10, 7, track_in_reverse=True) == [(1, 16), (2, 15), (3, 14), (4, 13), (5, 12), (6, 11)]


def test_recent_frames_with_stride():
    # the adjacent frame always, the rest from every 5th frame
    assert memory_frame_indices(12, 7, stride=5) == [(1, -10), (2, -5), (3, 0), (4, 5), (5, 10), (6, 11)]
    assert memory_frame_indices(12, 7, stride=5, track_in_reverse=True) == [(1, 35), (2, 30), (3, 25), (4, 20),
                                                                            (5, 15), (6, 13)]
    assert memory_frame_indices(15, 4, stride=5) == [(1, 5), (2, 10), (3, 14)]


def test_closest_conditioning_frames():
    cond = {t: f"out{t}" for t in (0, 5, 10, 20, 30)}
    sel, unsel = select_closest_cond_frames(12, cond, 3)
    assert sorted(sel) == [5, 10, 20] and sorted(unsel) == [0, 30]
    sel, unsel = select_closest_cond_frames(12, cond, -1)
    assert sorted(sel) == [0, 5, 10, 20, 30] and unsel == {}
    sel, _ = select_closest_cond_frames(40, cond, 2)  # nothing after: the two closest before
    assert sorted(sel) == [20, 30]


def test_object_pointer_frames_stop_at_video_edges():
    assert obj_ptr_frame_offsets(3, 16, 20) == [(1, 2), (2, 1), (3, 0)]
    assert obj_ptr_frame_offsets(18, 16, 20, track_in_reverse=True) == [(1, 19)]
    assert obj_ptr_frame_offsets(30, 4, 40) == [(1, 29), (2, 28), (3, 27)]


def test_sine_pe():
    pe = get_1d_sine_pe(torch.tensor([0.0, 0.5]), dim=8)
    assert pe.shape == (2, 8)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1]))
    torch.testing.assert_close(pe[1, 0], torch.tensor(0.5).sin())


class _Recorder(nn.Module):
    """Replaces memory attention: records its inputs and returns the current features."""

    def forward(self, curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        self.memory, self.memory_pos, self.num_obj_ptr_tokens = memory, memory_pos, num_obj_ptr_tokens
        return curr[0]


@pytest.fixture(scope="module")
def model(golden_dir, fill):
    m, _, _ = build_small(golden_dir, fill)
    return m


def _fake_out(t: int, c_mem: int = 16, c: int = 64) -> dict:
    """A memory-bank entry whose features are the constant t (so the memory reveals its frames)."""
    return {"maskmem_features": torch.full((1, c_mem, 16, 16), float(t)),
            "maskmem_pos_enc": [torch.zeros(1, c_mem, 16, 16)],
            "obj_ptr": torch.full((1, c), float(t))}


@pytest.mark.parametrize("reverse", [False, True])
def test_memory_assembly(model, reverse):
    rec = _Recorder()
    orig = model.memory_attention
    model.memory_attention = rec
    try:
        num_frames = 30
        cond_t = 14
        frame = 12 if reverse else 16
        step = 1 if reverse else -1  # direction of "the past"
        out_dict = {"cond_frame_outputs": {cond_t: _fake_out(cond_t)},
                    "non_cond_frame_outputs": {t: _fake_out(t) for t in range(num_frames) if t != cond_t}}
        feats = [torch.zeros(256, 1, 64)]
        pos = [torch.zeros(256, 1, 64)]
        with torch.no_grad():
            model._prepare_memory_conditioned_features(frame, False, feats, pos, [(16, 16)], out_dict, num_frames,
                                                       track_in_reverse=reverse)
        mem, mem_pos, n_ptr = rec.memory, rec.memory_pos, rec.num_obj_ptr_tokens
        spatial = mem[: mem.shape[0] - n_ptr, 0, 0].reshape(-1, 256)[:, 0].tolist()
        # conditioning frame first, then the six recent frames, oldest first (frame - 6*dir ... frame - dir)
        recent = [frame + step * d for d in range(6, 0, -1)]
        expect = [cond_t] + [t if t != cond_t else None for t in recent]
        assert spatial == [float(t) for t in expect if t is not None]
        # temporal encodings: cond frame uses the last table row, the adjacent frame row 0
        tpos = model.maskmem_tpos_enc[:, 0, 0]
        assert torch.allclose(mem_pos[0, 0], tpos[6])
        assert torch.allclose(mem_pos[mem.shape[0] - n_ptr - 1, 0], tpos[0])
        # pointers: the cond frame (if in the past) and up to 15 earlier frames, each split into 4 tokens
        ptr_frames = mem[mem.shape[0] - n_ptr:, 0, 0].reshape(-1, 4)[:, 0].tolist()
        past = [frame + step * d for d in range(1, 16) if 0 <= frame + step * d < num_frames]
        assert ptr_frames[0] == cond_t  # conditioning pointer first
        assert ptr_frames[1:] == [float(t) for t in past if t != cond_t]
        assert n_ptr == 4 * len(ptr_frames)
    finally:
        model.memory_attention = orig


def test_future_conditioning_pointer_is_ignored(model):
    rec = _Recorder()
    orig = model.memory_attention
    model.memory_attention = rec
    try:
        out_dict = {"cond_frame_outputs": {0: _fake_out(0), 9: _fake_out(9)},
                    "non_cond_frame_outputs": {t: _fake_out(t) for t in range(1, 5)}}
        with torch.no_grad():
            model._prepare_memory_conditioned_features(5, False, [torch.zeros(256, 1, 64)], [torch.zeros(256, 1, 64)],
                                                       [(16, 16)], out_dict, 10)
        n_ptr = rec.num_obj_ptr_tokens
        ptr_frames = rec.memory[rec.memory.shape[0] - n_ptr:, 0, 0].reshape(-1, 4)[:, 0].tolist()
        assert ptr_frames == [0.0, 4.0, 3.0, 2.0, 1.0]  # frame 9 is a future conditioning frame: no pointer
        spatial = rec.memory[: rec.memory.shape[0] - n_ptr, 0, 0].reshape(-1, 256)[:, 0].tolist()
        assert spatial == [0.0, 9.0, 1.0, 2.0, 3.0, 4.0]  # but its spatial memory is used
    finally:
        model.memory_attention = orig
