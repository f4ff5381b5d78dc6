"""Does a trained 3AM's Feature Merger read MUSt3R's geometry? The toy ablation's selection check.

At toy scale the merger either learns an offset of SAM 2's stride-16 feature that follows the
geometry MUSt3R gives it, or a near-constant offset that ignores it (docs/evidence.md); which one
depends on the seed. This check tells them apart without the evaluation set.

For each scene, frames ``0, step, 2 step, ...`` are streamed through MUSt3R (the first frame is the
reference) and encoded by SAM 2. For frame t with SAM 2 feature F2D (1, C, S/16, S/16):

* ``change(t) = ||M(F2D, G_t) - F2D|| / ||F2D||`` (how much the merger changes the feature);
* ``geometry(t) = ||M(F2D, G_t) - M(F2D, G'_t)|| / ||M(F2D, G_t) - F2D||``, where ``G'_t`` is the
  MUSt3R output of the next scene's frame (cyclically): how much the merger's offset moves when it is
  fed another room's geometry, relative to the offset (0: a constant offset; about 1 or more: the
  offset is made of the geometry). A merger that changes nothing scores 0.

`geometry_dependence` returns the means over all frames. `validation_scenes` gives the scenes to
run it on: the training split's held-out scenes of a training config (the seeds its held-out metric
uses; never evaluation seeds), so that choosing runs by it does not look at the evaluation set.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from threeam.errors import InputError

__all__ = ["GEOMETRY_THRESHOLD", "stream_scene", "frame_backbone", "geometry_dependence", "validation_scenes", "reads_geometry"]

GEOMETRY_THRESHOLD = 0.1
"""A merger "reads the geometry" when its ``geometry_dependence`` is at least this (fixed before the
runs it was applied to were evaluated; docs/evidence.md)."""


def stream_scene(model, scene, step: int = 2) -> tuple[np.ndarray, list, dict]:
    """Frames ``0, step, ...`` of ``scene`` through ``model``'s MUSt3R stream and SAM 2 image encoder:
    ``(rgb (T, H, W, 3) uint8, MUSt3R outputs per frame, SAM 2 backbone output for the T frames)``."""
    from threeam.models.must3r.session import Must3rStreamingSession
    from threeam.train.vos import encode_frames, frame_to_model_input

    if step < 1:
        raise InputError(f"frame step must be >= 1, got {step}")
    rgb = np.stack([scene.frame(t).rgb for t in range(0, len(scene), step)])
    session = Must3rStreamingSession(model.must3r, model.stream_config)
    geometry = [session.add_frame(f) for f in rgb]
    size = model.sam2.image_size
    backbone = encode_frames(model.sam2, torch.stack([frame_to_model_input(f, size) for f in rgb]))
    return rgb, geometry, backbone


def frame_backbone(backbone: dict, t: int) -> dict:
    """Frame ``t`` of a batched SAM 2 backbone output (as `stream_scene` returns it), batch dimension kept:
    every ``backbone_fpn`` level and ``vision_pos_enc`` entry sliced to ``(1, C, H_l, W_l)``."""
    return {"backbone_fpn": [f[t:t + 1] for f in backbone["backbone_fpn"]],
            "vision_pos_enc": [p[t:t + 1] for p in backbone["vision_pos_enc"]]}


@torch.no_grad()
def geometry_dependence(model, scenes: Sequence, step: int = 2) -> dict[str, Any]:
    """``{"frames", "merger_change", "geometry_dependence"}`` of a `ThreeAM` on ``scenes`` (at least two,
    so that every frame has another scene's geometry to swap in; see the module docstring)."""
    if len(scenes) < 2:
        raise InputError(f"the geometry check needs at least two scenes (one to swap in), got {len(scenes)}")
    was_training = model.training
    model.eval()
    try:
        passes = [stream_scene(model, s, step) for s in scenes]
        change, dependence = [], []
        for k, (rgb, geometry, backbone) in enumerate(passes):
            other = passes[(k + 1) % len(passes)][1]
            hw = rgb.shape[1:3]
            for t in range(len(geometry)):
                one = frame_backbone(backbone, t)
                f2d = one["backbone_fpn"][-1]
                merged = model.merge_backbone_output(one, geometry[t], hw)["backbone_fpn"][-1]
                swapped = model.merge_backbone_output(one, other[t % len(other)], hw)["backbone_fpn"][-1]
                offset = float((merged - f2d).norm())
                change.append(offset / max(float(f2d.norm()), 1e-12))
                dependence.append(float((merged - swapped).norm()) / offset if offset > 0 else 0.0)
    finally:
        model.train(was_training)
    return {"frames": len(change), "merger_change": float(np.mean(change)),
            "geometry_dependence": float(np.mean(dependence))}


def validation_scenes(train_config, n: int = 2, cache_dir: Any = None) -> list:
    """The first ``n`` held-out scenes of ``train_config``'s generated training data (its ``validation``
    seed space, `threeam.data.scene_store.train_scene_seed`), from / into ``cache_dir``."""
    from threeam.data.scene_store import cached_scene, train_scene_seed
    from threeam.train.clips import scene_seed, synthetic_scene_config

    cfg = synthetic_scene_config(train_config)
    return [cached_scene(cfg, train_scene_seed(scene_seed(train_config), "validation", j), cache_dir)
            for j in range(n)]


def reads_geometry(value: float, threshold: float = GEOMETRY_THRESHOLD) -> bool:
    """The selection rule: ``geometry_dependence >= threshold`` (False for nan)."""
    return bool(math.isfinite(value) and value >= threshold)
