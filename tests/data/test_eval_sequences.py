import numpy as np
import pytest

from threeam.data.eval_sequences import (EvalSequenceConfig, build_eval_sequences, read_eval_sequences,
                                         selected_subset, visibility_segments, write_eval_sequences)
from threeam.data.types import InMemoryScene, PosedFrame
from threeam.errors import InputError


def _scene(visible_px: dict[int, list[int]], n: int = 20, unknown=()) -> InMemoryScene:
    """Object k covers visible_px[k][t] pixels (top-left rows) of a 20x20 frame t."""
    frames = []
    for t in range(n):
        ids = np.zeros((20, 20), np.int32)
        for k, px in visible_px.items():
            flat = ids.reshape(-1)
            free = np.nonzero(flat == 0)[0][: px[t]]
            flat[free] = k
        frames.append(PosedFrame(np.zeros((20, 20, 3), np.uint8), None, np.eye(3), None,
                                 None if t in unknown else ids, name=str(t)))
    return InMemoryScene("toy", frames)


def test_visibility_segments():
    assert visibility_segments(np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1], bool)) == [[1, 2], [5, 5], [7, 9]]
    assert visibility_segments(np.zeros(4, bool)) == []


def test_conditioning_frame_segments_and_selected_subset():
    a = [30] * 7 + [0] * 5 + [30] * 6 + [50, 30]  # two long runs: 0-6 and 12-19; largest mask at 18
    b = [0] * 10 + [40] * 3 + [0] * 7  # one short run
    c = [5] * 20  # always below min_mask_pixels
    s = _scene({1: a, 2: b, 3: c})
    cfg = EvalSequenceConfig(min_mask_pixels=10, l_min=5, min_segments=2)
    seqs = build_eval_sequences(s, cfg)
    assert [q.object_id for q in seqs] == [1, 2]
    q1, q2 = seqs
    assert q1.cond_frame == 18 and q1.cond_area == 50
    assert q1.segments == [[0, 6], [12, 19]] and q1.selected
    assert q1.forward_frames == [18, 19] and q1.backward_frames[:3] == [18, 17, 16] and q1.backward_frames[-1] == 0
    assert q2.all_segments == [[10, 12]] and q2.segments == [] and not q2.selected
    assert selected_subset(seqs) == [q1]
    # "longer than l_min" is strict: a 7-frame run does not count for l_min = 7
    strict = build_eval_sequences(s, EvalSequenceConfig(min_mask_pixels=10, l_min=7, min_segments=2))
    assert not strict[0].selected and strict[0].segments == [[12, 19]]


def test_unknown_frames_are_listed_and_not_visible():
    a = [30] * 20
    s = _scene({1: a}, unknown=(9, 10))
    (q,) = build_eval_sequences(s, EvalSequenceConfig(min_mask_pixels=10, l_min=3))
    assert q.unannotated == [9, 10]
    assert q.all_segments == [[0, 8], [11, 19]] and q.selected


def test_json_roundtrip(tmp_path, small_scene):
    seqs = build_eval_sequences(small_scene, EvalSequenceConfig(min_mask_pixels=30, l_min=2))
    assert seqs and any(q.selected for q in seqs)
    p = tmp_path / "seqs.json"
    write_eval_sequences(p, seqs, EvalSequenceConfig())
    back = read_eval_sequences(p)
    assert back == seqs
    p.write_text('{"format": "other"}')
    with pytest.raises(InputError, match="seqs.json"):
        read_eval_sequences(p)
