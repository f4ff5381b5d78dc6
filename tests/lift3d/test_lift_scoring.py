"""Ranking confidence: its terms, and that it ranks real objects above spurious masks (AP rewards it)."""
from __future__ import annotations

import numpy as np
import pytest

from threeam.eval.instance_ap import evaluate_instances
from threeam.lift3d.config import get_lift_config
from threeam.lift3d.merge import Instance
from threeam.lift3d.pipeline import lift_scene
from threeam.lift3d.proposals import GTProposals, Proposal
from threeam.lift3d.propagate import GTTracker, TrackStep
from threeam.lift3d.scoring import detection_rate, instance_confidence


def test_detection_rate_counts_the_keyframes_that_saw_it():
    V = 20
    verts = np.arange(10)
    full = np.zeros(V, bool)
    full[:10] = True
    little = np.zeros(V, bool)
    little[:2] = True
    kv = {0: full, 4: full, 8: little}
    assert detection_rate(verts, [0], kv, 0.5) == 0.5          # saw: 0 and 4 (8 sees 20% of the best)
    assert detection_rate(verts, [0, 4], kv, 0.5) == 1.0
    assert detection_rate(verts, [0, 8], kv, 0.5) == pytest.approx(2 / 3)  # proposing counts as seeing
    assert detection_rate(verts, [0], kv, 0.1) == pytest.approx(1 / 3)


def test_confidence_is_the_product_of_the_configured_terms():
    inst = Instance(vertices=np.arange(200), fragments=[0], keyframes=[0], score=0.9, stability=0.8,
                    consistency=0.5, detection=0.25)
    cfg = get_lift_config("paper")
    assert instance_confidence(inst, cfg) == pytest.approx(0.9 * 0.8 * 0.5 * 0.25)
    assert instance_confidence(inst, cfg.replace(confidence_terms=("score",))) == pytest.approx(0.9)
    with_size = cfg.replace(confidence_terms=("size",), size_scale=200.0)
    assert instance_confidence(inst, with_size) == pytest.approx(1 - np.exp(-1.0))
    assert instance_confidence(inst, cfg.replace(confidence_terms=())) == 1.0


class _WithSpurious:
    """GT proposals plus one spurious box per keyframe with the same (perfect) 2D scores."""

    def __init__(self):
        self.gt = GTProposals()
        self.rng = np.random.default_rng(0)

    def __call__(self, frame):
        props = self.gt(frame)
        h, w = frame.size
        m = np.zeros((h, w), bool)
        y, x = int(self.rng.integers(0, h // 2)), int(self.rng.integers(0, w // 2))
        m[y:y + h // 3, x:x + w // 3] = True
        return props + [Proposal(mask=m, score=1.0, stability=1.0, gt_id=None)]


class _FixedBoxTracker:
    """GT tracks for GT proposals; a spurious box stays where it is in the image (it follows nothing)."""

    def track(self, scene, start, end, proposals):
        gt = [p for p in proposals if p.gt_id is not None]
        gt_steps = GTTracker().track(scene, start, end, gt)
        for step in gt_steps:
            masks, stab, j = [], [], 0
            for p in proposals:
                if p.gt_id is None:
                    masks.append(p.mask)
                    stab.append(1.0)
                else:
                    masks.append(step.masks[j])
                    stab.append(step.stability[j])
                    j += 1
            yield TrackStep(step.frame, np.stack(masks), np.array(stab))


def test_confidence_ranks_objects_above_spurious_masks(gt_scenes):
    cfg = get_lift_config("synthetic")
    n_spurious = 0
    for scene in gt_scenes:
        res = lift_scene(scene, _WithSpurious(), _FixedBoxTracker(), cfg)
        is_obj = np.array([len(d["gt_ids"]) > 0 for d in res.details])
        assert is_obj.any()
        n_spurious += int((~is_obj).sum())
        if (~is_obj).any():
            # every instance made only of spurious boxes ranks below every real object
            assert res.confidences[is_obj].min() > res.confidences[~is_obj].max()
    assert n_spurious > 0, "the spurious boxes must survive as instances for this test to mean anything"


class _HiddenAsBoxes:
    """GT proposals, except that every third object is proposed as its bounding box (no GT id)."""

    def __init__(self):
        self.gt = GTProposals()

    def __call__(self, frame):
        out = []
        for p in self.gt(frame):
            if p.gt_id % 3:
                out.append(p)
                continue
            ys, xs = np.nonzero(p.mask)
            box = np.zeros_like(p.mask)
            box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
            out.append(Proposal(mask=box, gt_id=None))
        return out


def test_ap_rewards_the_ranking_over_constant_confidences(gt_scenes):
    cfg = get_lift_config("synthetic")
    gts, real, ones = {}, {}, {}
    for scene in gt_scenes:
        res = lift_scene(scene, _HiddenAsBoxes(), _FixedBoxTracker(), cfg)
        gts[scene.name] = scene.mesh.gt_ids
        labels = np.ones(len(res.instances), dtype=np.int64)
        real[scene.name] = (res.masks(), labels, res.confidences)
        ones[scene.name] = (res.masks(), labels, np.ones(len(res.instances)))
    ap_real, ap_ones = evaluate_instances(gts, real), evaluate_instances(gts, ones)
    assert ap_real.ap50 > ap_ones.ap50 and ap_real.ap > ap_ones.ap
