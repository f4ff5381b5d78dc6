"""Prompt simulation: clicks land where they should, signs are right, seeds reproduce."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from threeam.errors import InputError
from threeam.train.prompts import (PromptSimConfig, corrective_click, initial_prompt, mask_to_box,
                                   plan_clip_prompts, sample_box, sample_clicks, simulate_correction)


def _square(h=32, w=40, y0=8, y1=20, x0=10, x1=30):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def test_mask_to_box_and_tight_box():
    m = _square()
    assert mask_to_box(m).tolist() == [10.0, 8.0, 29.0, 19.0]
    box = sample_box(m, rng=0, noise=0.0)
    assert box.points.tolist() == [[10.0, 8.0], [29.0, 19.0]]
    assert box.labels.tolist() == [2, 3]


def test_box_jitter_is_bounded_and_clamped():
    m = _square()
    for seed in range(20):
        box = sample_box(m, rng=seed, noise=0.1, noise_bound=20)
        # max jitter: 0.1 * side (19 wide, 11 high)
        delta = (box.points - torch.tensor([[10.0, 8.0], [29.0, 19.0]])).abs()
        assert (delta[:, 0] <= 1.9 + 1e-5).all() and (delta[:, 1] <= 1.1 + 1e-5).all()
    edge = torch.zeros(10, 10, dtype=torch.bool)
    edge[0:5, 0:5] = True
    for seed in range(20):
        p = sample_box(edge, rng=seed, noise=0.5).points
        assert (p >= 0).all() and (p <= 9).all()


def test_clicks_positive_inside_negative_outside():
    m = _square()
    pr = sample_clicks(m, num_positive=5, num_negative=4, rng=3)
    assert pr.labels.tolist() == [1] * 5 + [0] * 4
    for (x, y), lab in zip(pr.points.long().tolist(), pr.labels.tolist()):
        assert bool(m[y, x]) == (lab == 1)
    with pytest.raises(InputError):
        sample_clicks(torch.zeros(4, 4, dtype=torch.bool), 1, 0, rng=0)


def test_corrective_click_false_negative_is_positive_at_interior():
    gt = _square()
    pred = gt.clone()
    pred[8:20, 10:20] = False  # missed the left half: FN block rows 8..19, cols 10..19
    pr = corrective_click(gt, pred, rng=0, method="center")
    x, y = pr.points[0].long().tolist()
    assert pr.labels.tolist() == [1]
    assert gt[y, x] and not pred[y, x]
    # interior of the 12x10 FN block: distance 5 is reached only on cols 14/15, rows 12..15
    assert 12 <= y <= 15 and 14 <= x <= 15


def test_corrective_click_false_positive_is_negative_and_largest_component_wins():
    gt = _square()
    pred = gt.clone()
    pred[25:31, 2:12] = True   # FP blob of 60 px
    pred[8:10, 10:12] = False  # FN blob of 4 px
    pr = corrective_click(gt, pred, rng=1, method="center")
    x, y = pr.points[0].long().tolist()
    assert pr.labels.tolist() == [0]
    assert pred[y, x] and not gt[y, x] and 25 <= y < 31 and 2 <= x < 12
    # uniform sampling: sign always matches the region the click landed in
    for seed in range(30):
        u = corrective_click(gt, pred, rng=seed, method="uniform")
        x, y = u.points[0].long().tolist()
        assert gt[y, x] != pred[y, x]
        assert u.labels.item() == (1 if gt[y, x] else 0)


def test_corrective_click_without_error_and_empty_prediction():
    gt = _square()
    pr = corrective_click(gt, gt.clone(), rng=0)
    x, y = pr.points[0].long().tolist()
    assert pr.labels.item() == 0 and not gt[y, x]
    pr = corrective_click(gt, None, rng=0)
    x, y = pr.points[0].long().tolist()
    assert pr.labels.item() == 1 and gt[y, x]


def test_same_seed_same_prompts_and_different_seed_differs():
    gt = _square()
    pred = torch.zeros_like(gt)
    pred[0:5, 0:5] = True

    def draw(seed):
        rng = np.random.default_rng(seed)
        plan = plan_clip_prompts(8, PromptSimConfig(), rng)
        clicks = sample_clicks(gt, 3, 3, rng)
        box = sample_box(gt, rng)
        corr = simulate_correction(gt, pred, PromptSimConfig(), rng)
        return plan, clicks.points.tolist(), box.points.tolist(), corr.points.tolist()

    assert draw(7) == draw(7)
    assert any(draw(7) != draw(s) for s in range(8, 12))


def test_plan_rules():
    cfg = PromptSimConfig()
    seen_points = seen_masks = 0
    for seed in range(200):
        plan = plan_clip_prompts(8, cfg, seed)
        assert plan.init_cond_frames[0] == 0 and 1 <= len(plan.init_cond_frames) <= 2
        assert len(set(plan.init_cond_frames)) == len(plan.init_cond_frames)
        if plan.use_points:
            seen_points += 1
            assert plan.frames_to_correct[:len(plan.init_cond_frames)] == plan.init_cond_frames
            assert len(plan.frames_to_correct) <= 2
            assert set(plan.frame_kinds.values()) <= {"box", "clicks"}
        else:
            seen_masks += 1
            assert plan.frames_to_correct == [] and set(plan.frame_kinds.values()) == {"mask"}
    assert 60 < seen_points < 140 and 60 < seen_masks < 140
    masks_only = PromptSimConfig(masks_only=True)
    assert all(not plan_clip_prompts(8, masks_only, s).use_points for s in range(20))
    assert plan_clip_prompts(1, cfg, 0).use_points  # single images always use points


def test_initial_prompt_kinds():
    gt = _square()
    assert torch.equal(initial_prompt(gt, "mask", 0).mask, gt)
    box = initial_prompt(gt, "box", 0)
    assert box.kind == "box" and box.points.labels.tolist() == [2, 3]
    clicks = initial_prompt(gt, "clicks", 0)
    x, y = clicks.points.points[0].long().tolist()
    assert clicks.points.labels.item() == 1 and gt[y, x]
    assert initial_prompt(gt, "point", 0).kind == "clicks"
    with pytest.raises(InputError):
        initial_prompt(gt, "scribble", 0)
    empty = initial_prompt(torch.zeros(8, 8, dtype=torch.bool), "box", 0)
    assert empty.kind == "clicks" and empty.points.labels.item() == 0
