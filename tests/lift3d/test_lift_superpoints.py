"""The superpoint vote: snapping, contested superpoints, duplicates, minimum size."""
from __future__ import annotations

import numpy as np

from threeam.lift3d.config import get_lift_config
from threeam.lift3d.superpoints import compact_superpoints, superpoint_vote

V = 40
SP = np.repeat(np.array([7, 3, 11, 5]), 10)  # sparse ids, as ScanNet's segIndices: s0..s3 = 10 vertices each
CFG = get_lift_config("paper", min_instance_vertices=5)


def r(a, b):
    return np.arange(a, b, dtype=np.int64)


def vote(instances, conf, cfg=CFG):
    out, kept = superpoint_vote([np.asarray(i, dtype=np.int64) for i in instances], np.asarray(conf, float), SP, V, cfg)
    return [o.tolist() for o in out], kept.tolist()


def test_snap_fills_majority_superpoints_and_drops_minority_ones():
    out, kept = vote([np.r_[r(0, 8), r(10, 13)]], [0.9])
    assert out == [list(range(10))] and kept == [0]


def test_contested_superpoint_goes_to_the_higher_coverage():
    a = np.r_[r(0, 10), r(10, 19)]       # s0 1.0, s1 0.9
    b = np.r_[r(10, 16), r(20, 30)]       # s1 0.6, s2 1.0
    out, kept = vote([a, b], [0.5, 0.9])
    assert out == [list(range(20)), list(range(20, 30))] and kept == [0, 1]


def test_ties_go_to_the_higher_confidence_or_the_smaller_instance():
    a = np.r_[r(0, 10), r(10, 18)]        # s0 1.0, s1 0.8 (claims 20 vertices)
    b = r(12, 20)                          # s1 0.8 (claims 10 vertices)
    cfg = CFG.replace(min_kept_fraction=0.0)
    out, kept = vote([a, b], [0.4, 0.9], cfg)
    assert out == [list(range(10)), list(range(10, 20))]  # equal coverage: confidence 0.9 wins
    out, kept = vote([a, b], [0.9, 0.4], cfg)
    assert out == [list(range(20))] and kept == [0]       # b keeps nothing and has < 5 vertices
    out, kept = vote([a, b], [0.9, 0.4], cfg.replace(superpoint_priority="smaller"))
    assert out == [list(range(10)), list(range(10, 20))]  # the smaller claimant wins


def test_a_duplicate_is_dropped_and_its_superpoints_are_voted_again():
    a = np.r_[r(0, 10), r(10, 19)]                # s0 1.0, s1 0.9
    d = np.r_[r(10, 20), r(20, 26), r(30, 36)]    # s1 1.0, s2 0.6, s3 0.6
    b = r(20, 40)                                 # s2 1.0, s3 1.0
    out, kept = vote([a, d, b], [0.5, 0.9, 0.8])
    # d wins s1 but loses s2, s3 to b: it keeps 10 of its 30 claimed vertices < 0.5 -> dropped,
    # and s1 goes to a, its other claimant
    assert kept == [0, 2]
    assert out == [list(range(20)), list(range(20, 40))]
    flat = np.concatenate([np.array(o) for o in out])
    assert len(flat) == len(np.unique(flat))  # a partition


def test_minimum_size_and_empty_input():
    out, kept = vote([r(0, 10)], [0.9], CFG.replace(min_instance_vertices=11))
    assert out == [] and kept == []
    out, kept = vote([], [])
    assert out == [] and kept == []


def test_compact_superpoints():
    np.testing.assert_array_equal(compact_superpoints(np.array([9, 2, 9, 4]), 4), [2, 0, 2, 1])
    np.testing.assert_array_equal(compact_superpoints(None, 3), [0, 1, 2])
