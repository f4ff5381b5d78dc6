"""Training clips of the generated sources (`threeam.train.clips.ClipDrawer`): the sampler and
stride options reach the clips, and a clip is a pure function of (seed, source, index)."""
from __future__ import annotations

import numpy as np
import pytest

from threeam.errors import InputError
from threeam.train.clips import ClipDrawer, open_source_scenes
from threeam.train.config import apply_overrides
from threeam.train.recipes import get_train_config

SMALL = ["data.scenes_per_source=1", "data.scene_frames=16", "data.scene_height=48", "data.scene_width=64",
         "data.frames_per_clip=4", "data.min_present_frac=0"]


def _drawer(*overrides):
    cfg = apply_overrides(get_train_config("must3r-pretrain-synthetic"), SMALL + list(overrides))
    src = cfg.data.sources[0]
    return ClipDrawer(open_source_scenes(src, cfg, 0), src, cfg, seed=cfg.seed)


def test_continuous_clips_follow_the_configured_stride():
    dr = _drawer("data.sources.synthetic.fov_prob=0", "data.continuous_stride=3")
    for i in range(4):
        clip, data, _ = dr.clip(i)
        assert clip.mode == "continuous"
        # forwards, or backwards where the object shows only near the scene end (never cut short)
        assert np.all(np.abs(np.diff(clip.frames)) == 3) and len(set(np.sign(np.diff(clip.frames)))) == 1
        assert data.rgb.shape[0] == len(clip.frames) == dr.config.data.frames_per_clip


def test_covisible_sampler_is_selectable_and_deterministic():
    dr = _drawer("data.sources.synthetic.fov_prob=1", "data.sources.synthetic.sampler=covisible", "data.fov_tau=0.3")
    clips = [dr.clip(i)[0] for i in range(3)]
    assert all(c.mode == "covisible" for c in clips)
    assert all(all(c.fov_ratios[t] > 0.3 for t in c.frames[1:]) for c in clips)
    assert [c.frames for c in clips] == [dr.clip(i)[0].frames for i in range(3)]


def test_bad_stride_and_sampler_are_refused():
    with pytest.raises(InputError, match="continuous_stride"):
        _drawer("data.continuous_stride=0")
    with pytest.raises(InputError, match="sampler"):
        _drawer("data.sources.synthetic.sampler=nearest")
