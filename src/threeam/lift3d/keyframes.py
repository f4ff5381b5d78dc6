"""Keyframe selection: a fixed stride, or view coverage.

* ``stride``: processed frames ``0, s, 2s, ...``.
* ``coverage``: frame 0 is a keyframe; frame ``t`` becomes one when less than
  ``coverage_threshold`` of its back-projected pixels (a random sample) land inside the last
  keyframe's view with agreeing depth, i.e. when it sees enough that the last keyframe did not;
  or when ``keyframe_max_gap`` frames passed. Frames without depth or pose use the stride rule.
"""
from __future__ import annotations

from threeam.lift3d.backproject import view_coverage
from threeam.lift3d.config import LiftConfig
from threeam.lift3d.scene import LiftScene

__all__ = ["stride_keyframes", "coverage_keyframes", "select_keyframes"]


def stride_keyframes(n_frames: int, stride: int) -> list[int]:
    """``[0, stride, 2 * stride, ...]`` below ``n_frames``."""
    return list(range(0, n_frames, max(1, stride)))


def coverage_keyframes(scene: LiftScene, config: LiftConfig) -> list[int]:
    """Keyframes by view coverage (see the module docstring)."""
    keys = [0]
    for t in range(1, len(scene)):
        last = keys[-1]
        if t - last >= config.keyframe_max_gap:
            keys.append(t)
            continue
        a, b = scene.frame(t), scene.frame(last)
        if a.depth is None or b.depth is None or a.cam_to_world is None or b.cam_to_world is None:
            if t - last >= config.keyframe_stride:
                keys.append(t)
            continue
        cov = view_coverage(a.depth, a.K, a.cam_to_world, b.depth, b.K, b.cam_to_world, config.coverage_samples,
                            config.depth_tol_abs, config.depth_tol_rel, config.min_depth, config.max_depth, seed=t)
        if cov < config.coverage_threshold:
            keys.append(t)
    return keys


def select_keyframes(scene: LiftScene, config: LiftConfig) -> list[int]:
    """Processed-frame indices of the keyframes (``config.keyframe_mode``)."""
    if config.keyframe_mode == "coverage":
        return coverage_keyframes(scene, config)
    return stride_keyframes(len(scene), config.keyframe_stride)
