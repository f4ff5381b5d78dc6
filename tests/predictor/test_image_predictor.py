"""The SAM 2 image predictor: golden parity (sam2/case_image_small_v21) through the public API,
input errors, model sharing with the video predictor, CPU hole filling."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from threeam.errors import InputError
from threeam.models.three_am import debug_sam2_config
from threeam.predictor.image_predictor import ImagePredictor, SAM2ImagePredictor
from threeam.predictor.mask_generator import AutomaticMaskGenerator
from threeam.predictor.video_predictor import VideoPredictor

from .golden_check import rel_err
from .image_case import (FEAT_REL, IMAGE_HW, INPUT_ATOL, IOU_ATOL, LOGIT_ATOL, MASK_AGREEMENT, SIGN_AGREEMENT,
                         image_case, one_torch_thread, unpack_masks)

__all__ = ["image_case", "one_torch_thread"]  # fixtures used by name

CASES = ["a_point", "b_pos_neg", "c_box", "d_box_point", "e_mask_refine", "e2_mask_only", "f_unnormalized",
         "g_stable_point", "h_two_boxes"]


@pytest.fixture(scope="module")
def predictor(image_case):
    p = ImagePredictor(image_case.model)
    p.set_image(image_case.image)
    return p


def _call(js: dict, case: str) -> dict:
    for call in js["calls"]:
        if call["call"].endswith(".predict") and call["npz"][0].startswith(f"predict/{case}/"):
            return call
    raise KeyError(case)


def _prompt_kwargs(call: dict, npz) -> dict:
    args, kw = call["args"], {}
    if "point_coords" in args:
        coords = args["point_coords"]
        kw["point_coords"] = npz["predict/f_unnormalized/point_coords"] if isinstance(coords, str) else coords
        kw["point_labels"] = args["point_labels"]
    if "box" in args:
        kw["box"] = args["box"]
    if "mask_input" in args:
        kw["mask_input"] = npz["predict/e_mask_refine/mask_input"]
    if "normalize_coords" in args:
        kw["normalize_coords"] = args["normalize_coords"]
    return kw


def _check_outputs(npz, key: str, masks: np.ndarray, ious: np.ndarray, low_res: np.ndarray) -> None:
    ref_low = npz[f"{key}/low_res_masks"]
    assert low_res.shape == ref_low.shape, f"{key}: low-res {low_res.shape} vs {ref_low.shape}"
    diff = np.abs(low_res - ref_low).max()
    assert diff <= LOGIT_ATOL, f"{key}: low_res_masks max abs diff {diff:.3e}"
    sign = ((low_res > 0) == (ref_low > 0)).mean()
    assert sign >= SIGN_AGREEMENT, f"{key}: low_res_masks sign agreement {sign:.5%}"
    assert np.abs(low_res).max() <= 32.0
    ref_iou = npz[f"{key}/iou_predictions"]
    assert ious.shape == ref_iou.shape and np.abs(ious - ref_iou).max() <= IOU_ATOL, f"{key}: iou {ious} vs {ref_iou}"
    ref_masks = unpack_masks(npz[f"{key}/masks"])
    assert masks.shape == ref_masks.shape, f"{key}: masks {masks.shape} vs {ref_masks.shape}"
    assert masks.dtype == np.float32 and set(np.unique(masks)) <= {0.0, 1.0}
    agree = ((masks > 0.5) == ref_masks).mean()
    assert agree >= MASK_AGREEMENT, f"{key}: masks agree on {agree:.5%} of pixels"


# ----------------------------------------------------------------------------- golden parity
def test_model_input_and_features(image_case, predictor):
    npz = image_case.npz
    x = predictor.preprocess(image_case.image)
    ref = torch.from_numpy(npz["set_image/input"])[0]
    assert x.shape == ref.shape and (x - ref).abs().max().item() <= INPUT_ATOL
    assert predictor._bb_feat_sizes == [(64, 64), (32, 32), (16, 16)]  # derived from image size 256
    assert predictor.orig_hw == [IMAGE_HW]
    assert rel_err(predictor.get_image_embedding(), npz["set_image/image_embed"]) <= FEAT_REL
    for i in range(2):
        assert rel_err(predictor._features["high_res_feats"][i], npz[f"set_image/high_res_feats/{i}"]) <= FEAT_REL


@pytest.mark.parametrize("case", CASES)
def test_predict_matches_golden(image_case, predictor, case):
    js, npz = image_case.js, image_case.npz
    call = _call(js, case)
    kw = _prompt_kwargs(call, npz)
    outs = {}
    for mm in (True, False):
        key = f"predict/{case}/mm{int(mm)}"
        masks, ious, low_res = predictor.predict(multimask_output=mm, **kw)
        _check_outputs(npz, key, masks, ious, low_res)
        logits, ious_l, low_l = predictor.predict(multimask_output=mm, return_logits=True, **kw)
        # the logits call gives the same scores and low-res output; thresholding it gives the masks
        np.testing.assert_array_equal(ious_l, ious)
        np.testing.assert_array_equal(low_l, low_res)
        np.testing.assert_array_equal((logits > 0).astype(np.float32), masks)
        if f"{key}/logits" in npz.files:
            ref = npz[f"{key}/logits"]
            assert logits.shape == ref.shape and np.abs(logits - ref).max() <= LOGIT_ATOL
            assert ((logits > 0) == (ref > 0)).mean() >= SIGN_AGREEMENT
        outs[mm] = (ious, low_res)
    # the single-mask answer comes from the same source as the reference (token 0 or a fallback index)
    ious1, low1 = outs[True]
    ious0, low0 = outs[False]
    sources = call["mm0_source"]
    if low1.ndim == 3:
        ious1, low1, ious0, low0 = ious1[None], low1[None], ious0[None], low0[None]
    for b, source in enumerate(sources):
        same = [k for k in range(3) if np.array_equal(low0[b, 0], low1[b, k]) and ious0[b, 0] == ious1[b, k]]
        if source == "token 0":
            assert same == [], f"{case}[{b}]: single-mask output should be token 0, equals multimask {same}"
        else:
            k = int(source.rsplit(" ", 1)[1])
            assert same == [k], f"{case}[{b}]: expected {source}, single-mask output equals multimask {same}"


def test_set_image_batch_and_predict_batch(image_case):
    npz = image_case.npz
    p = SAM2ImagePredictor(image_case.model)
    p.set_image_batch([image_case.image, npz["batch/image1"]])
    assert p.orig_hw == [IMAGE_HW, IMAGE_HW]
    assert rel_err(p.get_image_embedding(), npz["batch/image_embed"]) <= FEAT_REL
    for i in range(2):
        assert rel_err(p._features["high_res_feats"][i], npz[f"batch/high_res_feats/{i}"]) <= FEAT_REL
    clicks = [[[88.75, 75.0]], [[231.25, 75.0]]]
    for mm in (True, False):
        masks, ious, lows = p.predict_batch(clicks, [[1], [1]], multimask_output=mm)
        assert len(masks) == len(ious) == len(lows) == 2
        for img in range(2):
            _check_outputs(npz, f"batch/mm{int(mm)}/img{img}", masks[img], ious[img], lows[img])


def test_pil_image_same_as_array(image_case, predictor):
    p = ImagePredictor(image_case.model)
    p.set_image(Image.fromarray(image_case.image))
    assert torch.equal(p.get_image_embedding(), predictor.get_image_embedding())
    assert p.orig_hw == [IMAGE_HW]


def test_feature_sizes_follow_the_model_image_size():
    torch.manual_seed(0)
    p = ImagePredictor.from_pretrained(debug_sam2_config().copy(image_size=128), random_weights=True)
    assert p._bb_feat_sizes == [(32, 32), (16, 16), (8, 8)]
    p.set_image(np.zeros((50, 70, 3), dtype=np.uint8))
    assert tuple(p.get_image_embedding().shape) == (1, 64, 8, 8)
    masks, ious, low = p.predict(point_coords=[[10, 10]], point_labels=[1])
    assert masks.shape == (3, 50, 70) and ious.shape == (3,) and low.shape == (3, 32, 32)
    with pytest.raises(InputError, match=r"\(1, 32, 32\)"):
        p.predict(mask_input=np.zeros((1, 64, 64), np.float32))


# ----------------------------------------------------------------------------- sharing the model
def test_from_video_predictor_shares_the_model(image_case, predictor):
    vp = VideoPredictor(image_case.model, progress=False)
    ip = ImagePredictor.from_video_predictor(vp)
    assert ip.model is vp.model is image_case.model
    gen = AutomaticMaskGenerator(vp, points_per_side=2)
    assert gen.model is vp.model
    ip.set_image(image_case.image)
    m1, i1, _ = ip.predict(point_coords=[[88.75, 75.0]], point_labels=[1])
    m2, i2, _ = predictor.predict(point_coords=[[88.75, 75.0]], point_labels=[1])
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(i1, i2)
    # and the video predictor still runs on the same object afterwards
    state = vp.init_state(np.repeat(image_case.image[None], 2, axis=0))
    _, ids, video_masks = vp.add_new_points_or_box(state, 0, 1, points=[[88.75, 75.0]], labels=[1])
    assert ids == [1] and tuple(video_masks.shape) == (1, 1, *IMAGE_HW)


def test_reset_predictor(image_case):
    p = ImagePredictor(image_case.model)
    p.set_image(image_case.image)
    assert p.is_image_set
    p.reset_predictor()
    assert not p.is_image_set and p.orig_hw is None
    with pytest.raises(InputError, match="set_image"):
        p.predict(point_coords=[[1, 1]], point_labels=[1])


# ----------------------------------------------------------------------------- hole filling
def test_postprocess_masks_fills_holes_and_removes_sprinkles_on_cpu(image_case):
    low = torch.full((1, 1, 64, 64), -5.0)
    low[0, 0, 10:30, 10:30] = 5.0
    low[0, 0, 15:17, 15:17] = -5.0  # a 4-pixel hole
    low[0, 0, 50:52, 50:51] = 5.0  # a 2-pixel speck
    plain = ImagePredictor(image_case.model).postprocess_masks(low, (64, 64))
    assert torch.equal(plain > 0, low > 0)
    filled = ImagePredictor(image_case.model, max_hole_area=4, max_sprinkle_area=2).postprocess_masks(low, (64, 64))
    expected = torch.zeros(64, 64, dtype=torch.bool)
    expected[10:30, 10:30] = True
    assert torch.equal(filled[0, 0] > 0, expected)
    smaller = ImagePredictor(image_case.model, max_hole_area=3, max_sprinkle_area=1).postprocess_masks(low, (64, 64))
    assert torch.equal(smaller > 0, low > 0)  # regions bigger than the limits stay


# ----------------------------------------------------------------------------- input errors
@pytest.mark.parametrize("image, match", [
    (np.zeros((20, 30, 3), np.float32), "uint8"),
    (np.zeros((20, 30), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((20, 30, 4), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((0, 30, 3), np.uint8), "empty"),
    ([[0, 0, 0]], "numpy array or a PIL image"),
])
def test_bad_images(image_case, image, match):
    p = ImagePredictor(image_case.model)
    with pytest.raises(InputError, match=match):
        p.set_image(image)
    with pytest.raises(InputError):
        p.set_image_batch([image])


@pytest.mark.parametrize("kwargs, match", [
    (dict(point_coords=[[1, 1], [2, 2]], point_labels=[1]), "one label per point"),
    (dict(point_coords=[[1, 1]]), "together"),
    (dict(point_labels=[1]), "together"),
    (dict(point_coords=[[641, 10]], point_labels=[1]), "outside the image"),  # > one image size past the edge
    (dict(point_coords=[[-1, 10]], point_labels=[1]), "outside the image"),
    (dict(point_coords=[[0.5, 2.5]], point_labels=[1], normalize_coords=False), r"\[0, 1\]"),
    (dict(point_coords=[[1, 1]], point_labels=[5]), "point_labels"),
    (dict(point_coords=[[1, 1]], point_labels=[0.5]), "integers"),
    (dict(point_coords=[1, 1, 1], point_labels=[1]), r"\(N, 2\)"),
    (dict(box=[50, 50, 10, 10]), "x1 >= x0"),
    (dict(box=[0, 0, 10]), "4 numbers"),
    (dict(box=[0, 0, 10, 500]), "outside the image"),  # boxes a little past the image are clipped
    (dict(box=[[0, 0, 10, 10], [0, 0, 20, 20]], point_coords=[[1, 1]], point_labels=[1]), "one row per box"),
    (dict(mask_input=np.zeros((1, 32, 32), np.float32)), r"\(1, 64, 64\)"),
    (dict(point_coords=[[float("nan"), 1]], point_labels=[1]), "finite"),
    (dict(point_coords=[[1, 1]], point_labels=[1], multimask_output="yes"), "multimask_output"),
])
def test_bad_prompts(predictor, kwargs, match):
    with pytest.raises(InputError, match=match):
        predictor.predict(**kwargs)


def test_wrong_mode_errors(image_case):
    p = ImagePredictor(image_case.model)
    with pytest.raises(InputError, match="set_image"):
        p.predict(point_coords=[[1, 1]], point_labels=[1])
    with pytest.raises(InputError, match="no image set"):
        p.get_image_embedding()
    p.set_image(image_case.image)
    with pytest.raises(InputError, match="set_image_batch"):
        p.predict_batch([[[1, 1]]], [[1]])
    p.set_image_batch([image_case.image, image_case.image])
    with pytest.raises(InputError, match="predict_batch"):
        p.predict(point_coords=[[1, 1]], point_labels=[1])
    with pytest.raises(InputError, match="one entry per image"):
        p.predict_batch([[[1, 1]]], [[1]])
    with pytest.raises(InputError, match="non-empty list"):
        p.set_image_batch([])
    with pytest.raises(InputError, match="SAM 2 model"):
        ImagePredictor(torch.nn.Linear(2, 2))
    with pytest.raises(InputError, match="max_hole_area"):
        ImagePredictor(image_case.model, max_hole_area=-1)
