"""The merger's geometry check tells an offset that follows MUSt3R's geometry from a constant one."""
from __future__ import annotations

import pytest
import torch

from threeam.data.scene_store import train_scene_seed
from threeam.errors import InputError
from threeam.experiments.geometry_check import (geometry_dependence, reads_geometry, stream_scene,
                                                validation_scenes)
from threeam.predictor.build import build_three_am_model
from threeam.train.config import apply_overrides
from threeam.train.recipes import get_train_config

SMALL = ["data.scene_frames=4", "data.scene_height=48", "data.scene_width=64"]


@pytest.fixture(scope="module")
def scenes():
    return validation_scenes(apply_overrides(get_train_config("toy-ablation-3am"), SMALL), 2)


def test_validation_scenes_are_the_training_splits_held_out_scenes(scenes):
    cfg = apply_overrides(get_train_config("toy-ablation-3am"), SMALL + ["data.scene_seed=3"])
    seeds = [train_scene_seed(3, "validation", j) for j in range(2)]
    from threeam.data.synth import generate_scene
    from threeam.train.clips import synthetic_scene_config

    first = validation_scenes(cfg, 1)[0]
    again = generate_scene(synthetic_scene_config(cfg), seed=seeds[0])
    assert (first.frame(1).rgb == again.frame(1).rgb).all()
    assert len(scenes) == 2 and len(scenes[0]) == 4


def _model(fuse_from_f2d_only: bool = False, zero: bool = False):
    torch.manual_seed(0)
    model = build_three_am_model("3am_tiny", random_weights=True, seed=1)
    last = model.merger.last_conv
    if not zero:
        with torch.no_grad():
            last.weight.normal_(0, 0.2)
            if fuse_from_f2d_only:  # the first conv reads only F2D: the offset ignores MUSt3R
                first = model.merger.fuse[0]
                first.weight[:, model.merger.config.sam_dim:] = 0
    return model


def test_identity_merger_changes_nothing_and_reads_nothing(scenes):
    r = geometry_dependence(_model(zero=True), scenes)
    assert r["frames"] == 4 and r["merger_change"] == 0 and r["geometry_dependence"] == 0
    assert not reads_geometry(r["geometry_dependence"])


def test_an_offset_made_from_sam2_features_alone_does_not_read_the_geometry(scenes):
    r = geometry_dependence(_model(fuse_from_f2d_only=True), scenes)
    assert r["merger_change"] > 1e-3
    assert r["geometry_dependence"] < 1e-5 and not reads_geometry(r["geometry_dependence"])


def test_an_offset_made_from_must3r_features_reads_the_geometry(scenes):
    model = _model()
    r = geometry_dependence(model, scenes)
    assert r["merger_change"] > 1e-3 and reads_geometry(r["geometry_dependence"])
    assert not model.training  # built in eval mode and left so
    rgb, geometry, backbone = stream_scene(model, scenes[0], step=1)
    assert rgb.shape[0] == len(geometry) == backbone["backbone_fpn"][-1].shape[0] == 4


def test_bad_inputs(scenes):
    with pytest.raises(InputError, match="at least two scenes"):
        geometry_dependence(_model(), scenes[:1])
    with pytest.raises(InputError, match="frame step"):
        stream_scene(_model(), scenes[0], step=0)
    assert not reads_geometry(float("nan"))
