import numpy as np
import pytest

from threeam.data.geometry import look_at
from threeam.data.sampling import (ClipSampler, SamplerConfig, fov_ratio, measure_sampler_overlap,
                                   sample_continuous_clip, sample_fov_clip)
from threeam.data.types import InMemoryScene, PosedFrame
from threeam.data.visibility import VisibilityTable
from threeam.errors import InputError


def _frame_with_object(scene, min_px=30):
    for t in range(len(scene)):
        ids = scene.instance_ids(t)
        u, c = np.unique(ids[ids > 0], return_counts=True)
        if c.size and c.max() >= min_px:
            return t, int(u[np.argmax(c)])
    raise AssertionError("no visible object")


def test_fov_ratio_self_one_opposite_zero_and_ignores_occlusion(small_scene):
    t, oid = _frame_with_object(small_scene)
    f = small_scene.frame(t)
    assert fov_ratio(f, f, oid) == pytest.approx(1.0)
    # a reference camera at the same place looking the other way sees none of it
    eye = f.cam_to_world[:3, 3]
    back = look_at(eye, eye - f.cam_to_world[:3, 2] * np.array([1, 1, 0]))
    ref = PosedFrame(f.rgb, f.depth, f.K, back, f.instance_ids)
    assert fov_ratio(f, ref, oid) == 0.0
    # occlusion is not tested: a reference whose own mask is empty (object hidden) still counts
    hidden = PosedFrame(f.rgb, f.depth, f.K, f.cam_to_world, np.zeros_like(f.instance_ids))
    assert fov_ratio(f, hidden, oid) == pytest.approx(1.0)


def test_fov_clip_respects_tau_reference_and_absent_cap(small_scene):
    cfg = SamplerConfig(n_frames=8, tau=0.25, min_ref_pixels=30)
    vis = VisibilityTable(small_scene)
    rng = np.random.default_rng(3)
    for oid in vis.objects(30)[:4]:
        clip = sample_fov_clip(small_scene, oid, cfg, rng, vis)
        ref = small_scene.frame(clip.frames[0])
        assert (ref.instance_ids == oid).sum() >= 30
        assert len(clip.frames) == 8 and len(set(clip.frames)) == 8
        assert clip.frames[1:] == sorted(clip.frames[1:])
        absent = 0
        for t in clip.frames[1:]:
            fr = small_scene.frame(t)
            if (fr.instance_ids == oid).any():
                assert fov_ratio(fr, ref, oid, max_points=10**9) > 0.2  # subsampled test > 0.25
                assert clip.fov_ratios[t] > cfg.tau
            else:
                absent += 1
        passing = {t for t, r in clip.fov_ratios.items() if r > cfg.tau}
        if absent > cfg.absent_cap:  # topped up only when too few present frames pass the FoV test
            assert passing <= set(clip.frames) and len(passing) < 7 - cfg.absent_cap
        # rejected candidates were really below tau
        assert all(r <= cfg.tau for t, r in clip.fov_ratios.items() if t not in clip.frames)


def test_fov_clip_is_deterministic(small_scene):
    cfg = SamplerConfig(min_ref_pixels=30)
    a = sample_fov_clip(small_scene, VisibilityTable(small_scene).objects(30)[0], cfg, np.random.default_rng(9))
    b = sample_fov_clip(small_scene, VisibilityTable(small_scene).objects(30)[0], cfg, np.random.default_rng(9))
    assert a.frames == b.frames


def test_continuous_clip(small_scene):
    cfg = SamplerConfig(n_frames=6, continuous_stride=2, min_ref_pixels=30)
    oid = VisibilityTable(small_scene).objects(30)[0]
    c = sample_continuous_clip(small_scene, oid, cfg, np.random.default_rng(0))
    assert np.all(np.diff(c.frames) == 2) and len(c.frames) == 6
    assert (small_scene.instance_ids(c.frames[0]) == oid).sum() >= 30


def test_continuous_clip_near_the_scene_end_runs_backwards(small_scene):
    """An object seen only in the last frames still gets a full clip (a 1-frame clip trains nothing)."""
    n = len(small_scene)

    class LastFrames:  # the object shows in the last two frames only
        def area(self, oid):
            a = np.zeros(n, np.int64)
            a[-2:] = 100
            return a

    cfg = SamplerConfig(n_frames=4, continuous_stride=2, min_ref_pixels=30)
    for seed in range(5):
        c = sample_continuous_clip(small_scene, 1, cfg, np.random.default_rng(seed), LastFrames())
        assert len(c.frames) == 4 and c.frames[0] in (n - 2, n - 1) and np.all(np.diff(c.frames) == -2)
    # a scene shorter than the clip: the longer direction
    short = SamplerConfig(n_frames=n + 5, continuous_stride=1, min_ref_pixels=30)
    c = sample_continuous_clip(small_scene, 1, short, np.random.default_rng(0), LastFrames())
    assert c.frames[0] in (n - 2, n - 1) and len(c.frames) == c.frames[0] + 1 and np.all(np.diff(c.frames) == -1)


def test_sampler_mixes_modes_and_posefree_scenes_are_continuous(small_scene):
    s = ClipSampler([small_scene], SamplerConfig(min_ref_pixels=30), seed=1)
    modes = [s.sample().mode for _ in range(100)]
    share = modes.count("fov") / len(modes)
    assert 0.65 <= share <= 0.95
    nopose = InMemoryScene("davis_like", [PosedFrame(f.rgb, None, f.K, None, f.instance_ids)
                                          for f in small_scene.frames])
    s2 = ClipSampler([nopose], SamplerConfig(min_ref_pixels=30), seed=1)
    assert {s2.sample().mode for _ in range(20)} == {"continuous"}
    with pytest.raises(InputError):
        SamplerConfig(tau=1.5)


def test_overlap_measurement_ranks_fov_over_random(small_scene):
    res = measure_sampler_overlap([small_scene], n_clips=40, cfg=SamplerConfig(min_ref_pixels=30), seed=0)
    assert set(res) == {"fov", "random", "continuous"}
    for r in res.values():
        assert 0.0 <= r["overlap_share"] <= 1.0 and r["frames"] > 0
    assert res["fov"]["mean_overlap"] > res["random"]["mean_overlap"]
    assert res["fov"]["absent_share"] < res["random"]["absent_share"]


def test_load_clip_arrays(small_scene):
    from threeam.data.sampling import load_clip

    s = ClipSampler([small_scene], SamplerConfig(min_ref_pixels=30), seed=4)
    clip = s.sample()
    data = load_clip(small_scene, clip)
    n = len(clip.frames)
    assert data.rgb.shape == (n, 64, 64, 3) and data.masks.shape == (n, 64, 64) and data.annotated.all()
    assert data.masks[0].sum() >= 30
    for k, t in enumerate(clip.frames):
        np.testing.assert_array_equal(data.masks[k], small_scene.frame(t).instance_ids == clip.object_id)
    assert data.cam_to_world.shape == (n, 4, 4) and data.depth.shape == (n, 64, 64)


def test_view_overlap_is_one_for_itself_zero_looking_away_and_tests_occlusion(small_scene):
    from threeam.data.sampling import view_overlap

    f = small_scene.frame(0)
    assert view_overlap(f, f) == pytest.approx(1.0)
    eye = f.cam_to_world[:3, 3]
    back = look_at(eye, eye - f.cam_to_world[:3, 2] * np.array([1, 1, 0]))
    assert view_overlap(f, PosedFrame(f.rgb, f.depth, f.K, back, f.instance_ids)) == 0.0
    # unlike fov_ratio, occlusion counts: a reference whose depth says "something nearer" sees nothing
    near = PosedFrame(f.rgb, f.depth * 0.5, f.K, f.cam_to_world, f.instance_ids)
    assert view_overlap(f, near) == 0.0


def test_covisible_clip_keeps_only_frames_that_overlap_the_reference(small_scene):
    from threeam.data.sampling import sample_covisible_clip, view_overlap

    cfg = SamplerConfig(n_frames=6, tau=0.5, min_ref_pixels=30)
    vis = VisibilityTable(small_scene)
    oid = vis.objects(30)[0]
    clip = sample_covisible_clip(small_scene, oid, cfg, np.random.default_rng(0), vis)
    ref = small_scene.frame(clip.frames[0])
    assert clip.mode == "covisible" and 2 <= len(clip.frames) <= 6 and clip.frames[1:] == sorted(clip.frames[1:])
    for t in clip.frames[1:]:
        assert view_overlap(small_scene.frame(t), ref, max_points=10**9) > 0.4  # subsampled test > 0.5
    assert all(r <= cfg.tau for t, r in clip.fov_ratios.items() if t not in clip.frames)
    # on the orbit, many frames do not overlap the reference (the filter is not vacuous) and none joins
    full = {t: view_overlap(small_scene.frame(t), ref, max_points=10**9) for t in range(len(small_scene))}
    far = {t for t, r in full.items() if r < 0.3}
    assert len(far) >= 5 and not far & set(clip.frames)
    again = sample_covisible_clip(small_scene, oid, cfg, np.random.default_rng(0), vis)
    assert again.frames == clip.frames
