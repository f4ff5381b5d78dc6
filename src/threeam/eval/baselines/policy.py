"""Memory policies: training-free trackers that keep SAM 2's tracking step and change only which
memories are attended to and which mask hypothesis is kept.

A policy plugs into any `VideoPredictor` (plain SAM 2 or a subclass such as the 3AM predictor)
through :func:`attach_policy`. Prompted frames are handled by the predictor unchanged; every
*tracking* step (a frame without prompt during ``propagate_in_video``) is handed to the policy,
which

1. builds the memory bank the model sees (a ``{"cond_frame_outputs", "non_cond_frame_outputs"}``
   view, passed to `SAM2Base._prepare_memory_conditioned_features` unchanged, so SAM 2's temporal
   encodings and object-pointer rules apply to whatever the view holds),
2. gets every multimask candidate of the mask decoder (:func:`candidate_step`: masks, predicted
   IoUs, one object pointer per candidate, the object score),
3. picks a candidate and encodes it into memory (:func:`candidate_output`), exactly as SAM 2's
   `track_step` would for the same candidate.

Hook used: the predictor's ``_run_single_frame_inference`` (overridden for tracking steps only)
and ``propagate_in_video`` (to start/end a pass). A public "tracking step" hook on the predictor
(memory view in, chosen candidate out) would make this cleaner.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from threeam.errors import InputError
from threeam.predictor.postprocess import fill_holes_in_mask_scores
from threeam.predictor.state import COND, NON_COND, InferenceState

__all__ = ["Candidates", "MemoryPolicy", "candidate_step", "candidate_output", "attach_policy",
           "sam2_memory_frames", "PolicyPredictorMixin"]


@dataclass
class Candidates:
    """All mask hypotheses of one tracking step of one object (batch 1).

    Attributes:
        low_res: ``(1, M, S/4, S/4)`` float32 mask logits (absent object: all ``NO_OBJ_SCORE``).
        high_res: ``(1, M, S, S)`` float32, bilinear upsampling of ``low_res``.
        ious: ``(M,)`` float32 predicted IoUs.
        obj_ptrs: M object pointers ``(1, C)``, one per candidate.
        object_score_logits: ``(1, 1)``; > 0 means the object is predicted present.
        best: index of SAM 2's own pick (argmax IoU; 0 with a single candidate).
        vision_feats, feat_sizes: the frame's flattened backbone features (for the memory encoder).
    """

    low_res: torch.Tensor
    high_res: torch.Tensor
    ious: torch.Tensor
    obj_ptrs: list
    object_score_logits: torch.Tensor
    best: int
    vision_feats: list
    feat_sizes: list

    @property
    def num(self) -> int:
        return int(self.low_res.shape[1])

    @property
    def present(self) -> bool:
        return bool(self.object_score_logits.item() > 0)


def _candidate_heads(model, pix_feat: torch.Tensor, high_res_features, multimask: bool):
    """The SAM heads of a tracking step (no prompt), keeping every candidate and its pointer.

    Mirrors `SAM2Base._forward_sam_heads` without point/mask inputs (same operations, so the
    candidate SAM 2 picks comes out bit-identical).
    """
    b = pix_feat.size(0)
    device = pix_feat.device
    coords = torch.zeros(b, 1, 2, device=device)
    labels = -torch.ones(b, 1, dtype=torch.int32, device=device)
    sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    low, ious, tokens, obj_logits = model.sam_mask_decoder(
        image_embeddings=pix_feat, image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
        repeat_image=False, high_res_features=high_res_features)
    if model.pred_obj_scores:
        appearing = obj_logits > 0
        low = torch.where(appearing[:, None, None], low, torch.full_like(low, -1024.0))
    low = low.float()
    high = F.interpolate(low, size=(model.image_size, model.image_size), mode="bilinear", align_corners=False)
    rows = torch.arange(b, device=device)
    ptrs = []
    for k in range(low.shape[1]):
        token = tokens[:, 0]
        if multimask and tokens.size(1) > 1:
            token = tokens[rows, torch.full_like(rows, k)]
        ptr = model.obj_ptr_proj(token)
        if model.pred_obj_scores:
            lam = obj_logits.sigmoid() if model.soft_no_obj_ptr else appearing.float()
            if model.fixed_no_obj_ptr:
                ptr = lam * ptr
            ptr = ptr + (1 - lam) * model.no_obj_ptr
        ptrs.append(ptr)
    best = int(torch.argmax(ious, dim=-1)[0]) if multimask else 0
    return low, high, ious[0].float(), ptrs, obj_logits, best


def candidate_step(predictor, state: InferenceState, memory: dict, frame_idx: int, reverse: bool) -> Candidates:
    """Run SAM 2's tracking step for one object on `frame_idx` against the bank view `memory`.

    Args:
        predictor: a `VideoPredictor` (its backbone-feature hook and model are used).
        memory: ``{"cond_frame_outputs": {t: out}, "non_cond_frame_outputs": {t: out}}``.

    Returns:
        :class:`Candidates`; the number M of candidates is 3 when the model uses multimask
        output for tracking (all SAM 2.1 presets), else 1.
    """
    model = predictor.model
    _, _, feats, pos, sizes = predictor._get_image_feature(state, frame_idx, 1)
    if len(feats) > 1:
        high_res_features = [x.permute(1, 2, 0).reshape(x.size(1), x.size(2), *s) for x, s in zip(feats[:-1], sizes[:-1])]
    else:
        high_res_features = None
    pix = model._prepare_memory_conditioned_features(
        frame_idx=frame_idx, is_init_cond_frame=False, current_vision_feats=feats[-1:],
        current_vision_pos_embeds=pos[-1:], feat_sizes=sizes[-1:], output_dict=memory,
        num_frames=state.num_frames, track_in_reverse=reverse)
    multimask = model._use_multimask(False, None)
    low, high, ious, ptrs, obj_logits, best = _candidate_heads(model, pix, high_res_features, multimask)
    return Candidates(low, high, ious, ptrs, obj_logits, best, feats, sizes)


def candidate_output(predictor, state: InferenceState, cands: Candidates, k: int) -> tuple[dict, torch.Tensor]:
    """Encode candidate `k` into memory and pack it as the predictor stores outputs.

    Returns ``(compact_out, pred_masks)`` as `VideoPredictor._run_single_frame_inference`:
    memory as bfloat16 on the storage device, ``pred_masks`` ``(1, 1, S/4, S/4)`` logits.
    """
    model = predictor.model
    if not 0 <= k < cands.num:
        raise InputError(f"candidate index {k} out of range 0..{cands.num - 1}")
    low = cands.low_res[:, k:k + 1]
    high = cands.high_res[:, k:k + 1]
    if model.num_maskmem > 0:
        feats, pos = model._encode_new_memory(current_vision_feats=cands.vision_feats, feat_sizes=cands.feat_sizes,
                                              pred_masks_high_res=high, object_score_logits=cands.object_score_logits,
                                              is_mask_from_pts=False)
        feats = feats.to(torch.bfloat16).to(state.storage_device, non_blocking=True)
    else:
        feats, pos = None, None
    pred = low
    if predictor.fill_hole_area > 0:
        pred = fill_holes_in_mask_scores(pred, predictor.fill_hole_area)
    compact = {
        "maskmem_features": feats,
        "maskmem_pos_enc": predictor._get_maskmem_pos_enc(state, {"maskmem_pos_enc": pos}),
        "pred_masks": pred.to(state.storage_device, non_blocking=True),
        "obj_ptr": cands.obj_ptrs[k],
        "object_score_logits": cands.object_score_logits,
    }
    return compact, pred


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


class PolicyPredictorMixin:
    """Mixed in front of a `VideoPredictor` class by :func:`attach_policy`."""

    policy: MemoryPolicy

    def propagate_in_video(self, inference_state, start_frame_idx=None, max_frame_num_to_track=None,
                           reverse: bool = False, progress=None) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        self.policy.begin_pass(self, inference_state, reverse)
        self._revised = {}
        yield from super().propagate_in_video(inference_state, start_frame_idx=start_frame_idx,
                                              max_frame_num_to_track=max_frame_num_to_track, reverse=reverse,
                                              progress=progress)
        with torch.inference_mode():
            revised = self.policy.end_pass(self, inference_state) or {}
            frames = set()
            for obj_idx, outs in revised.items():
                bank = inference_state.output_dict_per_obj[obj_idx][NON_COND]
                for t, out in outs.items():
                    if bank.get(t) is not out:
                        bank[t] = out
                        frames.add(t)
            self._revised = {t: self._frame_masks(inference_state, t) for t in sorted(frames)}

    def revised_outputs(self, inference_state) -> dict[int, torch.Tensor]:
        """Frames whose final masks differ from what the last pass yielded (offline policies):
        ``{frame_idx: video-res mask logits (num_objects, 1, H, W)}``."""
        return dict(getattr(self, "_revised", {}))

    def _frame_masks(self, state: InferenceState, frame_idx: int) -> torch.Tensor:
        consolidated = self._consolidate_temp_output_across_obj(state, frame_idx, is_cond=False)
        _, video_res = self._get_orig_video_res_output(state, consolidated["pred_masks"])
        return video_res

    def _run_single_frame_inference(self, inference_state, output_dict, frame_idx, batch_size, is_init_cond_frame,
                                    point_inputs, mask_inputs, reverse, run_mem_encoder, prev_sam_mask_logits=None):
        tracking = (not is_init_cond_frame and point_inputs is None and mask_inputs is None and run_mem_encoder
                    and prev_sam_mask_logits is None and batch_size == 1)
        obj_idx = None
        if tracking:
            obj_idx = next((i for i, d in inference_state.output_dict_per_obj.items() if d is output_dict), None)
        if obj_idx is None:
            return super()._run_single_frame_inference(inference_state, output_dict, frame_idx, batch_size,
                                                       is_init_cond_frame, point_inputs, mask_inputs, reverse,
                                                       run_mem_encoder, prev_sam_mask_logits)
        return self.policy.step(self, inference_state, obj_idx, output_dict, frame_idx, reverse)


_CLASSES: dict[type, type] = {}


def attach_policy(predictor, policy: MemoryPolicy):
    """A copy of `predictor` (same model and options, any `VideoPredictor` subclass) whose tracking
    steps follow `policy`. The original predictor is left unchanged.
    """
    from threeam.predictor.video_predictor import VideoPredictor

    if not isinstance(predictor, VideoPredictor):
        raise InputError(f"attach_policy needs a VideoPredictor, got {type(predictor).__name__}")
    if not isinstance(policy, MemoryPolicy):
        raise InputError(f"policy must be a MemoryPolicy, got {type(policy).__name__}")
    base = type(predictor)
    if issubclass(base, PolicyPredictorMixin):
        raise InputError("this predictor already has a memory policy")
    cls = _CLASSES.get(base)
    if cls is None:
        cls = type(f"Policy{base.__name__}", (PolicyPredictorMixin, base), {})
        _CLASSES[base] = cls
    out = cls.__new__(cls)
    out.__dict__.update(predictor.__dict__)
    out.policy = policy
    return out


def bank_view(cond: dict, non_cond: dict) -> dict:
    """A memory-bank view ``{"cond_frame_outputs": cond, "non_cond_frame_outputs": non_cond}``."""
    return {COND: cond, NON_COND: non_cond}


def any_value(d: dict) -> Any:
    return next(iter(d.values())) if d else None
