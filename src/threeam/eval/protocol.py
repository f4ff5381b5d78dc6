"""The 3AM paper's evaluation protocol for one method on the object tracks of one sequence.

Per object (3AM, Sec. 4; see `threeam.data.eval_sequences` for how tracks are built):

1. the **conditioning frame** is the frame with the largest GT mask (earliest on ties);
2. the method gets the GT mask there as its only prompt (``add_new_mask``);
3. it tracks **forward** from the conditioning frame to the last frame and **backward** from the
   conditioning frame to frame 0;
4. every frame is scored (object present or not), except frames without annotation.

Each (object group, direction) is an independent tracking run from the conditioning frame: the
session is reset with ``reset_session`` before it (prompts, memories and every cached feature go;
3AM starts a fresh MUSt3R stream whose reference is the conditioning frame), so no method's memory
mixes the two passes and a track never depends on the other objects of the scene or on the order of
the passes. The conditioning frame's prediction is the forward pass's. Objects sharing a
conditioning frame are tracked together in one session (SAM 2 tracks objects independently and
3AM's geometry depends only on the frames visited, so this only saves backbone passes); objects
with different conditioning frames get separate sessions.

Timing: `TrackingRun.seconds` covers prompting and propagation (backbone included) and excludes
frame loading/normalisation (``init_state``) and everything after (thresholding, scoring, I/O).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from threeam.errors import InputError
from threeam.eval.metrics import TrackScores, score_track

__all__ = ["conditioning_frame", "TrackingRun", "track_objects", "score_object", "load_sequence"]


def conditioning_frame(gt, min_pixels: int = 1) -> int:
    """Index of the frame with the largest GT mask (earliest on ties).

    Args:
        gt: ``(T, H, W)`` bool masks of one object.
        min_pixels: the largest mask must have at least this many pixels.

    Raises:
        InputError: if the object is never visible (largest mask below ``min_pixels``).
    """
    g = np.asarray(gt)
    if g.ndim != 3:
        raise InputError(f"GT masks must be (T, H, W), got shape {tuple(g.shape)}")
    area = g.reshape(g.shape[0], -1).astype(bool).sum(axis=1)
    t = int(np.argmax(area)) if area.size else 0
    if area.size == 0 or area[t] < min_pixels:
        raise InputError(f"the object is never visible (largest GT mask {int(area.max()) if area.size else 0} "
                         f"pixels < {min_pixels}); it cannot be prompted")
    return t


@dataclass
class TrackingRun:
    """Predictions of one method on one sequence.

    Attributes:
        masks: ``{object_id: (T, H, W) bool}`` predicted masks (frames never reached stay empty).
        seconds: tracking time (see the module docstring).
        frames: frames processed, counted once per session and direction (the conditioning frame
            once per session).
        sessions: number of tracking sessions (groups of objects sharing a conditioning frame).
    """

    masks: dict[int, np.ndarray]
    seconds: float = 0.0
    frames: int = 0
    sessions: int = 0
    passes: list = field(default_factory=list)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def track_objects(predictor, frames, prompts: Mapping[int, tuple[int, np.ndarray]], *,
                  group_by_frame: bool = True, backward: bool = True,
                  offload_video_to_cpu: bool = False) -> TrackingRun:
    """Run one method (a `VideoPredictor`, possibly with a memory policy) on one sequence.

    Args:
        predictor: a `threeam.predictor.video_predictor.VideoPredictor` (or subclass).
        frames: ``(T, H, W, 3)`` uint8 RGB frames.
        prompts: ``{object_id: (cond_frame, mask (H, W) bool)}``.
        group_by_frame: track objects sharing a conditioning frame in one session.
        backward: also track from the conditioning frame back to frame 0.
        offload_video_to_cpu: keep the normalised frames on the CPU (``init_state`` option; saves
            GPU memory on long videos).

    Returns:
        :class:`TrackingRun` with a ``(T, H, W)`` bool prediction per object.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    t_count, h, w = frames.shape[:3]
    if not prompts:
        raise InputError("no objects to track (empty prompts)")
    groups: dict = {}
    for oid, (t0, mask) in prompts.items():
        if not 0 <= int(t0) < t_count:
            raise InputError(f"conditioning frame {t0} of object {oid} out of range 0..{t_count - 1}")
        m = np.asarray(mask, dtype=bool)
        if m.shape != (h, w):
            raise InputError(f"prompt mask of object {oid} has shape {m.shape}, frames are ({h}, {w})")
        key = int(t0) if group_by_frame else (int(t0), int(oid))
        groups.setdefault(key, []).append((int(oid), m))

    masks = {int(oid): np.zeros((t_count, h, w), dtype=bool) for oid in prompts}
    run = TrackingRun(masks=masks)
    state = predictor.init_state(frames, offload_video_to_cpu=offload_video_to_cpu) if offload_video_to_cpu \
        else predictor.init_state(frames)
    device = predictor.device
    for key, objs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        t0 = key if isinstance(key, int) else key[0]
        run.sessions += 1
        directions = [False, True] if backward and t0 > 0 else [False]
        for reverse in directions:
            _sync(device)
            start = time.perf_counter()
            reset_session(predictor, state)
            for oid, m in objs:
                predictor.add_new_mask(state, t0, oid, m)
            outputs = {}
            for t, ids, logits in predictor.propagate_in_video(state, start_frame_idx=t0, reverse=reverse,
                                                                progress=False):
                outputs[t] = (list(ids), logits > 0)
            revised = getattr(predictor, "revised_outputs", None)  # offline memory policies revise frames
            for t, logits in (revised(state) if revised is not None else {}).items():
                outputs[t] = (list(state.obj_ids), logits > 0)
            _sync(device)
            run.seconds += time.perf_counter() - start
            run.frames += len(outputs) - (1 if reverse and t0 in outputs else 0)
            run.passes.append({"cond_frame": t0, "reverse": reverse, "objects": [o for o, _ in objs],
                               "frames": len(outputs)})
            for t, (ids, binary) in outputs.items():
                if reverse and t == t0:
                    continue  # the conditioning frame comes from the forward pass
                b = binary.cpu().numpy()
                for i, oid in enumerate(ids):
                    masks[oid][t] = b[i, 0]
    reset_session(predictor, state)
    return run


def reset_session(predictor, state) -> None:
    """The full reset (`VideoPredictor.reset_session`); predictors written against the official API
    alone get their ``reset_state``."""
    full = getattr(predictor, "reset_session", None)
    (full if full is not None else predictor.reset_state)(state)


def score_object(pred: np.ndarray, gt: np.ndarray, name: str = "", unannotated: Sequence[int] = ()) -> TrackScores:
    """Score one object's ``(T, H, W)`` prediction on every annotated frame (see `score_track`)."""
    pred = np.asarray(pred, dtype=bool)
    keep = np.ones(pred.shape[0], dtype=bool)
    for t in unannotated:
        if 0 <= t < keep.size:
            keep[t] = False
    return score_track(pred, gt, name=name, frames=keep)


def load_sequence(scene) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Frames and GT of a `threeam.data.types.Scene`.

    Returns:
        ``(frames (T, H, W, 3) uint8, ids (T, H, W) int32, unannotated frame indices)``; frames
        without GT ids get an all-zero id map and are listed as unannotated.
    """
    n = len(scene)
    if n == 0:
        raise InputError(f"scene {scene.name!r} has no frames")
    rgb, ids, unknown = [], [], []
    for t in range(n):
        f = scene.frame(t)
        rgb.append(f.rgb)
        if f.instance_ids is None:
            ids.append(np.zeros(f.rgb.shape[:2], dtype=np.int32))
            unknown.append(t)
        else:
            ids.append(f.instance_ids.astype(np.int32, copy=False))
    shapes = {a.shape for a in rgb}
    if len(shapes) != 1:
        raise InputError(f"scene {scene.name!r} has frames of different sizes {sorted(shapes)}; resize them first")
    return np.stack(rgb), np.stack(ids), unknown
