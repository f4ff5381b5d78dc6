"""ScanNet instance AP: hand-computed vectors and the benchmark's matching rules."""
from __future__ import annotations

import math

import numpy as np
import pytest

from threeam.errors import InputError
from threeam.eval.instance_ap import (BENCHMARKS, OVERLAPS, APConfig, InstanceAPEvaluator, ScenePrediction,
                                      average_precision, evaluate_instances, evaluate_submission, gt_instances,
                                      read_gt_file, read_gt_folder, read_submission, write_gt_file,
                                      write_submission)

CHAIR200 = 2      # ScanNet200 "chair"
TABLE200 = 4      # ScanNet200 "table"
WALL = 1          # wall in both label spaces


def blocks(*sizes_ids):
    """GT ids from consecutive (size, id) blocks; returns ids and the slices of each block."""
    ids, slices, start = [], [], 0
    for size, gid in sizes_ids:
        ids.append(np.full(size, gid, dtype=np.int64))
        slices.append(slice(start, start + size))
        start += size
    return np.concatenate(ids), slices


def mask(n, *parts):
    m = np.zeros(n, dtype=bool)
    for p in parts:
        m[p] = True
    return m


def pred(masks, scores, labels=None):
    masks = np.asarray(masks, dtype=bool).reshape(len(masks), -1) if len(masks) else np.zeros((0, 0), bool)
    labels = np.full(len(scores), CHAIR200) if labels is None else np.asarray(labels)
    return ScenePrediction(masks, labels, np.asarray(scores, dtype=float))


def evaluate_one(gt, p, benchmark="esam", **kw):
    return evaluate_instances({"s": gt}, {"s": p}, benchmark, **kw)


# ----------------------------------------------------------------------------- constants
def test_thresholds_are_numpys_nine_plus_025():
    assert len(OVERLAPS) == 10
    assert np.array_equal(np.asarray(OVERLAPS[:9]), np.arange(0.5, 0.95, 0.05))
    assert OVERLAPS[-1] == 0.25
    assert BENCHMARKS["esam"].agnostic and len(BENCHMARKS["esam"].class_ids) == 198
    assert 1 not in BENCHMARKS["esam"].class_ids and 3 not in BENCHMARKS["esam"].class_ids
    assert BENCHMARKS["sai3d"].class_ids == (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)


# ----------------------------------------------------------------------------- AP formula
def test_equal_confidences_give_r_times_one_plus_p_over_two():
    y = [1] * 6 + [0] * 4
    ap = average_precision(y, [0.5] * 10, hard_false_negatives=2)
    P, R = 6 / 10, 6 / 8
    assert ap == pytest.approx(R * (1 + P) / 2)
    assert ap == pytest.approx(0.600)


def test_ranked_scores_vector():
    y = [1] * 6 + [0] * 4
    ap = average_precision(y, [.9, .8, .7, .6, .5, .4, .95, .3, .2, .1], hard_false_negatives=2)
    assert ap == pytest.approx(0.49732, abs=5e-6)


def test_ap_without_entries_is_zero_and_perfect_is_one():
    assert average_precision([], [], 3) == 0.0
    assert average_precision([1, 1], [0.2, 0.7], 0) == pytest.approx(1.0)
    # one FP above one TP: P=(.5, 0, 1), R=(1, 0, 0) -> .5 * (1 - 0) / 2
    assert average_precision([1, 0], [0.5, 0.9], 0) == pytest.approx(0.25)


# ----------------------------------------------------------------------------- the two vectors end to end
def _six_four_two_scene(scores_tp, scores_fp):
    """8 GT chairs: 6 predicted exactly (TP at every threshold), 2 big ones missed, each hosting two
    small disjoint predictions of IoU 150/1000 (FP at every threshold)."""
    spec = [(120, CHAIR200 * 1000 + i + 1) for i in range(6)] + [(1000, CHAIR200 * 1000 + 7),
                                                                  (1000, CHAIR200 * 1000 + 8)]
    gt, sl = blocks(*spec)
    n = len(gt)
    masks = [mask(n, sl[i]) for i in range(6)]
    for big in (sl[6], sl[7]):
        masks.append(mask(n, slice(big.start, big.start + 150)))
        masks.append(mask(n, slice(big.start + 200, big.start + 350)))
    return gt, pred(masks, list(scores_tp) + list(scores_fp))


def test_evaluator_equal_confidences_six_tp_four_fp_two_missed():
    gt, p = _six_four_two_scene([0.5] * 6, [0.5] * 4)
    r = evaluate_one(gt, p)
    assert r.ap == pytest.approx(0.6) and r.ap50 == pytest.approx(0.6) and r.ap25 == pytest.approx(0.6)
    assert r.table.shape == (1, 10) and np.allclose(r.table, 0.6)


def test_evaluator_ranked_vector():
    gt, p = _six_four_two_scene([.9, .8, .7, .6, .5, .4], [.95, .3, .2, .1])
    r = evaluate_one(gt, p)
    assert r.ap == pytest.approx(0.49732, abs=5e-6)
    assert r.ap50 == pytest.approx(0.49732, abs=5e-6) and r.ap25 == pytest.approx(0.49732, abs=5e-6)


# ----------------------------------------------------------------------------- void / strict IoU
def test_prediction_entirely_on_void_is_not_a_false_positive():
    gt, sl = blocks((100, CHAIR200 * 1000 + 1), (300, WALL * 1000 + 2), (200, 0))
    n = len(gt)
    on_wall = pred([mask(n, sl[0]), mask(n, sl[1])], [0.5, 0.9])
    assert evaluate_one(gt, on_wall).ap == pytest.approx(1.0)
    on_unannotated = pred([mask(n, sl[0]), mask(n, sl[2])], [0.5, 0.9])
    assert evaluate_one(gt, on_unannotated).ap == pytest.approx(1.0)


def test_low_iou_prediction_on_an_object_is_a_false_positive():
    gt, sl = blocks((100, CHAIR200 * 1000 + 1), (400, TABLE200 * 1000 + 2), (100, TABLE200 * 1000 + 3))
    n = len(gt)
    # the table (id 2) is predicted exactly at 0.5 and a 120-vertex piece of it at 0.9 (IoU .3)
    # chair and table 3 predicted exactly at 0.4 / 0.45
    p = pred([mask(n, sl[1]), mask(n, slice(sl[1].start, sl[1].start + 120)), mask(n, sl[0]), mask(n, sl[2])],
             [0.5, 0.9, 0.4, 0.45])
    r = evaluate_one(gt, p)
    # sorted: .4 TP, .45 TP, .5 TP, .9 FP -> P = (.75, 2/3, .5, 0, 1), R = (1, 2/3, 1/3, 0, 0)
    P = np.array([3 / 4, 2 / 3, 1 / 2, 0.0, 1.0])
    R = np.array([1.0, 2 / 3, 1 / 3, 0.0, 0.0])
    expected = sum(P[k] * ((R[k - 1] if k else R[0]) - (R[k + 1] if k + 1 < len(R) else 0.0)) / 2
                   for k in range(len(P)))
    assert r.table[0, 0] == pytest.approx(expected)
    # at 0.25 the piece (IoU .3 > .25) duplicates the table match: the GT keeps .9, the FP gets .5
    # sorted: .4 TP, .45 TP, .5 FP, .9 TP -> the FP ranks below every TP but one
    P25 = np.array([3 / 4, 2 / 3, 1 / 2, 1.0, 1.0])
    R25 = np.array([1.0, 2 / 3, 1 / 3, 1 / 3, 0.0])
    exp25 = sum(P25[k] * ((R25[k - 1] if k else R25[0]) - (R25[k + 1] if k + 1 < len(R25) else 0.0)) / 2
                for k in range(len(P25)))
    assert r.ap25 == pytest.approx(exp25)
    assert r.ap25 > r.table[0, 0]


def test_void_vertices_count_against_iou_and_iou_must_exceed_threshold():
    gt, sl = blocks((100, CHAIR200 * 1000 + 1), (300, WALL * 1000 + 2))
    n = len(gt)
    # 100 GT + 100 wall vertices: IoU exactly 0.5 -> not > 0.5; void share 0.5 <= 0.5 -> FP
    half = pred([mask(n, sl[0], slice(100, 200))], [0.9])
    r = evaluate_one(gt, half)
    assert r.ap50 == 0.0 and r.ap25 == pytest.approx(1.0) and r.ap == 0.0
    # 99 wall vertices: IoU 100/199 > 0.5
    r = evaluate_one(gt, pred([mask(n, sl[0], slice(100, 199))], [0.9]))
    assert r.ap50 == pytest.approx(1.0)
    assert r.table[0, 1] == 0.0  # 0.55


def test_unmatched_prediction_with_void_share_equal_to_threshold_is_a_false_positive():
    gt, sl = blocks((100, CHAIR200 * 1000 + 1), (1000, TABLE200 * 1000 + 2), (300, WALL * 1000 + 3))
    n = len(gt)
    # C: 100 table + 100 wall vertices, IoU .09, void share exactly .5 (<= .5 -> counted)
    c = mask(n, slice(sl[1].start, sl[1].start + 100), slice(sl[2].start, sl[2].start + 100))
    r = evaluate_one(gt, pred([mask(n, sl[0]), mask(n, sl[1]), c], [0.5, 0.5, 0.9]))
    assert r.ap50 == pytest.approx(1 / 3)  # P = (2/3, 0, 1), R = (1, 0, 0)
    assert r.ap25 == pytest.approx(1.0)    # .5 > .25: ignored


def test_mostly_void_unmatched_prediction_is_ignored_only_below_its_void_share():
    gt, sl = blocks((100, CHAIR200 * 1000 + 1), (300, WALL * 1000 + 2))
    n = len(gt)
    # B: 50 chair vertices + 150 wall: IoU 50/250 = .2 (never a match), void share .75
    p = pred([mask(n, sl[0]), mask(n, slice(50, 100), slice(100, 250))], [0.5, 0.9])
    r = evaluate_one(gt, p)
    ignored = np.array(OVERLAPS) < 0.75
    assert np.allclose(r.table[0, ignored], 1.0)
    assert np.allclose(r.table[0, ~ignored], 0.25)  # FP above the TP
    assert r.ap == pytest.approx((5 * 1.0 + 4 * 0.25) / 9)


# ----------------------------------------------------------------------------- 100-vertex minimum
def test_minimum_region_size_for_gt_and_predictions():
    gt, sl = blocks((100, CHAIR200 * 1000 + 1), (99, CHAIR200 * 1000 + 2), (300, TABLE200 * 1000 + 3),
                    (100, WALL * 1000 + 4))
    n = len(gt)
    chair, small, table = sl[0], sl[1], sl[2]
    on_small = mask(n, slice(small.start, small.start + 60), slice(table.start, table.start + 40))  # 60% small GT
    p = pred([mask(n, chair), mask(n, table),                     # TPs at .5
              on_small,
              mask(n, slice(table.start, table.start + 99))],    # 99 vertices: dropped
             [0.5, 0.5, 0.9, 0.8])
    r = evaluate_one(gt, p)
    # at .5 the small GT is no hard FN, the 99-vertex piece is no FP and the piece on the small GT
    # is ignored (60% of it is on a GT below 100 vertices)
    assert r.ap50 == pytest.approx(1.0)
    # at .6 that share (0.6) no longer exceeds the threshold: an FP above both TPs
    # P = (2/3, 0, 1), R = (1, 0, 0) -> 2/3 * 1/2
    assert r.table[0, 2] == pytest.approx(1 / 3)
    # without a minimum: the small GT is missed, both pieces are FPs ranked above the TPs
    # P = (.5, 0, 0, 1), R = (2/3, 0, 0, 0) -> .5 * 2/3 / 2
    r1 = evaluate_one(gt, p, config=APConfig(min_region_size=1))
    assert r1.ap50 == pytest.approx(1 / 6)
    assert [g["vertices"] for g in gt_instances(gt)] == [100, 99, 300]


def test_duplicate_keeps_max_confidence_for_the_gt():
    gt, sl = blocks((150, CHAIR200 * 1000 + 1), (1000, TABLE200 * 1000 + 2))
    n = len(gt)
    # first prediction (.3) takes the chair; the second (.8) is the duplicate: GT scored .8, FP .3
    r = evaluate_one(gt, pred([mask(n, sl[0]), mask(n, sl[0]), mask(n, sl[1])], [0.3, 0.8, 0.5]))
    assert r.ap == pytest.approx(1.0) and r.ap25 == pytest.approx(1.0)
    # a low-IoU FP (100 of the table's 1000 vertices) at .8 instead ranks above both TPs:
    # P = (2/3, 0, 1), R = (1, 0, 0) -> 1/3 at every threshold
    piece = mask(n, slice(sl[1].start, sl[1].start + 100))
    r2 = evaluate_one(gt, pred([mask(n, sl[0]), piece, mask(n, sl[1])], [0.3, 0.8, 0.3]))
    assert np.allclose(r2.table, 1 / 3)


# ----------------------------------------------------------------------------- classes
def test_esam_ignores_wall_floor_and_predicted_labels():
    gt, sl = blocks((120, CHAIR200 * 1000 + 1), (200, WALL * 1000 + 2), (200, 3 * 1000 + 3),
                    (130, 41 * 1000 + 4))  # 3 = floor, 41 = ceiling (an instance class)
    n = len(gt)
    p = pred([mask(n, sl[0]), mask(n, sl[1]), mask(n, sl[2]), mask(n, sl[3])], [0.5, 0.9, 0.9, 0.6],
             labels=[0, 0, 0, 0])
    r = evaluate_one(gt, p, "esam")
    assert r.ap == pytest.approx(1.0)
    assert [g["id"] for g in gt_instances(gt, "esam")] == [2001, 41004]
    # the per-class ScanNet200 benchmark drops predictions whose label is not one of its classes
    r200 = evaluate_one(gt, p, "scannet200")
    assert math.isnan(r200.per_class["office chair"]["ap"])
    assert r200.per_class["chair"]["ap"] == 0.0 and r200.ap == 0.0


def test_sai3d_uses_18_nyu40_classes():
    # nyu40: 5 chair, 39 otherfurniture (counted), 40 otherprop and 1 wall (void)
    gt, sl = blocks((120, 5 * 1000 + 1), (150, 39 * 1000 + 2), (200, 40 * 1000 + 3), (100, 1000 + 4))
    n = len(gt)
    p = pred([mask(n, sl[0]), mask(n, sl[2]), mask(n, sl[1])], [0.5, 0.9, 0.6], labels=[7, 7, 7])
    assert evaluate_one(gt, p, "sai3d").ap == pytest.approx(1.0)
    # read as ScanNet200 ids (ESAM), 5, 39 and 40 are all object classes and 1 is wall
    assert evaluate_one(gt, p, "esam").ap == pytest.approx(1.0)
    # without the prediction on id 40: SAI3D is still perfect, ESAM misses one GT of three
    # (precision 1 everywhere, so AP = recall = 2/3)
    p2 = pred([mask(n, sl[0]), mask(n, sl[1])], [0.5, 0.6])
    assert evaluate_one(gt, p2, "sai3d").ap == pytest.approx(1.0)
    assert evaluate_one(gt, p2, "esam").ap == pytest.approx(2 / 3)


def test_per_class_scannet_benchmark():
    # chair (5) found, table (7) predicted with the chair label, bed (4) has no GT
    gt, sl = blocks((120, 5 * 1000 + 1), (130, 7 * 1000 + 2))
    n = len(gt)
    p = pred([mask(n, sl[0]), mask(n, sl[1])], [0.5, 0.5], labels=[5, 5])
    r = evaluate_one(gt, p, "scannet")
    # chair: one TP and one FP at the same confidence -> R (1 + P) / 2 = 1 * 1.5 / 2
    assert r.per_class["chair"]["ap"] == pytest.approx(0.75)
    assert r.per_class["table"]["ap"] == 0.0  # GT, no prediction of its class
    assert math.isnan(r.per_class["bed"]["ap"])
    assert r.ap == pytest.approx(0.375)  # nanmean over the two classes with GT
    assert set(r.to_dict()["per_class"]) == set(BENCHMARKS["scannet"].class_names)
    assert r.to_dict()["per_class"]["bed"]["ap"] is None


# ----------------------------------------------------------------------------- several scenes
def test_scenes_are_pooled_not_averaged():
    gt1, sl1 = blocks((100, CHAIR200 * 1000 + 1))
    gt2, sl2 = blocks((200, CHAIR200 * 1000 + 1))
    p1 = pred([mask(100, sl1[0])], [0.9])
    p2 = pred([mask(200, slice(0, 100))], [0.95])  # IoU .5 with its GT: never > t except .25
    r = evaluate_instances({"a": gt1, "b": gt2}, {"a": p1, "b": p2})
    # y = (TP .9, FP .95), one hard FN: P = (.5, 0, 1), R = (.5, 0, 0) -> .5 * .5 / 2 ... = .125
    assert r.table[0, 0] == pytest.approx(0.125)
    assert r.num_scenes == 2
    # at .25 both match: AP 1
    assert r.ap25 == pytest.approx(1.0)


def test_missing_scenes_and_empty_predictions():
    gt1, sl1 = blocks((100, CHAIR200 * 1000 + 1))
    gt2, _ = blocks((100, CHAIR200 * 1000 + 1))
    p1 = pred([mask(100, sl1[0])], [0.9])
    with pytest.raises(InputError, match="no prediction"):
        evaluate_instances({"a": gt1, "b": gt2}, {"a": p1})
    assert evaluate_instances({"a": gt1, "b": gt2}, {"a": p1}, missing="skip").ap == pytest.approx(1.0)
    # an empty scene counts its GT as missed: P=1, R=.5 -> .5 * (1 + 1) / 2
    assert evaluate_instances({"a": gt1, "b": gt2}, {"a": p1}, missing="empty").ap == pytest.approx(0.5)
    with pytest.raises(InputError, match="no ground truth"):
        evaluate_instances({"a": gt1}, {"a": p1, "c": p1})
    # GT but no predictions at all -> 0; no GT of the class -> NaN
    r = evaluate_one(gt1, pred([], []))
    assert r.ap == 0.0
    r = evaluate_one(np.zeros(100, np.int64), pred([mask(100, slice(0, 100))], [0.5]))
    assert math.isnan(r.ap)


def test_bad_inputs_raise_input_error():
    gt, _ = blocks((100, CHAIR200 * 1000 + 1))
    with pytest.raises(InputError, match="vertices"):
        evaluate_one(gt, pred([np.ones(99, bool)], [0.5]))
    with pytest.raises(InputError):
        ScenePrediction(np.ones((2, 100), bool), [1], [0.5, 0.4])
    with pytest.raises(InputError, match="finite"):
        ScenePrediction(np.ones((1, 100), bool), [1], [float("nan")])
    with pytest.raises(InputError, match="benchmark"):
        InstanceAPEvaluator("scannet300")
    ev = InstanceAPEvaluator()
    ev.add_scene("a", gt, pred([np.ones(100, bool)], [0.5]))
    with pytest.raises(InputError, match="already"):
        ev.add_scene("a", gt, pred([np.ones(100, bool)], [0.5]))


# ----------------------------------------------------------------------------- files
def test_submission_layout_round_trip(tmp_path):
    n = 7
    masks = np.array([[1, 0, 1, 0, 0, 0, 1], [0, 1, 1, 1, 0, 0, 0]], dtype=bool)
    out = write_submission(tmp_path, "scene0011_00", masks, [5, 39], [0.75, 0.125])
    assert out == tmp_path / "scene0011_00.txt"
    lines = out.read_text().splitlines()
    assert [ln.split()[:2] for ln in lines] == [["pred_mask/scene0011_00_0.txt", "5"],
                                                ["pred_mask/scene0011_00_1.txt", "39"]]
    assert [float(ln.split()[2]) for ln in lines] == [0.75, 0.125]
    assert (tmp_path / "pred_mask" / "scene0011_00_1.txt").read_text() == "0\n1\n1\n1\n0\n0\n0\n"
    sub = read_submission(tmp_path)
    assert list(sub) == ["scene0011_00"]
    p = sub["scene0011_00"]
    assert np.array_equal(p.masks, masks) and list(p.labels) == [5, 39]
    assert np.allclose(p.scores, [0.75, 0.125])
    # rewriting with fewer instances removes the stale mask file
    write_submission(tmp_path, "scene0011_00", masks[:1], [5], [0.5])
    assert not (tmp_path / "pred_mask" / "scene0011_00_1.txt").exists()
    assert len(read_submission(tmp_path)["scene0011_00"]) == 1


def test_reading_hand_written_submission_and_gt_folder(tmp_path):
    gt, sl = blocks((100, CHAIR200 * 1000 + 1), (100, WALL * 1000 + 2))
    (tmp_path / "gt").mkdir()
    write_gt_file(tmp_path / "gt" / "scene0000_00.txt", gt)
    assert np.array_equal(read_gt_file(tmp_path / "gt" / "scene0000_00.txt"), gt)
    pd = tmp_path / "pred"
    (pd / "masks").mkdir(parents=True)
    (pd / "masks" / "a.txt").write_text("".join("1\n" if i < 100 else "0\n" for i in range(200)))
    (pd / "masks" / "b.txt").write_text("".join("3\n" if i >= 100 else "0\n" for i in range(200)))  # nonzero
    (pd / "scene0000_00.txt").write_text("masks/a.txt 2 0.4\nmasks/b.txt 2.0 0.9\n")
    (pd / "semantic_instance_evaluation.txt").write_text("class,class id,ap,ap50,ap25\n")
    r = evaluate_submission(pd, tmp_path / "gt")
    assert r.ap == pytest.approx(1.0)  # b lies on the wall: ignored
    assert list(read_gt_folder(tmp_path / "gt")) == ["scene0000_00"]
    (pd / "scene0000_00.txt").write_text("../outside.txt 2 0.4\n")
    with pytest.raises(InputError, match="outside"):
        read_submission(pd)["scene0000_00"]
    (pd / "scene0000_00.txt").write_text("masks/a.txt 2\n")
    with pytest.raises(InputError, match="expected"):
        read_submission(pd)["scene0000_00"]
    with pytest.raises(InputError, match="scene id"):
        write_submission(pd, "bad name", np.ones((1, 3), bool), [1], [0.5])
