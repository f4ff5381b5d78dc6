"""Training and evaluation scenes never share a seed, a layout or a camera path; the scene cache
returns the frames the generator renders."""
from __future__ import annotations

import numpy as np

from threeam.data.eval_scenes import EVAL_SCENE_SETS, eval_scene_seeds
from threeam.data.scene_store import (TRAIN_SEED_BASE, cached_scene, is_train_seed, load_scene_npz,
                                      train_scene_seed)
from threeam.data.synth import generate_scene, make_layout, make_trajectory, get_synth_config
from threeam.train.clips import open_source_scenes
from threeam.train.config import apply_overrides
from threeam.train.recipes import TRAIN_PRESETS, get_train_config


def _layout_and_path(cfg, seed):
    rng = np.random.default_rng(seed)
    layout = make_layout(cfg, rng)
    from threeam.data.synth import TRAJECTORIES

    kind = cfg.trajectory if cfg.trajectory != "mixed" else TRAJECTORIES[int(rng.integers(3))]
    return layout, make_trajectory(kind, cfg.n_frames, layout, cfg, rng)


def test_default_training_seeds_lie_outside_every_evaluation_seed_range():
    eval_seeds = set(range(0, 10_000))  # `threeam eval --data synthetic:N` at its default seed 0, N < 10k
    for name in EVAL_SCENE_SETS:
        eval_seeds |= set(eval_scene_seeds(name))
    for preset in TRAIN_PRESETS:
        cfg = get_train_config(preset)
        for src in cfg.data.sources:
            for j in range(max(cfg.data.scenes_per_source, 64)):
                s = train_scene_seed(cfg.seed, src.name, j)
                assert is_train_seed(s) and s not in eval_seeds and s < 2 ** 31
    assert all(not is_train_seed(s) for s in eval_seeds)
    # training sources of one run do not share scenes with each other or with validation
    a = {train_scene_seed(0, "synthetic", j) for j in range(64)}
    b = {train_scene_seed(0, "validation", j) for j in range(64)}
    assert len(a) == 64 and not a & b


def test_training_scenes_share_no_layout_or_camera_path_with_evaluation_scenes():
    cfg = get_synth_config("lookalike")
    train = [_layout_and_path(cfg, train_scene_seed(0, "synthetic", j)) for j in range(6)]
    test = [_layout_and_path(cfg, s) for s in eval_scene_seeds("lookalike")[:6]]
    for lt, pt in train:
        for le, pe in test:
            assert not np.allclose(lt.room, le.room)
            pos_t = np.array([o.position for o in lt.objects])
            pos_e = np.array([o.position for o in le.objects])
            d = np.linalg.norm(pos_t[:, None] - pos_e[None], axis=-1)
            assert d.min() > 1e-6 or len(pos_t) != len(pos_e)
            assert not np.allclose(pt[:, :3, 3], pe[:, :3, 3])


def test_task_scenes_come_from_the_training_seed_space(tmp_path):
    cfg = apply_overrides(get_train_config("toy-ablation-3am"), ["data.scenes_per_source=2", "data.scene_frames=3",
                                                           "data.scene_height=16", "data.scene_width=16",
                                                           f"data.scene_cache={tmp_path}"])
    scenes = open_source_scenes(cfg.data.sources[0], cfg, 0)
    seeds = [int(s.meta["seed"]) for s in scenes]
    assert seeds == [train_scene_seed(0, "synthetic", j) for j in range(2)]
    assert all(s >= TRAIN_SEED_BASE for s in seeds)


def test_cache_round_trip_gives_the_generated_frames(tmp_path):
    cfg = get_synth_config("tiny", n_frames=3, height=16, width=24)
    fresh = generate_scene(cfg, seed=7)
    first = cached_scene(cfg, 7, tmp_path)
    files = list(tmp_path.rglob("*.npz"))
    assert len(files) == 1
    again = load_scene_npz(files[0])
    for scene in (first, again):
        assert len(scene) == 3 and scene.meta["seed"] == 7
        for t in range(3):
            a, b = fresh.frame(t), scene.frame(t)
            assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth)
            assert np.array_equal(a.instance_ids, b.instance_ids) and np.allclose(a.cam_to_world, b.cam_to_world)
    assert again.meta["objects"] == fresh.meta["objects"]


def test_the_confirmation_set_shares_no_scene_with_the_lookalike_set():
    confirm, gate = set(eval_scene_seeds("lookalike-confirm")), set(eval_scene_seeds("lookalike"))
    assert len(confirm) == 40 and not confirm & gate
    assert EVAL_SCENE_SETS["lookalike-confirm"].synth_preset == EVAL_SCENE_SETS["lookalike"].synth_preset
