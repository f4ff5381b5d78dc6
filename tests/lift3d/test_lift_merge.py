"""Merging rules: 3D overlap on mutually seen vertices, the 2D temporal-overlap guard, union-find."""
from __future__ import annotations

import numpy as np

from threeam.lift3d.config import get_lift_config
from threeam.lift3d.fragments import Fragment, Overlap2D
from threeam.lift3d.merge import build_instances, candidate_pairs, merge_fragments, pair_scores, union_find

V = 100
CFG = get_lift_config("paper")


def frag(i, keyframe, verts, frames, **kw):
    return Fragment(id=i, keyframe=keyframe, vertices=np.asarray(verts, dtype=np.int64),
                    frames=np.asarray(frames, dtype=np.int64), score=kw.get("score", 0.9),
                    stability=kw.get("stability", 0.9), consistency=kw.get("consistency", 0.9))


def seen(*ranges):
    m = np.zeros(V, bool)
    for a, b in ranges:
        m[a:b] = True
    return m


def masks_2d(pairs, n_ids):
    """Overlap2D from {frame: [(id, mask (P,) bool)]}."""
    ov = Overlap2D()
    for t, items in pairs.items():
        ov.add(t, np.array([i for i, _ in items]), np.stack([m for _, m in items]))
    return ov.matrix(n_ids)


def test_front_and_back_views_of_one_object_merge_on_mutually_seen_vertices():
    a = frag(0, 0, range(0, 60), [0, 1, 2])      # front + sides
    b = frag(1, 10, range(40, 100), [10, 11, 12])  # back + sides
    ws = {0: seen((0, 60)), 10: seen((40, 100))}
    pairs = candidate_pairs([a, b], V)
    sc = pair_scores([a, b], pairs, ws, masks_2d({}, 2))
    assert sc.inter.tolist() == [20]
    plain_iou = 20 / 100
    assert plain_iou < CFG.merge_iou_no_shared < sc.iou3d[0] == 1.0
    inst, _ = merge_fragments([a, b], V, ws, masks_2d({}, 2), CFG)
    assert len(inst) == 1 and inst[0].vertices.tolist() == list(range(100))
    # the same two sets, both fully seen by both windows, are two objects
    ws_all = {0: seen((0, 100)), 10: seen((0, 100))}
    inst2, sc2 = merge_fragments([a, b], V, ws_all, masks_2d({}, 2), CFG)
    assert sc2.iou3d[0] == 0.2 and len(inst2) == 2


def test_shared_frames_need_2d_overlap():
    left, right = np.r_[np.ones(32, bool), np.zeros(32, bool)], np.r_[np.zeros(32, bool), np.ones(32, bool)]
    a = frag(0, 0, range(0, 50), [0, 1, 2, 3, 4])
    b = frag(1, 2, range(0, 50), [2, 3, 4, 5, 6])   # same 3D set, same 2D masks on frames 2-4
    c = frag(2, 2, range(0, 50), [2, 3, 4, 5, 6])   # same 3D set, disjoint 2D masks with a
    ws = {0: seen((0, 100)), 2: seen((0, 100))}
    ov = masks_2d({t: [(0, left), (1, left), (2, right)] for t in (2, 3, 4)}, 3)
    sc = pair_scores([a, b, c], candidate_pairs([a, b, c], V), ws, ov)
    got = {(int(i), int(j)): (s, m) for i, j, s, m in zip(sc.a, sc.b, sc.shared, sc.iou2d)}
    assert got[(0, 1)] == (3, 1.0) and got[(0, 2)] == (3, 0.0) and got[(1, 2)] == (5, 0.0)
    inst, _ = merge_fragments([a, b, c], V, ws, ov, CFG)
    groups = sorted(sorted(i.fragments) for i in inst)
    assert groups == [[0, 1], [2]]


def test_subset_merges_by_precision_only_with_a_passing_2d_test():
    a = frag(0, 0, range(0, 50), [0, 1, 2])
    d = frag(1, 1, range(0, 20), [1, 2, 3])
    ws = {0: seen((0, 100)), 1: seen((0, 100))}
    m_a = np.r_[np.ones(10, bool), np.zeros(6, bool)]
    m_d = np.r_[np.ones(6, bool), np.zeros(10, bool)]  # IoU 0.6 on frames 1, 2
    ov = masks_2d({1: [(0, m_a), (1, m_d)], 2: [(0, m_a), (1, m_d)]}, 2)
    sc = pair_scores([a, d], candidate_pairs([a, d], V), ws, ov)
    assert sc.iou3d[0] == 0.4 and sc.precision3d[0] == 1.0 and abs(sc.iou2d[0] - 0.6) < 1e-6
    assert len(merge_fragments([a, d], V, ws, ov, CFG)[0]) == 1
    # without common frames only the 3D IoU counts (0.4 < 0.5): no merge
    d_late = frag(1, 9, range(0, 20), [9, 10])
    ws[9] = seen((0, 100))
    assert len(merge_fragments([a, d_late], V, ws, masks_2d({}, 2), CFG)[0]) == 2
    # a stricter precision threshold turns the first merge off
    strict = CFG.replace(merge_precision=1.0)
    assert len(merge_fragments([a, d], V, ws, ov, strict)[0]) == 2


def test_disjoint_fragments_are_never_candidates():
    a, b = frag(0, 0, range(0, 30), [0]), frag(1, 0, range(30, 60), [0])
    assert candidate_pairs([a, b], V)[0].size == 0


def test_union_find_is_transitive_and_labels_in_order():
    labels = union_find(6, np.array([1, 3, 0]), np.array([2, 4, 1]))
    assert labels.tolist() == [0, 0, 0, 1, 1, 2]


def test_instance_keeps_vertices_voted_by_enough_of_the_fragments_that_saw_them():
    fr = [frag(0, 0, range(0, 40), [0]), frag(1, 1, range(0, 40), [1]), frag(2, 2, range(0, 50), [2])]
    ws = {k: seen((0, 60)) for k in range(3)}
    labels = np.zeros(3, dtype=np.int64)
    lenient = build_instances(fr, labels, ws, CFG.replace(instance_vote=0.3))[0]
    strict = build_instances(fr, labels, ws, CFG.replace(instance_vote=0.5))[0]
    assert lenient.vertices.tolist() == list(range(50))  # 40..49: 1 of 3 >= 0.3 * 3
    assert strict.vertices.tolist() == list(range(40))
    assert lenient.keyframes == [0, 1, 2] and abs(lenient.score - 0.9) < 1e-12


def test_overlap2d_flush_keeps_later_frames_until_asked():
    ov = Overlap2D()
    m = np.ones((1, 4), bool)
    ov.add(0, np.array([0]), m)
    ov.add(5, np.array([0]), m)
    ov.add(0, np.array([1]), m)
    ov.flush(before=3)
    ov.add(5, np.array([1]), np.array([[True, True, False, False]]))
    M = ov.matrix(2)
    assert abs(M[0, 1] - 1.5) < 1e-6  # frame 0: IoU 1, frame 5: IoU 0.5


def test_cannot_link_stops_a_two_object_mask_from_chaining_both_objects():
    a = frag(0, 0, range(0, 30), [0, 1, 2])       # object 1
    b = frag(1, 0, range(30, 60), [0, 1, 2])      # object 2, same frames, disjoint 2D masks
    g = frag(2, 1, range(0, 60), [1, 2, 3])       # a mask over both objects
    ws = {0: seen((0, 100)), 1: seen((0, 100))}
    m1 = np.r_[np.ones(8, bool), np.zeros(8, bool)]
    m2 = np.r_[np.zeros(8, bool), np.ones(8, bool)]
    m1[8:10] = True  # object 1 a bit larger: g overlaps it more
    ov = masks_2d({t: [(0, m1), (1, m2), (2, np.ones(16, bool))] for t in (1, 2)}, 3)
    loose = CFG.replace(cannot_link_2d_iou=0.0, merge_2d_iou=0.4, merge_precision=0.4)
    assert len(merge_fragments([a, b, g], V, ws, ov, loose)[0]) == 1  # chained into one
    inst, _ = merge_fragments([a, b, g], V, ws, ov, loose.replace(cannot_link_2d_iou=0.1))
    groups = sorted(sorted(i.fragments) for i in inst)
    assert groups == [[0, 2], [1]]  # g joins the object it overlaps most; object 2 stays apart
