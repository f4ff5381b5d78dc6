"""Forward propagation of a keyframe's masks: the `Tracker` seam.

`PredictorTracker` runs one multi-object session per keyframe with the video predictor's public
API (SAM 2 or 3AM from `threeam.predictor.build.build_predictor`): ``init_state`` on the window
of frames ``[keyframe, keyframe + horizon]``, one ``add_new_mask`` per proposal on the keyframe,
``propagate_in_video`` forward, ``reset_state``. A fresh session per keyframe keeps memory bounded
and, for 3AM, makes the keyframe MUSt3R's reference frame.

`GTTracker` follows each proposal's GT instance id through the frames' GT masks instead (the
pipeline check of docs/lift3d.md).

Per frame and object the tracker also reports a *stability* in [0, 1]: the ratio of the areas
above +1 and above -1 of the mask logits (the automatic mask generator's stability score with
offset 1); a mask that is sure of its boundary scores near 1. GT masks score 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Protocol, runtime_checkable

import numpy as np

from threeam.errors import InputError
from threeam.lift3d.proposals import Proposal
from threeam.lift3d.scene import LiftScene

__all__ = ["TrackStep", "Tracker", "GTTracker", "PredictorTracker", "logit_stability"]


@dataclass
class TrackStep:
    """The tracked masks on one frame.

    Attributes:
        frame: processed frame index.
        masks: ``(N, H, W)`` bool, one per proposal (in proposal order).
        stability: ``(N,)`` float per-object stability on this frame (0 for an empty mask).
    """

    frame: int
    masks: np.ndarray
    stability: np.ndarray


@runtime_checkable
class Tracker(Protocol):
    """``track(scene, start, end, proposals)`` yields a `TrackStep` for each frame ``start..end``
    (inclusive; ``start`` is the keyframe the proposals were made on)."""

    def track(self, scene: LiftScene, start: int, end: int, proposals: list[Proposal]) -> Iterator[TrackStep]: ...


def logit_stability(logits: np.ndarray, offset: float = 1.0) -> np.ndarray:
    """``(N, H, W)`` logits -> ``(N,)`` area(logit > offset) / area(logit > -offset) (0 when empty)."""
    flat = logits.reshape(logits.shape[0], -1)
    hi = (flat > offset).sum(1)
    lo = (flat > -offset).sum(1)
    return np.where(lo > 0, hi / np.maximum(lo, 1), 0.0).astype(np.float64)


class GTTracker:
    """Masks of each proposal's GT id on the following frames (needs ``frame.gt_ids``)."""

    def track(self, scene: LiftScene, start: int, end: int, proposals: list[Proposal]) -> Iterator[TrackStep]:
        ids = np.array([-1 if p.gt_id is None else p.gt_id for p in proposals], dtype=np.int64)
        if (ids < 0).any():
            raise InputError("the GT tracker follows GT ids: use it with GT proposals")
        for t in range(start, end + 1):
            fr = scene.frame(t)
            if fr.gt_ids is None:
                raise InputError(f"frame {t} of scene {scene.name!r} has no GT instance masks for the GT tracker")
            masks = fr.gt_ids[None] == ids[:, None, None]
            yield TrackStep(t, masks, masks.any(axis=(1, 2)).astype(np.float64))


class PredictorTracker:
    """Propagation with a SAM 2 / 3AM video predictor (public session API only).

    Args:
        predictor: from `threeam.predictor.build.build_predictor`.
        offload_video_to_cpu: keep the window's normalised frames on the CPU.
    """

    def __init__(self, predictor: Any, offload_video_to_cpu: bool = False) -> None:
        for name in ("init_state", "add_new_mask", "propagate_in_video", "reset_state"):
            if not hasattr(predictor, name):
                raise InputError(f"the tracker needs a video predictor with {name}(); got {type(predictor).__name__}")
        self.predictor = predictor
        self.offload_video_to_cpu = offload_video_to_cpu

    def track(self, scene: LiftScene, start: int, end: int, proposals: list[Proposal]) -> Iterator[TrackStep]:
        if not proposals:
            return
        frames = np.stack([scene.frame(t).rgb for t in range(start, end + 1)])
        p = self.predictor
        state = p.init_state(frames, offload_video_to_cpu=self.offload_video_to_cpu)
        try:
            for j, prop in enumerate(proposals):
                p.add_new_mask(state, frame_idx=0, obj_id=j + 1, mask=prop.mask)
            for idx, obj_ids, logits in p.propagate_in_video(state, start_frame_idx=0,
                                                            max_frame_num_to_track=end - start, progress=False):
                lg = logits[:, 0].float().cpu().numpy()
                order = [obj_ids.index(j + 1) for j in range(len(proposals))]
                lg = lg[order]
                yield TrackStep(start + int(idx), lg > 0, logit_stability(lg))
        finally:
            p.reset_state(state)
            del state
