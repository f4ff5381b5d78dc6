"""The SAM 2 automatic mask generator: golden parity (amg1, amg2 of sam2/case_image_small_v21) through
the public API, the official defaults, the AMG utilities (grids, crops, NMS, RLE, boxes, small
regions), small-region modes and input errors."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from scipy import ndimage

from threeam.errors import InputError
from threeam.io.masks import decode_rle, encode_rle
from threeam.predictor import amg_utils as U
from threeam.predictor.image_predictor import ImagePredictor
from threeam.predictor.mask_generator import (AutomaticMaskGenerator, MaskGeneratorConfig, SAM2AutomaticMaskGenerator,
                                              get_mask_generator_config)

from .image_case import IMAGE_HW, IOU_ATOL, STABILITY_ATOL, call_by_prefix, image_case, one_torch_thread, unpack_masks

__all__ = ["image_case", "one_torch_thread"]  # fixtures used by name

RECORD_KEYS = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}


@pytest.fixture(scope="module")
def amg_runs(image_case):
    """Both golden settings, each generated once: {name: (generator, records, call)}."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = {}
        for name in ("amg1", "amg2"):
            call = call_by_prefix(image_case.js, f"{name}/")
            gen = AutomaticMaskGenerator(image_case.model, **call["args"]["generator_kwargs"])
            runs[name] = (gen, gen.generate(image_case.image), call)
        return runs
    finally:
        torch.set_num_threads(before)


def _segmentation(record) -> np.ndarray:
    seg = record["segmentation"]
    return seg if isinstance(seg, np.ndarray) else decode_rle(seg)


def _check_records(npz, name: str, records: list[dict], near_ties: list[list[int]]) -> None:
    n = npz[f"{name}/area"].shape[0]
    assert len(records) == n, f"{name}: {len(records)} records, reference {n}"
    partner = {}
    for a, b in near_ties:
        partner[a], partner[b] = b, a
    ref_masks = unpack_masks(npz[f"{name}/segmentation"])
    for i, rec in enumerate(records):
        assert set(rec) == RECORD_KEYS
        seg = _segmentation(rec)
        candidates = [i] + ([partner[i]] if i in partner else [])

        def matches(j: int) -> bool:
            return rec["point_coords"] == npz[f"{name}/point_coords"][j].tolist() and \
                rec["crop_box"] == npz[f"{name}/crop_box"][j].tolist()

        found = [j for j in candidates if matches(j)]
        assert found, f"{name} record {i}: click {rec['point_coords']} / crop {rec['crop_box']} is not reference " \
                      f"record {candidates}"
        j = found[0]
        ref_area = int(npz[f"{name}/area"][j])
        slack = max(3, int(0.001 * ref_area))
        assert isinstance(rec["area"], int) and abs(rec["area"] - ref_area) <= slack
        assert rec["area"] == int(seg.sum())
        assert seg.shape == IMAGE_HW and seg.dtype == bool
        assert int((seg != ref_masks[j]).sum()) <= slack, f"{name} record {i}: mask pixels differ"
        ref_box = npz[f"{name}/bbox"][j]
        assert all(isinstance(v, float) for v in rec["bbox"])
        assert np.abs(np.array(rec["bbox"]) - ref_box).max() <= (0 if (seg == ref_masks[j]).all() else 1)
        assert abs(rec["predicted_iou"] - npz[f"{name}/predicted_iou"][j]) <= IOU_ATOL
        assert abs(rec["stability_score"] - npz[f"{name}/stability_score"][j]) <= STABILITY_ATOL
        if name == "amg2":
            ref_rle = {"size": npz["amg2/rle_size"][j].tolist(), "counts": str(npz["amg2/rle_counts"][j])}
            assert rec["segmentation"]["size"] == list(IMAGE_HW)
            if (seg == ref_masks[j]).all():
                assert rec["segmentation"]["counts"] == ref_rle["counts"]
            assert int((seg != decode_rle(ref_rle)).sum()) <= slack


# ----------------------------------------------------------------------------- golden parity
@pytest.mark.parametrize("name", ["amg1", "amg2"])
def test_generate_matches_golden(image_case, amg_runs, name):
    _, records, call = amg_runs[name]
    assert call["n_masks"] == len(records)
    _check_records(image_case.npz, name, records, call.get("output_pairs_with_predicted_iou_closer_than_1e5", []))


@pytest.mark.parametrize("name", ["amg1", "amg2"])
def test_point_grids_and_crop_boxes_exact(image_case, amg_runs, name):
    npz = image_case.npz
    gen, _, call = amg_runs[name]
    args = call["args"]["all_generator_arguments"]
    n_layers = args["crop_n_layers"]
    assert len(gen.point_grids) == n_layers + 1
    for layer, grid in enumerate(gen.point_grids):
        np.testing.assert_array_equal(grid, npz[f"{name}/point_grids/{layer}"])
    boxes, layers = U.generate_crop_boxes(IMAGE_HW, n_layers, args["crop_overlap_ratio"])
    assert boxes == npz[f"{name}/crop_boxes_xyxy"].tolist()
    assert layers == npz[f"{name}/crop_layer_idxs"].tolist()


def test_official_defaults(image_case):
    params = inspect.signature(AutomaticMaskGenerator.__init__).parameters
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    # every argument the reference left at its default, in either golden call, is the official default
    for name in ("amg1", "amg2"):
        call = call_by_prefix(image_case.js, f"{name}/")
        given = call["args"]["generator_kwargs"]
        for key, value in call["args"]["all_generator_arguments"].items():
            if key not in given:
                assert defaults[key] == value, f"default of {key}: {defaults[key]!r}, official {value!r}"
    # the four set by both golden calls (official signature, sam2/automatic_mask_generator.py)
    assert (defaults["points_per_side"], defaults["pred_iou_thresh"], defaults["stability_score_thresh"],
            defaults["box_nms_thresh"]) == (32, 0.8, 0.95, 0.7)
    assert MaskGeneratorConfig().as_kwargs() == {k: defaults[k] for k in MaskGeneratorConfig().as_kwargs()}
    p = inspect.signature(ImagePredictor.__init__).parameters
    assert [p[k].default for k in ("mask_threshold", "max_hole_area", "max_sprinkle_area")] == [0.0, 0.0, 0.0]
    p = inspect.signature(ImagePredictor.predict).parameters
    assert [p[k].default for k in ("multimask_output", "return_logits", "normalize_coords")] == [True, False, True]
    assert SAM2AutomaticMaskGenerator is AutomaticMaskGenerator


def test_output_modes_agree(image_case, amg_runs):
    _, binary, _ = amg_runs["amg1"]
    gen = AutomaticMaskGenerator(image_case.model, points_per_side=8, pred_iou_thresh=0.0,
                                 stability_score_thresh=0.0, box_nms_thresh=0.99, output_mode="uncompressed_rle")
    rles = gen.generate(image_case.image)
    assert len(rles) == len(binary)
    for a, b in zip(rles, binary):
        assert isinstance(a["segmentation"]["counts"], list) and a["segmentation"]["size"] == list(IMAGE_HW)
        np.testing.assert_array_equal(decode_rle(a["segmentation"]), b["segmentation"])
        for key in RECORD_KEYS - {"segmentation"}:
            assert a[key] == b[key], key


def test_generator_on_an_image_predictor_keeps_its_state(image_case):
    ip = ImagePredictor(image_case.model)
    ip.set_image(image_case.image[:100, :120])
    embed = ip.get_image_embedding().clone()
    gen = AutomaticMaskGenerator(ip, points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert gen.model is ip.model and gen.predictor is not ip
    gen.generate(image_case.image)
    assert ip.orig_hw == [(100, 120)] and torch.equal(ip.get_image_embedding(), embed)


# ----------------------------------------------------------------------------- small regions
def test_min_mask_region_area_modes(image_case):
    gen = AutomaticMaskGenerator(image_case.model, min_mask_region_area=25)
    assert gen.predictor.max_hole_area == gen.predictor.max_sprinkle_area == 25  # low-res logits, as official
    gen = AutomaticMaskGenerator(image_case.model, points_per_side=4, pred_iou_thresh=0.0,
                                 stability_score_thresh=0.0, box_nms_thresh=0.99, min_mask_region_area=200,
                                 small_region_mode="full_res")
    assert gen.predictor.max_hole_area == gen.predictor.max_sprinkle_area == 0
    records = gen.generate(image_case.image)
    assert records
    for rec in records:
        seg = rec["segmentation"]
        _, changed = U.remove_small_regions(seg, 200, "holes")
        assert not changed, "a hole below 200 px is left in a record"
        labels, count = ndimage.label(seg, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel())[1:]
        assert count == 1 or sizes.min() >= 200, f"islands of {sorted(sizes)} px left (only one may be small)"
        assert rec["area"] == int(rec["segmentation"].sum())
        x, y, w, h = rec["bbox"]
        ys, xs = np.nonzero(rec["segmentation"])
        assert [x, y, w, h] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]


def test_remove_small_regions():
    mask = np.zeros((12, 12), dtype=bool)
    mask[1:8, 1:8] = True
    mask[3, 3] = False  # 1-px hole
    mask[10, 10] = True  # 1-px island
    filled, changed = U.remove_small_regions(mask, 2, "holes")
    assert changed and filled[3, 3] and filled[10, 10]
    cleaned, changed = U.remove_small_regions(mask, 2, "islands")
    assert changed and not cleaned[10, 10] and not cleaned[3, 3] and cleaned[1:8, 1:8].sum() == 48
    same, changed = U.remove_small_regions(mask, 1, "islands")  # "small" is strictly below the area
    assert not changed and np.array_equal(same, mask)
    only_small = np.zeros((6, 6), dtype=bool)
    only_small[0, 0] = only_small[4:6, 4:6] = True
    kept, changed = U.remove_small_regions(only_small, 10, "islands")  # all small: keep the largest
    assert changed and kept.sum() == 4 and kept[5, 5]
    with pytest.raises(InputError):
        U.remove_small_regions(mask, 2, "specks")


# ----------------------------------------------------------------------------- utilities
def test_nms_stable_order_strict_threshold_and_empty_boxes():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 0, 0], [0, 0, 0, 0]],
                         dtype=torch.float32)
    scores = torch.tensor([0.5, 0.5, 0.5, 0.9, 0.9])
    # equal scores keep input order; the duplicate box goes; empty boxes (NaN IoU) never suppress
    assert U.nms(boxes, scores, 0.7).tolist() == [3, 4, 0, 2]
    # IoU exactly at the threshold is kept (suppression needs IoU > threshold)
    half = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5]], dtype=torch.float32)
    assert U.nms(half, torch.tensor([1.0, 0.5]), 0.5).tolist() == [0, 1]
    assert U.nms(half, torch.tensor([1.0, 0.5]), 0.49).tolist() == [0]
    assert U.batched_nms(boxes[:2], scores[:2], torch.tensor([0, 1]), 0.7).tolist() == [0, 1]
    assert U.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    iou = U.box_iou(half[0], half)
    assert torch.allclose(iou, torch.tensor([1.0, 0.5]))


def test_mask_boxes_rle_and_stability():
    masks = torch.zeros(3, 5, 7, dtype=torch.bool)
    masks[0, 1:3, 2:6] = True
    masks[1, 0, 0] = True
    masks[1, 4, 6] = True
    assert U.batched_mask_to_box(masks).tolist() == [[2, 1, 5, 2], [0, 0, 6, 4], [0, 0, 0, 0]]
    rles = U.mask_to_rle(masks)
    assert rles[1]["counts"][0] == 0  # starts with a (zero-length) background run
    for m, rle in zip(masks.numpy(), rles):
        assert rle["size"] == [5, 7] and sum(rle["counts"]) == 35
        np.testing.assert_array_equal(U.rle_to_mask(rle), m)
        np.testing.assert_array_equal(decode_rle(rle), m)
        assert U.area_from_rle(rle) == int(m.sum())
        assert U.coco_encode_rle(rle) == encode_rle(m)
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]]])
    assert U.calculate_stability_score(logits, 0.0, 1.0).tolist() == pytest.approx([1 / 3])
    assert torch.isnan(U.calculate_stability_score(torch.full((1, 2, 2), -5.0), 0.0, 1.0)).all()


def test_point_grid_and_crops_layout():
    grid = U.build_point_grid(2)
    np.testing.assert_array_equal(grid, [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    assert [len(g) for g in U.build_all_layer_point_grids(8, 2, 2)] == [64, 16, 4]
    boxes, layers = U.generate_crop_boxes((100, 200), 2, 0.0)
    assert boxes[0] == [0, 0, 200, 100] and layers == [0] + [1] * 4 + [2] * 16
    assert boxes[1:5] == [[0, 0, 100, 50], [0, 50, 100, 100], [100, 0, 200, 50], [100, 50, 200, 100]]
    crop = [100, 50, 200, 100]
    near = U.is_box_near_crop_edge(torch.tensor([[0, 0, 50, 30], [40, 30, 60, 40]]), crop, [0, 0, 200, 100])
    assert near.tolist() == [True, False]  # left/top are inner crop edges; right/bottom are image edges
    assert U.uncrop_masks(torch.ones(1, 50, 100, dtype=torch.bool), crop, 100, 200).sum() == 5000
    assert [len(b[0]) for b in U.batch_iterator(3, list(range(7)))] == [3, 3, 1]


# ----------------------------------------------------------------------------- errors and presets
@pytest.mark.parametrize("kwargs, match", [
    (dict(points_per_side=None), "exactly one"),
    (dict(point_grids=[np.zeros((4, 2))]), "exactly one"),
    (dict(points_per_side=None, point_grids=[np.zeros((4, 3))]), r"\(N, 2\)"),
    (dict(points_per_side=None, point_grids=[np.full((4, 2), 2.0)]), r"\[0, 1\]"),
    (dict(points_per_side=None, point_grids=[np.zeros((4, 2))], crop_n_layers=1), "one per layer"),
    (dict(points_per_side=2, crop_n_layers=2, crop_n_points_downscale_factor=2), "points per side"),
    (dict(output_mode="png"), "output_mode"),
    (dict(points_per_batch=0), "points_per_batch"),
    (dict(box_nms_thresh=1.5), "box_nms_thresh"),
    (dict(crop_n_layers=-1), "crop_n_layers"),
    (dict(min_mask_region_area=-1), "min_mask_region_area"),
    (dict(use_m2m="yes"), "use_m2m"),
    (dict(small_region_mode="both"), "small_region_mode"),
    (dict(points_per_sid=16), "unknown mask generator option"),
])
def test_bad_parameters(image_case, kwargs, match):
    with pytest.raises(InputError, match=match):
        AutomaticMaskGenerator(image_case.model, **kwargs)


def test_bad_image_and_presets(image_case):
    gen = AutomaticMaskGenerator(image_case.model, points_per_side=2)
    with pytest.raises(InputError, match="uint8"):
        gen.generate(np.zeros((20, 20, 3), np.float64))
    with pytest.raises(InputError, match="preset"):
        get_mask_generator_config("fast")
    dense = AutomaticMaskGenerator.from_config(image_case.model, "notebook_dense")
    assert (dense.points_per_side, dense.points_per_batch, dense.use_m2m, dense.crop_n_layers,
            dense.min_mask_region_area) == (64, 128, True, 1, 25)
    assert [len(g) for g in dense.point_grids] == [64 * 64, 32 * 32]
