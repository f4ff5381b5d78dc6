"""Small SAM2Base rules: when multimask output is used, non-overlap constraints, mask prompts as output."""
from __future__ import annotations

import pytest
import torch

from sam2_small_build import build_small
from threeam.errors import InputError


@pytest.fixture(scope="module")
def model(golden_dir, fill):
    return build_small(golden_dir, fill)[0]


def _pts(n):
    return {"point_coords": torch.zeros(1, n, 2), "point_labels": torch.ones(1, n, dtype=torch.int32)}


def test_multimask_rule(model):
    # small case: multimask for 0..1 points, also while tracking
    assert model._use_multimask(True, _pts(1)) and model._use_multimask(False, None)
    assert not model._use_multimask(True, _pts(2))
    model.multimask_output_for_tracking = False
    try:
        assert not model._use_multimask(False, _pts(1))
        assert model._use_multimask(True, _pts(1))
    finally:
        model.multimask_output_for_tracking = True


def test_non_overlapping_constraints(model):
    masks = torch.tensor([[[[5.0, -1.0]]], [[[2.0, 3.0]]]])  # (2 objects, 1, 1, 2)
    out = model._apply_non_overlapping_constraints(masks)
    assert out.tolist() == [[[[5.0, -10.0]]], [[[-10.0, 3.0]]]]
    assert torch.equal(model._apply_non_overlapping_constraints(masks[:1]), masks[:1])


def test_empty_mask_prompt_means_absent(model):
    feat = torch.zeros(1, 64, 16, 16)
    high_res = [torch.zeros(1, 8, 64, 64), torch.zeros(1, 16, 32, 32)]
    with torch.no_grad():
        out = model._use_mask_as_output(feat, high_res, torch.zeros(1, 1, 256, 256))
    low, high, ious, obj_ptr, score = (out.multimask_logits, out.multimask_logits_high_res, out.ious, out.obj_ptr,
                                       out.object_score_logits)
    assert low.shape == (1, 1, 64, 64) and torch.allclose(low, torch.full_like(low, -10.0)) and (high == -10).all()
    assert score.item() == -10.0 and ious.item() == 1.0
    torch.testing.assert_close(obj_ptr, model.no_obj_ptr)  # fixed_no_obj_ptr: the learned no-object pointer


def test_bad_feature_shape_is_a_clear_error(model):
    with pytest.raises(InputError, match="SAM heads expect"):
        model._forward_sam_heads(torch.zeros(1, 64, 8, 8))
    bank = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    with pytest.raises(InputError, match="conditioning"):
        model._prepare_memory_conditioned_features(3, False, [torch.zeros(256, 1, 64)], [torch.zeros(256, 1, 64)],
                                                   [(16, 16)], bank, 10)
