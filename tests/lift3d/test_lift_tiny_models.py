"""The whole pipeline with real (tiny, random-weight) models on CPU: mask generator + SAM 2 / 3AM
multi-object sessions through the public predictor API. The scores are meaningless; the wiring is not."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from threeam.lift3d.config import get_lift_config
from threeam.lift3d.pipeline import lift_scene
from threeam.lift3d.propagate import PredictorTracker, logit_stability
from threeam.lift3d.proposals import AMGProposals, Proposal
from threeam.lift3d.scene import from_synthetic
from threeam.predictor.build import build_predictor

DEBUG = Path(__file__).resolve().parents[2] / "examples" / "sam2.1_debug_256.json"
TINY = dict(keyframe_mode="stride", keyframe_stride=4, track_horizon=3, max_proposals=3, min_proposal_area=0.0,
            min_proposal_depth=0.0, amg=dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0))


def _predictor(model: str):
    if model == "3am":
        return build_predictor("3am", preset="3am_tiny", random_weights=True, progress=False)
    from threeam.models.sam2.config import load_sam2_config_file

    return build_predictor("sam2", preset=load_sam2_config_file(DEBUG), random_weights=True, progress=False)


@pytest.mark.parametrize("model", ["3am", "sam2"])
def test_tiny_models_run_the_whole_pipeline(small_scene, model):
    scene = from_synthetic(small_scene)
    cfg = get_lift_config("synthetic", **TINY)
    p = _predictor(model)
    res = lift_scene(scene, AMGProposals.from_predictor(p, **cfg.amg), PredictorTracker(p), cfg)
    assert res.counts["keyframes"] == 2 and 0 < res.counts["proposals"] <= 6
    assert res.timings["tracking"] > 0 and res.timings["proposals"] > 0
    assert len(res.instances) == len(res.confidences) == len(res.details)
    assert np.all((res.confidences >= 0) & (res.confidences <= 1))
    for v in res.instances:
        assert v.dtype == np.int64 and v.min() >= 0 and v.max() < len(scene.mesh)


class _Recorder:
    """Wraps a predictor and records the public calls the tracker makes."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name in ("init_state", "add_new_mask", "propagate_in_video", "reset_state"):
            def wrapped(*a, **k):
                self.calls.append(name)
                return attr(*a, **k)
            return wrapped
        return attr


def test_tracker_uses_one_multi_object_session_per_keyframe(small_scene):
    scene = from_synthetic(small_scene)
    rec = _Recorder(_predictor("sam2"))
    h, w = scene.frame(0).size
    masks = [np.zeros((h, w), bool) for _ in range(2)]
    masks[0][5:20, 5:20] = True
    masks[1][25:40, 30:50] = True
    steps = list(PredictorTracker(rec).track(scene, 2, 5, [Proposal(m) for m in masks]))
    assert [s.frame for s in steps] == [2, 3, 4, 5]
    assert rec.calls == ["init_state", "add_new_mask", "add_new_mask", "propagate_in_video", "reset_state"]
    assert all(s.masks.shape == (2, h, w) and s.masks.dtype == bool for s in steps)
    # on the prompted frame SAM 2 reproduces the given masks
    assert (steps[0].masks[0] & masks[0]).sum() / (steps[0].masks[0] | masks[0]).sum() > 0.8
    assert list(PredictorTracker(rec).track(scene, 0, 3, [])) == []


def test_logit_stability():
    lg = np.array([[[-5.0, 0.5, 2.0, 3.0]], [[-5.0, -5.0, -5.0, -5.0]]])
    np.testing.assert_allclose(logit_stability(lg), [2 / 3, 0.0])
