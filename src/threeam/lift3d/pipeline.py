"""The lifting pipeline for one scene: keyframes -> proposals -> tracking -> lifting -> merging
-> confidence -> superpoint vote.

`lift_scene(scene, proposals, tracker, config)` streams over the keyframes: for each keyframe its
proposals are tracked forward over ``track_horizon`` frames (one multi-object session), each
tracked mask is eroded and lifted onto the mesh vertices with depth agreement as soon as its
frame is produced, and the frames' low-resolution masks feed the 2D temporal-overlap scores.
Memory stays bounded by the track horizon (visibility and masks of older frames are dropped).

Stage times (seconds, wall clock) are returned in `LiftResult.timings`: ``keyframes``,
``proposals`` (mask generator + filtering), ``tracking`` (time inside the tracker), ``lifting``
(visibility, erosion, vertex hits, 2D overlaps), ``merging``, ``scoring``, ``superpoints``; the
time to read frames is counted in the stage that first asks for them.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from threeam.errors import InputError
from threeam.lift3d.backproject import FrameVisibility, frame_visibility
from threeam.lift3d.config import LiftConfig
from threeam.lift3d.fragments import Fragment, Overlap2D, WindowLifter, lowres_masks
from threeam.lift3d.keyframes import select_keyframes
from threeam.lift3d.merge import Instance, merge_fragments
from threeam.lift3d.proposals import ProposalSource, filter_proposals
from threeam.lift3d.propagate import Tracker
from threeam.lift3d.scene import LiftScene
from threeam.lift3d.scoring import score_instances
from threeam.lift3d.superpoints import superpoint_vote

__all__ = ["LiftResult", "lift_scene", "STAGES"]

STAGES = ("keyframes", "proposals", "tracking", "lifting", "merging", "scoring", "superpoints")

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as keyframes are processed (stage ``"keyframes"``)."""


@dataclass
class LiftResult:
    """The instances of one scene.

    Attributes:
        scene: scene id.
        n_vertices: mesh size V.
        instances: final vertex index arrays (disjoint), by decreasing confidence.
        confidences: ``(K,)`` float64 in [0, 1].
        details: per instance: fragments, keyframes, score terms, GT ids (GT proposals).
        timings: seconds per stage (`STAGES`).
        counts: frames, keyframes, proposals, fragments, merged instances, final instances.
    """

    scene: str
    n_vertices: int
    instances: list
    confidences: np.ndarray
    details: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)

    def labels(self) -> np.ndarray:
        """``(V,)`` int64 instance number per vertex (1 .. K by rank, 0 = none)."""
        out = np.zeros(self.n_vertices, dtype=np.int64)
        for k, v in enumerate(self.instances):
            out[v] = k + 1
        return out

    def masks(self) -> np.ndarray:
        """``(K, V)`` bool."""
        m = np.zeros((len(self.instances), self.n_vertices), dtype=bool)
        for k, v in enumerate(self.instances):
            m[k, v] = True
        return m


class _Visibility:
    """Per-frame mesh visibility, computed once and dropped when no longer needed."""

    def __init__(self, scene: LiftScene, config: LiftConfig) -> None:
        self.scene = scene
        self.config = config
        self.cache: dict[int, FrameVisibility] = {}
        self.vertices = scene.mesh.vertices

    def __call__(self, t: int) -> FrameVisibility:
        vis = self.cache.get(t)
        if vis is None:
            fr = self.scene.frame(t)
            c = self.config
            if fr.depth is None or fr.cam_to_world is None:
                vis = FrameVisibility(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), fr.size,
                                      len(self.vertices))
            else:
                if fr.depth.shape != fr.size:
                    raise InputError(f"frame {fr.index} of scene {self.scene.name!r}: depth {fr.depth.shape} and "
                                     f"rgb {fr.size} differ (the scene adapter must resize to one working size)")
                vis = frame_visibility(self.vertices, fr.depth, fr.K, fr.cam_to_world, c.depth_tol_abs,
                                       c.depth_tol_rel, c.min_depth, c.max_depth)
            self.cache[t] = vis
        return vis

    def drop_before(self, t: int) -> None:
        for k in [k for k in self.cache if k < t]:
            del self.cache[k]


def lift_scene(scene: LiftScene, proposals: ProposalSource, tracker: Tracker, config: LiftConfig,
               progress: Optional[Progress] = None) -> LiftResult:
    """Lift one scene (see the module docstring).

    Args:
        scene: frames and mesh (`threeam.lift3d.scene.LiftScene`).
        proposals: keyframe -> proposals (`AMGProposals`, `GTProposals`).
        tracker: forward propagation (`PredictorTracker`, `GTTracker`).
        config: `LiftConfig`.
        progress: optional callback ``(stage, done, total)``.
    """
    if scene.mesh is None:
        raise InputError(f"scene {scene.name!r} has no mesh: 3D instances are lifted onto mesh vertices")
    V = len(scene.mesh)
    timings: dict[str, float] = defaultdict(float)
    t0 = time.perf_counter()
    keyframes = select_keyframes(scene, config)
    timings["keyframes"] += time.perf_counter() - t0
    visibility = _Visibility(scene, config)
    overlap = Overlap2D()
    fragments: list[Fragment] = []
    window_seen: dict[int, np.ndarray] = {}
    key_visible: dict[int, np.ndarray] = {}
    next_id = 0
    n_props = 0
    n = len(scene)
    for ki, k in enumerate(keyframes):
        t0 = time.perf_counter()
        frame = scene.frame(k)
        props = filter_proposals(proposals(frame), frame, config)
        timings["proposals"] += time.perf_counter() - t0
        n_props += len(props)
        t0 = time.perf_counter()
        key_visible[k] = visibility(k).mask()
        lifter = WindowLifter(k, props, next_id, config, vertices=scene.mesh.vertices)
        ids = np.arange(next_id, next_id + len(props), dtype=np.int64)
        next_id += len(props)
        timings["lifting"] += time.perf_counter() - t0
        end = min(k + config.track_horizon, n - 1)
        steps = iter(tracker.track(scene, k, end, props)) if props else iter(())
        while True:
            t0 = time.perf_counter()
            step = next(steps, None)
            timings["tracking"] += time.perf_counter() - t0
            if step is None:
                break
            t0 = time.perf_counter()
            alive = lifter.add(step, visibility(step.frame))
            if alive.any():
                overlap.add(step.frame, ids[alive], lowres_masks(step.masks[alive], config.overlap_long_side))
            timings["lifting"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        fragments += lifter.finish()
        window_seen[k] = lifter.window_seen(V)
        nxt = keyframes[ki + 1] if ki + 1 < len(keyframes) else None
        overlap.flush(nxt)
        if nxt is not None:
            visibility.drop_before(nxt)
        timings["lifting"] += time.perf_counter() - t0
        if progress is not None:
            progress("keyframes", ki + 1, len(keyframes))

    t0 = time.perf_counter()
    instances: list[Instance] = []
    if fragments:
        instances, _ = merge_fragments(fragments, V, window_seen, overlap.matrix(next_id), config)
    timings["merging"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    score_instances(instances, key_visible, config)
    timings["scoring"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    conf = np.array([i.confidence for i in instances], dtype=np.float64)
    final, kept = superpoint_vote([i.vertices for i in instances], conf, scene.mesh.superpoints, V, config)
    order = np.argsort(-conf[kept], kind="stable")[:config.max_instances] if len(kept) else np.zeros(0, np.int64)
    out_vertices = [final[j] for j in order.tolist()]
    out_conf = conf[kept][order] if len(kept) else np.zeros(0)
    details = []
    for j in order.tolist():
        inst = instances[int(kept[j])]
        details.append({"vertices": int(final[j].size), "fragments": len(inst.fragments),
                        "keyframes": [int(x) for x in inst.keyframes], "score": inst.score,
                        "stability": inst.stability, "consistency": inst.consistency, "detection": inst.detection,
                        "confidence": inst.confidence, "gt_ids": [int(g) for g in inst.gt_ids]})
    timings["superpoints"] += time.perf_counter() - t0
    counts = {"frames": n, "keyframes": len(keyframes), "proposals": n_props, "fragments": len(fragments),
              "merged": len(instances), "instances": len(out_vertices)}
    return LiftResult(scene=scene.name, n_vertices=V, instances=out_vertices, confidences=out_conf,
                      details=details, timings={s: float(timings.get(s, 0.0)) for s in STAGES}, counts=counts)
