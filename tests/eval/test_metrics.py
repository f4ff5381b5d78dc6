import math

import numpy as np
import pytest

from threeam.errors import InputError
from threeam.eval.metrics import (Averaging, TrackScores, aggregate, aggregate_davis, davis_statistics,
                                  davis_track, frame_iou, score_id_maps, score_track)


def masks(h: int, w: int, *frames: list[tuple[int, int]]) -> np.ndarray:
    """(T, H, W) bool stack; frame t has exactly the listed (y, x) pixels set."""
    out = np.zeros((len(frames), h, w), dtype=bool)
    for t, pixels in enumerate(frames):
        for y, x in pixels:
            out[t, y, x] = True
    return out


def test_hand_made_track() -> None:
    gt = masks(2, 2, [(0, 0)], [], [(1, 1)], [])
    pred = masks(2, 2, [(0, 0), (0, 1)], [], [], [(0, 0)])
    # IoU_t: 1/2 (half overlap), 1 (empty on empty), 0 (missed), 0 (false positive on empty GT)
    np.testing.assert_allclose(frame_iou(pred, gt), [0.5, 1.0, 0.0, 0.0])
    s = score_track(pred, gt, name="t")
    assert s.n_frames == 4 and s.n_present == 2
    assert s.iou == pytest.approx((0.5 + 1 + 0 + 0) / 4)
    assert s.tracking_recall == pytest.approx((0.5 + 0) / 2)
    assert s.accuracy == pytest.approx(0.5)
    assert s.false_positive_rate == pytest.approx(1 / 2)
    assert s.to_dict()["tracking_recall"] == pytest.approx(0.25)


def test_all_absent_track() -> None:
    gt = masks(3, 3, [], [], [])
    pred = masks(3, 3, [], [], [(2, 2)])
    s = score_track(pred, gt)
    assert s.iou == pytest.approx(2 / 3)
    assert math.isnan(s.tracking_recall) and math.isnan(s.accuracy)
    assert s.false_positive_rate == pytest.approx(1 / 3)


def test_never_overlapping_prediction() -> None:
    gt = masks(3, 3, [(0, 0)], [(0, 1), (1, 1)], [(2, 2)])
    pred = masks(3, 3, [(2, 2)], [(0, 0)], [(1, 0)])
    s = score_track(pred, gt)
    assert s.iou == 0 and s.tracking_recall == 0
    assert math.isnan(s.accuracy)  # no frame where the object was found
    assert math.isnan(s.false_positive_rate)  # no GT-absent frame


def test_empty_on_empty_scores_one() -> None:
    e = masks(4, 5, [], [])
    s = score_track(e, e)
    np.testing.assert_array_equal(s.frame_iou, [1.0, 1.0])
    assert s.iou == 1.0 and s.false_positive_rate == 0.0


def test_pooled_and_per_track_differ() -> None:
    # track A: one present frame, perfect
    a = score_track(masks(2, 2, [(0, 0)]), masks(2, 2, [(0, 0)]), name="a")
    # track B: three present frames with IoU 0, 0 and 1/2; one absent frame predicted empty
    gt_b = masks(2, 2, [(0, 0)], [(0, 0)], [(0, 0)], [])
    pr_b = masks(2, 2, [(1, 1)], [], [(0, 0), (1, 0)], [])
    b = score_track(pr_b, gt_b, name="b")
    np.testing.assert_allclose(b.frame_iou, [0, 0, 0.5, 1])
    # track C: object never visible, one false positive out of two frames
    c = score_track(masks(2, 2, [], [(0, 1)]), masks(2, 2, [], []), name="c")

    per = aggregate([a, b, c])  # default is per-track
    assert per.averaging == "per_track"
    assert per.iou == pytest.approx((1 + (0 + 0 + 0.5 + 1) / 4 + 0.5) / 3)
    assert per.tracking_recall == pytest.approx((1 + 0.5 / 3) / 2)  # C is undefined -> left out
    assert per.accuracy == pytest.approx((1 + 0.5) / 2)
    assert per.false_positive_rate == pytest.approx((0 + 1 / 2) / 2)  # A has no absent frame
    assert (per.n_tracks, per.n_frames, per.n_present_frames) == (3, 7, 4)

    pooled = aggregate([a, b, c], averaging="pooled")
    assert pooled.iou == pytest.approx((1 + 0 + 0 + 0.5 + 1 + 1 + 0) / 7)
    assert pooled.tracking_recall == pytest.approx((1 + 0 + 0 + 0.5) / 4)
    assert pooled.accuracy == pytest.approx((1 + 0.5) / 2)
    assert pooled.false_positive_rate == pytest.approx(1 / 3)
    assert pooled.tracking_recall != pytest.approx(per.tracking_recall)
    assert pooled.iou != pytest.approx(per.iou)
    assert aggregate([a, b, c], averaging=Averaging.POOLED) == pooled
    d = pooled.to_dict()
    assert d["Tracking Recall"] == pooled.tracking_recall and d["averaging"] == "pooled"


def test_aggregate_empty_and_bad_option() -> None:
    r = aggregate([])
    assert math.isnan(r.iou) and r.n_tracks == 0
    with pytest.raises(InputError, match="averaging"):
        aggregate([], averaging="mean")


def test_frame_selection_and_id_maps() -> None:
    gt = masks(2, 2, [(0, 0)], [(0, 0)], [(0, 0)])
    pred = masks(2, 2, [(0, 0)], [], [(0, 0)])
    assert score_track(pred, gt, frames=[1, 2]).tracking_recall == pytest.approx(0.5)
    assert score_track(pred, gt, frames=np.array([True, False, True])).tracking_recall == 1.0
    assert score_track(pred, gt, frames=[]).n_frames == 0
    with pytest.raises(InputError, match="out of range"):
        score_track(pred, gt, frames=[3])

    gt_ids = np.zeros((2, 3, 3), np.uint8)
    gt_ids[:, 0, 0] = 1
    gt_ids[0, 2, 2] = 7
    pr_ids = np.zeros_like(gt_ids)
    pr_ids[:, 0, 0] = 7  # wrong id on object 1's pixel
    pr_ids[0, 2, 2] = 7
    tracks = score_id_maps(pr_ids, gt_ids, name="seq")
    assert [t.name for t in tracks] == ["seq/1", "seq/7"]
    assert tracks[0].iou == 0
    np.testing.assert_allclose(tracks[1].frame_iou, [0.5, 0.0])
    assert tracks[1].false_positive_rate == 1.0


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="differs"):
        score_track(np.zeros((2, 3, 3), bool), np.zeros((2, 3, 4), bool))
    with pytest.raises(InputError, match="boolean"):
        score_track(np.full((1, 2, 2), 0.5), np.zeros((1, 2, 2), bool))
    with pytest.raises(InputError, match="boolean"):
        score_track(np.full((1, 2, 2), 3), np.zeros((1, 2, 2), bool))
    with pytest.raises(InputError, match="shape"):
        score_track(np.zeros((1, 1, 2, 2), bool), np.zeros((1, 1, 2, 2), bool))
    with pytest.raises(InputError, match="integer"):
        score_id_maps(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2), bool))
    with pytest.raises(InputError):
        TrackScores("x", np.zeros(3), np.zeros(2, bool), np.zeros(3, bool))


def test_davis_statistics_by_hand() -> None:
    v = np.array([1, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    mean, recall, decay = davis_statistics(v)
    assert mean == pytest.approx(0.25) and recall == pytest.approx(0.25)
    # bin edges round(linspace(1, 8, 5)) - 1 = [0, 2, 3, 5, 7]; first bin v[0:3], last bin v[5:8]
    assert decay == pytest.approx(2 / 3)
    # long sequences use plain integer edges (no uint8 wrap-around)
    long = np.r_[np.ones(300), np.zeros(300)]
    assert davis_statistics(long)[2] == pytest.approx(1.0)


def test_aggregate_davis_by_hand() -> None:
    gt = masks(4, 4, [(1, 1)], [(1, 1)], [])
    good = davis_track(gt, gt, name="good")
    miss = davis_track(np.zeros_like(gt), gt, name="miss")
    np.testing.assert_array_equal(good.j, [1, 1, 1])
    np.testing.assert_array_equal(good.f, [1, 1, 1])
    np.testing.assert_array_equal(miss.j, [0, 0, 1])
    np.testing.assert_array_equal(miss.f, [0, 0, 1])
    s = aggregate_davis([good, miss])
    assert s.j_mean == pytest.approx((1 + 1 / 3) / 2)
    assert s.f_mean == pytest.approx((1 + 1 / 3) / 2)
    assert s.jf_mean == pytest.approx((1 + 1 / 3) / 2)
    assert s.j_recall == pytest.approx((1 + 1 / 3) / 2)
    assert s.n_objects == 2 and s.to_dict()["J&F-Mean"] == s.jf_mean
    # DAVIS semi-supervised frame selection drops the first and last frame
    assert davis_track(np.zeros_like(gt), gt, frames=[1]).j.tolist() == [0.0]
