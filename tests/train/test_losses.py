"""SAM 2 training losses against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from threeam.errors import InputError
from threeam.train.losses import (FrameOutputs, LossWeights, SAM2Loss, dice_loss, iou_l1_loss,
                                  multimask_losses, object_score_loss, sigmoid_focal_loss)

LN2 = math.log(2.0)


def test_focal_single_pixels():
    logits = torch.zeros(1, 2, 1, 1)
    targets = torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1)
    out = sigmoid_focal_loss(logits, targets)
    # p = 0.5: ce = ln 2, (1 - p_t)^2 = 1/4, alpha_t = 0.25 (positive) / 0.75 (negative)
    assert torch.allclose(out, torch.tensor([[0.25 * 0.25 * LN2, 0.75 * 0.25 * LN2]]), atol=1e-7)


def test_focal_confident_pixel_and_mean():
    # logit ln 3 -> p = 0.75; target 1: ce = -ln 0.75, (1-0.75)^2 = 1/16, alpha 0.25
    # second pixel logit 0, target 0: 0.75 * 0.25 * ln2. Mean over 2 pixels.
    logits = torch.tensor([math.log(3.0), 0.0]).reshape(1, 1, 1, 2)
    targets = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2)
    expected = (0.25 * (1 / 16) * -math.log(0.75) + 0.75 * 0.25 * LN2) / 2
    assert sigmoid_focal_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_dice_hand_value():
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).reshape(1, 1, 2, 2)
    # sum(p g) = 0.5, sum p = 2, sum g = 1 -> 1 - (1 + 1) / (3 + 1) = 0.5
    assert dice_loss(logits, targets).item() == pytest.approx(0.5, abs=1e-7)
    # empty target, very negative logits -> ~ 1 - 1/1 = 0
    assert dice_loss(torch.full((1, 1, 2, 2), -50.0), torch.zeros(1, 1, 2, 2)).item() == pytest.approx(0, abs=1e-6)


def test_iou_l1_hand_value():
    logits = torch.tensor([[1.0, 1.0], [-1.0, -1.0]]).reshape(1, 1, 2, 2)
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).reshape(1, 1, 2, 2)
    pred = torch.tensor([[0.8]])
    # inter 1, union 2 -> IoU 0.5, |0.8 - 0.5| = 0.3
    assert iou_l1_loss(logits, targets, pred).item() == pytest.approx(0.3, abs=1e-6)
    assert iou_l1_loss(logits, targets, pred, use_l1=False).item() == pytest.approx(0.09, abs=1e-6)


def test_object_score_bce():
    out = object_score_loss(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [0.0]]))
    assert torch.allclose(out, torch.tensor([LN2, math.log(1 + math.exp(2.0))]), atol=1e-6)


def _three_candidates():
    """One object on 2x2; candidate 1 is (nearly) perfect, 0 and 2 are poor."""
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])  # (1, 2, 2)
    good = torch.tensor([[8.0, 8.0], [-8.0, -8.0]])
    logits = torch.stack([torch.zeros(2, 2), good, -good]).unsqueeze(0)  # (1, 3, 2, 2)
    return logits, target


def test_min_loss_rule_and_all_iou():
    logits, target = _three_candidates()
    ious = torch.tensor([[0.2, 0.9, 0.4]])
    obj = torch.tensor([[1.0]])
    out = multimask_losses(logits, ious, obj, target, num_objects=1)
    tgt = target.unsqueeze(1)
    good = logits[:, 1:2]
    assert out["mask"].item() == pytest.approx(sigmoid_focal_loss(good, tgt).item(), rel=1e-6)
    assert out["dice"].item() == pytest.approx(dice_loss(good, tgt).item(), rel=1e-6)
    # actual IoUs: cand 0 (logit 0 -> not > 0) empty -> 0; cand 1 -> 1; cand 2 -> 0 (complement)
    assert out["iou"].item() == pytest.approx((0.2 + 0.1 + 0.4) / 3, abs=1e-6)
    assert out["class"].item() == pytest.approx(math.log(1 + math.exp(-1.0)), rel=1e-6)


def test_min_loss_rule_gradients_only_on_best_candidate():
    logits, target = _three_candidates()
    logits.requires_grad_(True)
    ious = torch.tensor([[0.2, 0.9, 0.4]], requires_grad=True)
    out = multimask_losses(logits, ious, torch.tensor([[1.0]]), target, num_objects=1)
    (20 * out["mask"] + out["dice"] + out["iou"]).backward()
    g = logits.grad.abs().flatten(2).sum(-1)[0]
    assert g[1] > 0 and g[0] == 0 and g[2] == 0
    assert (ious.grad.abs() > 0).all()  # the IoU head is supervised on all candidates


def test_absent_object_supervises_only_object_score():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.zeros(2, 4, 4)
    target[1, :2, :2] = 1.0  # object 1 present, object 0 absent
    ious = torch.rand(2, 3)
    obj = torch.tensor([[0.5], [-0.5]])
    out = multimask_losses(logits, ious, obj, target, num_objects=2)
    only_present = multimask_losses(logits[1:], ious[1:], obj[1:], target[1:], num_objects=2)
    for key in ("mask", "dice", "iou"):
        assert out[key].item() == pytest.approx(only_present[key].item(), rel=1e-6)
    expected_cls = (math.log(1 + math.exp(0.5)) + math.log(1 + math.exp(0.5))) / 2  # BCE(0.5, 0) + BCE(-0.5, 1)
    assert out["class"].item() == pytest.approx(expected_cls, rel=1e-6)
    out["mask"].backward()
    assert logits.grad[0].abs().sum() == 0


def test_clip_loss_sums_steps_frames_and_divides_by_objects():
    torch.manual_seed(0)
    t, n, m, h, w = 2, 2, 3, 8, 8
    targets = (torch.rand(t, n, h, w) > 0.5).float()
    frames = []
    for _ in range(t):
        steps = 2
        frames.append(FrameOutputs(masks=[torch.randn(n, m, h, w) for _ in range(steps)],
                                   ious=[torch.rand(n, m) for _ in range(steps)],
                                   object_score_logits=[torch.randn(n, 1) for _ in range(steps)]))
    loss = SAM2Loss()(frames, targets)
    manual = {k: 0.0 for k in ("mask", "dice", "iou", "class")}
    for f, tgt in zip(frames, targets):
        for s in range(2):
            for j in range(n):  # object by object with num_objects = 1, then / n
                one = multimask_losses(f.masks[s][j:j + 1], f.ious[s][j:j + 1], f.object_score_logits[s][j:j + 1],
                                       tgt[j:j + 1], num_objects=1)
                for k in manual:
                    manual[k] += one[k].item() / n
    for k in manual:
        assert loss[k].item() == pytest.approx(manual[k], rel=1e-5)
    total = 20 * manual["mask"] + manual["dice"] + manual["iou"] + manual["class"]
    assert loss["total"].item() == pytest.approx(total, rel=1e-5)
    # same mask:dice ratio -> same min-loss choice; the total follows the weights
    custom = SAM2Loss(LossWeights(mask=40.0, dice=2.0, iou=0.0, object_score=0.5))(frames, targets)
    expected = 40 * manual["mask"] + 2 * manual["dice"] + 0.5 * manual["class"]
    assert custom["total"].item() == pytest.approx(expected, rel=1e-5)


def test_single_mask_output_and_official_dict():
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    logits = torch.zeros(1, 1, 2, 2)
    d = {"multistep_pred_multimasks_high_res": [logits], "multistep_pred_ious": [torch.tensor([[0.5]])],
         "multistep_object_score_logits": [torch.tensor([[0.0]])]}
    out = SAM2Loss()([FrameOutputs.from_official(d)], target.unsqueeze(0))
    focal = (0.25 * 0.25 * LN2 + 3 * 0.75 * 0.25 * LN2) / 4
    dice = 1 - (2 * 0.5 + 1) / (2 + 1 + 1)
    assert out["mask"].item() == pytest.approx(focal, rel=1e-6)
    assert out["dice"].item() == pytest.approx(dice, rel=1e-6)
    assert out["iou"].item() == pytest.approx(0.5, abs=1e-6)  # empty prediction -> IoU 0
    assert out["class"].item() == pytest.approx(LN2, rel=1e-6)


def test_bad_shapes_raise_input_error():
    with pytest.raises(InputError):
        multimask_losses(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3), None, torch.zeros(2, 4, 4), 1)
    with pytest.raises(InputError):
        SAM2Loss()([], torch.zeros(1, 1, 4, 4))
    with pytest.raises(InputError):
        LossWeights(mask=-1.0)
