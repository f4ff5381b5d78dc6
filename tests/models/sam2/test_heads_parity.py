"""Parity of the SAM 2.1 heads (prompt encoder + mask decoder + object pointer) with the golden small case."""
from __future__ import annotations

import pytest
import torch

from sam2_small_build import build_small, rel_err

TOL = 1e-4  # README: image-level values, relative error


@pytest.fixture(scope="module")
def small(golden_dir, fill):
    return build_small(golden_dir, fill)


def _features(npz):
    t = lambda k: torch.from_numpy(npz[k])
    return t("image0/backbone_fpn/2"), [t("image0/backbone_fpn/0"), t("image0/backbone_fpn/1")]


@pytest.mark.parametrize("prompt", ["click", "box"])
def test_sam_heads_match_reference(small, prompt):
    model, js, npz = small
    feat, high_res = _features(npz)
    if prompt == "click":
        coords, labels = js["image0"]["click_model_coords"], [1]
    else:
        coords, labels = js["image0"]["box_model_coords"], [2, 3]
    point_inputs = {"point_coords": torch.tensor([coords], dtype=torch.float32),
                    "point_labels": torch.tensor([labels], dtype=torch.int32)}
    ref = f"image0/heads_{prompt}"
    assert torch.equal(point_inputs["point_coords"], torch.from_numpy(npz[f"{ref}/point_coords"]))
    with torch.no_grad():
        out = model._forward_sam_heads(backbone_features=feat, point_inputs=point_inputs,
                                       high_res_features=high_res, multimask_output=True)
    low_multi, high_multi, ious, low, high, obj_ptr, score = out
    assert high_multi.shape == (1, 3, 256, 256) and high.shape == (1, 1, 256, 256)
    for name, value in [("low_res_multimasks", low_multi), ("ious", ious), ("low_res_masks", low),
                        ("obj_ptr", obj_ptr), ("object_score_logits", score)]:
        err = rel_err(value, npz[f"{ref}/{name}"])
        assert err <= TOL, f"{prompt} {name}: relative error {err:.2e}"


def test_single_mask_uses_stability_fallback(small):
    """Without multimask output the decoder returns one mask: token 0's if stable, else the best multimask."""
    model, js, npz = small
    feat, high_res = _features(npz)
    point_inputs = {"point_coords": torch.tensor([js["image0"]["click_model_coords"]], dtype=torch.float32),
                    "point_labels": torch.tensor([[1]], dtype=torch.int32)}
    dec = model.sam_mask_decoder
    with torch.no_grad():
        sparse, dense = model.sam_prompt_encoder(points=(point_inputs["point_coords"], point_inputs["point_labels"]),
                                                 boxes=None, masks=None)
        all_masks, all_iou, _, _ = dec.predict_masks(feat, model.sam_prompt_encoder.get_dense_pe(), sparse, dense,
                                                     repeat_image=False, high_res_features=high_res)
        single, iou1, _, _ = dec(feat, model.sam_prompt_encoder.get_dense_pe(), sparse, dense,
                                 multimask_output=False, repeat_image=False, high_res_features=high_res)
    stable = bool(dec._get_stability_scores(all_masks[:, 0:1])[0, 0] >= dec.dynamic_multimask_stability_thresh)
    expect = all_masks[:, 0:1] if stable else all_masks[:, 1 + int(all_iou[0, 1:].argmax())].unsqueeze(1)
    assert torch.equal(single, expect)
    # the golden multimask output's best mask is what an unstable single mask falls back to
    if not stable:
        assert rel_err(single, npz["image0/heads_click/low_res_masks"]) <= TOL
