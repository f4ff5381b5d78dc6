"""The pipeline check: with GT 2D masks in place of the mask generator and the tracker, lifting,
merging, the superpoint vote and the benchmark's AP reach AP50 >= 0.95 on generated scenes."""
from __future__ import annotations

import numpy as np
import pytest

from threeam.eval.instance_ap import evaluate_instances, gt_instances
from threeam.lift3d.config import get_lift_config
from threeam.lift3d.keyframes import select_keyframes, stride_keyframes
from threeam.lift3d.pipeline import STAGES, lift_scene
from threeam.lift3d.proposals import GTProposals
from threeam.lift3d.propagate import GTTracker
from threeam.lift3d.scene import LiftScene, from_synthetic

from lift_scenes import make_scene


def _run(scenes, cfg):
    gts, preds, results = {}, {}, []
    for scene in scenes:
        res = lift_scene(scene, GTProposals(), GTTracker(), cfg)
        results.append(res)
        gts[scene.name] = scene.mesh.gt_ids
        preds[scene.name] = (res.masks(), np.ones(len(res.instances), dtype=np.int64), res.confidences)
    return evaluate_instances(gts, preds), results


def test_gt_masks_reach_ap50_095(gt_scenes):
    ap, results = _run(gt_scenes, get_lift_config("synthetic"))
    n_gt = sum(sum(1 for g in gt_instances(s.mesh.gt_ids) if g["vertices"] >= 100) for s in gt_scenes)
    assert n_gt >= 25  # enough objects for the number to mean something
    assert ap.ap50 >= 0.95, ap.summary()
    assert ap.ap25 >= ap.ap50 >= ap.ap
    for res in results:
        assert set(res.timings) == set(STAGES) and all(v >= 0 for v in res.timings.values())
        flat = np.concatenate(res.instances)
        assert len(flat) == len(np.unique(flat))  # disjoint instances
        assert np.all(np.diff(res.confidences) <= 0) and np.all((res.confidences > 0) & (res.confidences <= 1))
        # each instance is one object: its fragments carry one GT id
        assert all(len(d["gt_ids"]) == 1 for d in res.details)


def test_without_merging_or_lifting_checks_the_scores_drop(gt_scenes):
    """The same run with broken parts must score lower (the AP50 test can fail)."""
    base, _ = _run(gt_scenes[:2], get_lift_config("synthetic"))
    # a depth tolerance of 0 lifts (almost) no vertex: instances shrink below the benchmark's size
    no_lift, _ = _run(gt_scenes[:2], get_lift_config("synthetic", depth_tol_abs=0.0))
    assert no_lift.ap50 < base.ap50
    # every merge refused and duplicates kept: one object becomes several predictions
    no_merge, res = _run(gt_scenes[:2], get_lift_config("synthetic", merge_iou=1.0, merge_precision=1.0,
                                                    merge_iou_no_shared=1.0, min_kept_fraction=0.0,
                                                    superpoint_vote=1.0))
    assert no_merge.ap < base.ap


def test_stride_keyframes_and_frame_skip():
    assert stride_keyframes(10, 4) == [0, 4, 8]
    scene = from_synthetic(make_scene(5, height=48, width=64, frames=12), frame_skip=2)
    assert len(scene) == 6 and scene.raw_indices == [0, 2, 4, 6, 8, 10]
    assert scene.frame(1).index == 2
    cfg = get_lift_config("synthetic", keyframe_mode="stride", keyframe_stride=4)
    assert select_keyframes(scene, cfg) == [0, 4]


def test_coverage_keyframes_follow_the_view_change():
    scene = from_synthetic(make_scene(0, height=48, width=64, frames=16))  # an orbit: the view keeps turning
    cfg = get_lift_config("synthetic", keyframe_mode="coverage", keyframe_max_gap=100)
    keys = select_keyframes(scene, cfg)
    assert keys[0] == 0 and len(keys) > 3
    # a static camera: frames fully covered by the last keyframe -> only the gap rule adds keyframes
    first = scene.frame(0)
    static = LiftScene("static", 9, lambda i: first, scene.mesh)
    assert select_keyframes(static, cfg.replace(keyframe_max_gap=4)) == [0, 4, 8]


def test_scene_without_mesh_or_gt_masks_fails_clearly(gt_scenes):
    from threeam.errors import InputError

    s = gt_scenes[0]
    no_mesh = LiftScene("x", 2, s.frame, None)
    with pytest.raises(InputError, match="no mesh"):
        lift_scene(no_mesh, GTProposals(), GTTracker(), get_lift_config("synthetic"))


@pytest.mark.slow
def test_gt_masks_reach_ap50_095_on_ten_larger_scenes():
    """Ten scenes of the ``small`` preset (128x128, 48 frames, up to 20 objects; orbit, walk, turn)."""
    import torch

    from threeam.data.synth import generate_scene, get_synth_config

    torch.set_num_threads(1)
    scenes = [from_synthetic(generate_scene(get_synth_config("small"), seed=s)) for s in range(10)]
    ap, _ = _run(scenes, get_lift_config("synthetic"))
    assert ap.ap50 >= 0.95, ap.summary()


@pytest.mark.slow
def test_gt_masks_with_the_paper_preset_at_scannet_resolution():
    """480x640 frames, a dense mesh (2 cm), the paper preset (2-px erosion, stride keyframes)."""
    import torch

    from threeam.data.synth import generate_scene, get_synth_config
    from threeam.data.synth_scannet import synth_scannet_mesh

    torch.set_num_threads(1)
    raw = generate_scene(get_synth_config("default", height=480, width=640, n_frames=60), seed=1)
    scene = from_synthetic(raw, mesh=synth_scannet_mesh(raw, object_spacing=0.02, room_spacing=0.05))
    ap, _ = _run([scene], get_lift_config("paper", frame_skip=1))
    assert ap.ap50 >= 0.95, ap.summary()
    pure, _ = _run([scene], get_lift_config("paper", frame_skip=1, band_radius=0.0))
    assert pure.ap < ap.ap  # erosion without the band rule cuts the rims
