"""Typed inputs and outputs of SAM 2's public tracking step (`SAM2Base.track_frame`).

One definition of the names every layer shares: the memory-bank keys (``COND`` / ``NON_COND``),
the "no object" mask logit (``NO_OBJ_SCORE``), the flattened per-frame features
(:class:`FrameFeatures`) and the result of one tracking step (:class:`TrackStepOutput`).

Shapes: B objects, M mask candidates (3 with multimask output, else 1), S the model's square
input size, C the hidden width (256 in the official models), C_mem the memory width (64).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from torch import Tensor

# memory-bank keys (official names): prompted frames and tracked frames
COND = "cond_frame_outputs"
NON_COND = "non_cond_frame_outputs"

# mask logit of an object predicted absent (and of objects without output on a frame)
NO_OBJ_SCORE = -1024.0


def empty_memory_bank() -> dict[str, dict[int, dict]]:
    """A per-object memory bank: ``{"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}``."""
    return {COND: {}, NON_COND: {}}


@dataclass
class FrameFeatures:
    """One frame's backbone features, flattened for B objects (`SAM2Base.prepare_frame_features`).

    Attributes:
        vision_feats: per level ``(H_l * W_l, B, C_l)``, highest resolution first; the last level
            is the stride-16 feature that memory attention, the memory encoder and the mask decoder
            read (the one the 3AM Feature Merger replaces).
        vision_pos_embeds: the matching positional encodings ``(H_l * W_l, B, C)``.
        feat_sizes: ``[(H_l, W_l)]``.
    """

    vision_feats: list[Tensor]
    vision_pos_embeds: list[Tensor]
    feat_sizes: list[tuple[int, int]]

    @property
    def batch_size(self) -> int:
        return int(self.vision_feats[-1].shape[1])

    def high_res_features(self) -> Optional[list[Tensor]]:
        """The stride-4/8 skips as maps ``[(B, C/8, S/4, S/4), (B, C/4, S/8, S/8)]``, or None."""
        if len(self.vision_feats) < 2:
            return None
        return [x.permute(1, 2, 0).reshape(x.size(1), x.size(2), *s)
                for x, s in zip(self.vision_feats[:-1], self.feat_sizes[:-1])]

    def pix_feat(self, hidden_dim: int) -> Tensor:
        """The stride-16 feature as a map ``(B, C, S/16, S/16)``."""
        return self.vision_feats[-1].permute(1, 2, 0).reshape(-1, hidden_dim, *self.feat_sizes[-1])


@dataclass
class TrackStepOutput:
    """Everything one tracking step of B objects produced.

    Attributes:
        multimask_logits: ``(B, M, S/4, S/4)`` float32 low-res logits of every candidate; an object
            predicted absent gets ``NO_OBJ_SCORE`` everywhere (SAM 2's object-score gating).
        multimask_logits_high_res: ``(B, M, S, S)``, bilinear upsampling of ``multimask_logits``.
        ungated_multimask_logits: ``(B, M, S/4, S/4)``, the decoder's logits before the gating
            (what a mask loss should see on frames where the object is present).
        ious: ``(B, M)`` predicted IoUs.
        candidate_obj_ptrs: ``(B, M, C)`` the object pointer each candidate would give.
        chosen: ``(B,)`` long, the candidate kept (argmax IoU with multimask output, else 0).
        pred_masks: ``(B, 1, S/4, S/4)`` logits of the chosen candidate.
        pred_masks_high_res: ``(B, 1, S, S)``.
        obj_ptr: ``(B, C)`` object pointer of the chosen candidate.
        object_score_logits: ``(B, 1)``; > 0 means present.
        maskmem_features: ``(B, C_mem, S/16, S/16)`` memory of the chosen mask, or None when the
            memory encoder did not run.
        maskmem_pos_enc: ``[(B, C_mem, S/16, S/16)]`` or None.
        point_inputs, mask_inputs: the prompts of the step (None on a tracked frame).
        multimask_output: whether the decoder gave several candidates.
    """

    multimask_logits: Tensor
    multimask_logits_high_res: Tensor
    ungated_multimask_logits: Tensor
    ious: Tensor
    candidate_obj_ptrs: Tensor
    chosen: Tensor
    pred_masks: Tensor
    pred_masks_high_res: Tensor
    obj_ptr: Tensor
    object_score_logits: Tensor
    maskmem_features: Optional[Tensor] = None
    maskmem_pos_enc: Optional[list[Tensor]] = None
    point_inputs: Optional[dict] = None
    mask_inputs: Optional[Tensor] = None
    multimask_output: bool = False

    @property
    def num_candidates(self) -> int:
        return int(self.multimask_logits.shape[1])

    def memory_entry(self) -> dict:
        """The dict a memory bank stores for this step (official key names)."""
        return {
            "point_inputs": self.point_inputs,
            "mask_inputs": self.mask_inputs,
            "pred_masks": self.pred_masks,
            "pred_masks_high_res": self.pred_masks_high_res,
            "obj_ptr": self.obj_ptr,
            "object_score_logits": self.object_score_logits,
            "maskmem_features": self.maskmem_features,
            "maskmem_pos_enc": self.maskmem_pos_enc,
        }

    def replace(self, **changes) -> "TrackStepOutput":
        return replace(self, **changes)


__all__ = ["COND", "NON_COND", "NO_OBJ_SCORE", "empty_memory_bank", "FrameFeatures", "TrackStepOutput"]
