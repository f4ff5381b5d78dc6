"""Memory policies: training-free trackers that keep SAM 2's tracking step and change only which
memories are attended to and which mask hypothesis is kept.

A policy is the documented per-frame step strategy of any `VideoPredictor` (plain SAM 2 or a
subclass such as the 3AM predictor): ``predictor.with_memory_policy(policy)`` (or
:func:`attach_policy`) gives a predictor whose `VideoPredictor.track_object_step` (every frame
without prompt during ``propagate_in_video``) calls ``policy.step``, which

1. builds the memory bank the model sees (a ``{"cond_frame_outputs", "non_cond_frame_outputs"}``
   view, given to SAM 2's public step `SAM2Base.track_frame` unchanged, so SAM 2's temporal
   encodings and object-pointer rules apply to whatever the view holds),
2. gets every multimask candidate of the step (:func:`candidate_step`: masks, predicted IoUs, one
   object pointer per candidate, the object score),
3. picks a candidate and encodes it into memory (:func:`candidate_output`, via
   `SAM2Base.select_candidate`), exactly as SAM 2's step would for the same candidate.

``begin_pass`` / ``end_pass`` frame each ``propagate_in_video`` call; ``end_pass`` may revise
earlier frames (offline policies), which the predictor then reports in ``revised_outputs(state)``.
Prompted frames are handled by the predictor unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from threeam.errors import InputError
from threeam.models.sam2.tracking import COND, NON_COND, FrameFeatures, TrackStepOutput
from threeam.predictor.state import InferenceState

__all__ = ["Candidates", "MemoryPolicy", "candidate_step", "candidate_output", "attach_policy",
           "sam2_memory_frames"]


@dataclass
class Candidates:
    """All mask hypotheses of one tracking step of one object (batch 1): a view of SAM 2's
    `TrackStepOutput` (run without the memory encoder) and the frame's features.

    Properties:
        low_res: ``(1, M, S/4, S/4)`` float32 mask logits (absent object: all ``NO_OBJ_SCORE``).
        high_res: ``(1, M, S, S)`` float32, bilinear upsampling of ``low_res``.
        ious: ``(M,)`` float32 predicted IoUs.
        obj_ptrs: M object pointers ``(1, C)``, one per candidate.
        object_score_logits: ``(1, 1)``; > 0 means the object is predicted present.
        best: index of SAM 2's own pick (argmax IoU; 0 with a single candidate).
    """

    step: TrackStepOutput
    features: FrameFeatures

    @property
    def low_res(self) -> torch.Tensor:
        return self.step.multimask_logits

    @property
    def high_res(self) -> torch.Tensor:
        return self.step.multimask_logits_high_res

    @property
    def ious(self) -> torch.Tensor:
        return self.step.ious[0].float()

    @property
    def obj_ptrs(self) -> list[torch.Tensor]:
        return [self.step.candidate_obj_ptrs[:, k] for k in range(self.num)]

    @property
    def object_score_logits(self) -> torch.Tensor:
        return self.step.object_score_logits

    @property
    def best(self) -> int:
        return int(self.step.chosen[0])

    @property
    def num(self) -> int:
        return self.step.num_candidates

    @property
    def present(self) -> bool:
        return bool(self.object_score_logits.item() > 0)


def candidate_step(predictor, state: InferenceState, memory: dict, frame_idx: int, reverse: bool) -> Candidates:
    """Run SAM 2's tracking step for one object on `frame_idx` against the bank view `memory`.

    Args:
        predictor: a `VideoPredictor` (its backbone-feature hook and model are used).
        memory: ``{"cond_frame_outputs": {t: out}, "non_cond_frame_outputs": {t: out}}``.

    Returns:
        :class:`Candidates`; the number M of candidates is 3 when the model uses multimask
        output for tracking (all SAM 2.1 presets), else 1.
    """
    features = predictor.frame_features(state, frame_idx, 1)
    step = predictor.model.track_frame(features, frame_idx, memory, state.num_frames, reverse=reverse,
                                       run_mem_encoder=False)
    return Candidates(step, features)


def candidate_output(predictor, state: InferenceState, cands: Candidates, k: int) -> tuple[dict, torch.Tensor]:
    """Encode candidate `k` into memory and pack it as the predictor stores outputs.

    Returns ``(compact_out, pred_masks)`` as `VideoPredictor.pack_output`: memory as bfloat16 on
    the storage device, ``pred_masks`` ``(1, 1, S/4, S/4)`` logits.
    """
    out = predictor.model.select_candidate(cands.features, cands.step, k, run_mem_encoder=True)
    return predictor.pack_output(state, out)


def sam2_memory_frames(model, frame_idx: int, available, reverse: bool = False) -> list[int]:
    """The non-conditioning frames SAM 2 itself would attend to on `frame_idx` (spatial memories),
    given the frames `available` in the bank; sorted ascending."""
    from threeam.models.sam2.sam2_base import memory_frame_indices

    stride = model.memory_temporal_stride_for_eval
    avail = set(available)
    return sorted(t for _, t in memory_frame_indices(frame_idx, model.num_maskmem, stride, reverse) if t in avail)


class MemoryPolicy:
    """Base class of memory policies (one instance serves one predictor; state is per object index).

    Subclasses implement :meth:`step`; :meth:`begin_pass` / :meth:`end_pass` frame one
    ``propagate_in_video`` call. ``memory_trace[obj_idx][frame_idx]`` records, for every tracked
    frame, the source frames of the spatial memories used: ``{"cond": [...], "recent": [...]}``.
    """

    name = "policy"

    def __init__(self) -> None:
        self.memory_trace: dict[int, dict[int, dict[str, list[int]]]] = {}
        self.reverse = False

    def begin_pass(self, predictor, state: InferenceState, reverse: bool) -> None:
        """Called before the first tracked frame of a pass (each pass starts a fresh policy state)."""
        self.reverse = reverse
        self.memory_trace = {}

    def end_pass(self, predictor, state: InferenceState) -> dict[int, dict[int, dict]]:
        """Called after the last frame; returns revised outputs ``{obj_idx: {frame_idx: compact_out}}``
        for offline policies whose final answer changes earlier frames (default: none)."""
        return {}

    def step(self, predictor, state: InferenceState, obj_idx: int, bank: dict, frame_idx: int,
             reverse: bool) -> tuple[dict, torch.Tensor]:
        """Track one object on one frame; returns ``(compact_out, pred_masks)``."""
        raise NotImplementedError

    def _trace(self, obj_idx: int, frame_idx: int, cond: list[int], recent: list[int]) -> None:
        self.memory_trace.setdefault(obj_idx, {})[frame_idx] = {"cond": sorted(cond), "recent": sorted(recent)}


def attach_policy(predictor, policy: MemoryPolicy):
    """A copy of `predictor` (same model and options, any `VideoPredictor` subclass) whose tracking
    steps follow `policy` (``predictor.with_memory_policy(policy)``). The original is unchanged."""
    from threeam.predictor.video_predictor import VideoPredictor

    if not isinstance(predictor, VideoPredictor):
        raise InputError(f"attach_policy needs a VideoPredictor, got {type(predictor).__name__}")
    return predictor.with_memory_policy(policy)


def bank_view(cond: dict, non_cond: dict) -> dict:
    """A memory-bank view ``{"cond_frame_outputs": cond, "non_cond_frame_outputs": non_cond}``."""
    return {COND: cond, NON_COND: non_cond}


def any_value(d: dict) -> Any:
    return next(iter(d.values())) if d else None
