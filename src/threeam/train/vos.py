"""SAM 2's training forward over one clip (shared by the ``sam2`` and ``3am`` tasks) and the held-out
VOS metric.

:func:`track_clip` runs SAM 2's public tracking step (`SAM2Base.track_frame`) over a clip: frame 0
gets the simulated prompt (GT mask, box or click, then corrective clicks on click/box clips as SAM 2
training does), frames 1.. are tracked from SAM 2's memory with gradients through the memory bank.
An optional ``fuse(t, backbone_out, orig_hw)`` replaces a frame's stride-16 feature (3AM's merger).

Two rules that make training from scratch possible:

* the mask losses read the decoder's **ungated** logits (``TrackStepOutput.ungated_multimask_logits``):
  SAM 2 sets every mask logit of a frame it predicts "absent" to -1024, which passes no gradient,
  so a model that starts by predicting "absent" could never learn masks. The mask, dice and IoU
  losses count only on frames where the object is present (SAM 2's rule), so absent frames still
  train only the object score;
* the image encoder runs without gradients only when none of its parameters trains, and the mask
  decoder's ``conv_s0`` / ``conv_s1`` (applied to the stride-4/8 features) always run with them.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from threeam.io.video import frame_to_model_input
from threeam.models.sam2.tracking import COND, NON_COND, empty_memory_bank
from threeam.train.losses import FrameOutputs
from threeam.train.prompts import initial_prompt, simulate_correction

__all__ = ["encode_frames", "track_clip", "clip_scores"]

Fuse = Callable[[int, dict, tuple[int, int]], dict]


def encode_frames(sam2, images: torch.Tensor) -> dict:
    """SAM 2's `forward_image` on (T, 3, S, S), with gradients wherever a parameter trains.

    The Hiera + FPN run under ``no_grad`` when the image encoder is frozen; the decoder's
    ``conv_s0`` / ``conv_s1`` always run with autograd (they belong to the trained mask decoder).
    """
    enc_trains = any(p.requires_grad for p in sam2.image_encoder.parameters())
    with torch.set_grad_enabled(torch.is_grad_enabled() and enc_trains):
        backbone = sam2.image_encoder(images)
    if sam2.use_high_res_features_in_sam:
        fpn = list(backbone["backbone_fpn"])
        fpn[0] = sam2.sam_mask_decoder.conv_s0(fpn[0])
        fpn[1] = sam2.sam_mask_decoder.conv_s1(fpn[1])
        backbone = {**backbone, "backbone_fpn": fpn}
    return backbone


def _upsample(logits: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(logits.float(), size=(size, size), mode="bilinear", align_corners=False)


def clip_prompt_plan(masks: np.ndarray, config, seed: int):
    """SAM 2's training prompt plan for one clip, drawn over the frames that show the object.

    ``masks`` (T, H, W) bool; ``config`` a `threeam.train.prompts.PromptSimConfig`. Frame 0 is always a
    conditioning frame; the other conditioning and correction frames are drawn among frames where the
    object is present (a prompt or a corrective click needs the object). A mask-prompted clip keeps
    at least one tracked frame (a GT mask used as the output trains nothing, so a clip of only
    conditioning frames would have no gradient). Returns a `ClipPromptPlan` in clip frame indices.
    """
    from threeam.train.prompts import ClipPromptPlan, plan_clip_prompts

    T = masks.shape[0]
    present = [0] + [t for t in range(1, T) if masks[t].any()]
    plan = plan_clip_prompts(len(present), config, np.random.default_rng(seed))
    init = [present[i] for i in plan.init_cond_frames]
    if not plan.use_points and T > 1 and len(init) >= T:
        # mask-prompted conditioning frames are the GT itself (no gradient): keep one frame tracked
        init = init[:T - 1]
    kinds = {present[i]: k for i, k in plan.frame_kinds.items()}
    return ClipPromptPlan(plan.use_points, init, [present[i] for i in plan.frames_to_correct],
                          {t: kinds[t] for t in init})


def _frame0_plan(prompt_kind: str, correction_clicks: int):
    from threeam.train.prompts import ClipPromptPlan

    points = prompt_kind != "mask"
    return ClipPromptPlan(points, [0], [0] if points and correction_clicks else [], {0: prompt_kind})


def track_clip(sam2, rgb: np.ndarray, masks: np.ndarray, prompt_kind: str = "mask", prompt_seed: int = 0,
               correction_clicks: int = 0, fuse: Fuse | None = None, plan=None
               ) -> tuple[list[FrameOutputs], torch.Tensor, torch.Tensor]:
    """SAM 2 over one clip (see the module docstring).

    Args:
        rgb: (T, H, W, 3) uint8 frames; masks: (T, H, W) bool GT masks of the object (frame 0 the prompt).
        prompt_kind: ``mask``, ``box`` or ``point`` on frame 0 (when ``plan`` is None).
        correction_clicks: corrective clicks on each correction frame of click/box clips (each step
            supervised).
        fuse: optional stride-16 feature fusion per frame (3AM).
        plan: a `threeam.train.prompts.ClipPromptPlan` (e.g. :func:`clip_prompt_plan`, SAM 2's training
            rule: 1-2 conditioning frames, corrections on 1-2 frames, corrected frames become
            conditioning frames). None: one prompt of ``prompt_kind`` on frame 0, corrected there.
            Conditioning frames are processed first (without memory), then the others in order.
    Returns:
        per-frame `FrameOutputs` (ungated multimask logits at S x S), the targets (T, 1, S, S) bool and
        the chosen, gated prediction logits (T, 1, S, S) (what the tracker outputs), in frame order.
    """
    device = next(sam2.parameters()).device
    S = sam2.image_size
    T, H, W = masks.shape
    if plan is None:
        plan = _frame0_plan(prompt_kind, correction_clicks)
    images = torch.stack([frame_to_model_input(f, S) for f in rgb]).to(device)
    backbone = encode_frames(sam2, images)
    gt = torch.from_numpy(np.ascontiguousarray(masks)).float()[:, None].to(device)
    targets = F.interpolate(gt, size=(S, S), mode="bilinear", align_corners=False) > 0.5
    rng = np.random.default_rng(prompt_seed)
    scale = torch.tensor([S / W, S / H])

    def as_points(p) -> dict:
        return {"point_coords": (p.points.float() * scale)[None].to(device),
                "point_labels": p.labels.to(torch.int32)[None].to(device)}

    prompts: dict[int, dict] = {}
    for t in plan.init_cond_frames:
        kind = plan.frame_kinds.get(t, prompt_kind)
        prompt = initial_prompt(masks[t], kind, rng=rng)
        prompts[t] = {"mask": targets[t:t + 1].float()} if prompt.mask is not None else {"points": as_points(prompt.points)}
    init = set(plan.init_cond_frames)
    order = list(plan.init_cond_frames) + [t for t in range(T) if t not in init]
    memory = empty_memory_bank()
    outputs: list[FrameOutputs | None] = [None] * T
    chosen: list[torch.Tensor | None] = [None] * T
    for t in order:
        one = {"backbone_fpn": [f[t:t + 1] for f in backbone["backbone_fpn"]],
               "vision_pos_enc": [p[t:t + 1] for p in backbone["vision_pos_enc"]]}
        if fuse is not None:
            one = fuse(t, one, (H, W))
        features = sam2.prepare_frame_features(one)
        cond = t in init
        points = prompts.get(t, {}).get("points")
        out = sam2.track_frame(features, t, memory, T, is_init_cond_frame=cond, point_inputs=points,
                               mask_inputs=prompts.get(t, {}).get("mask"), run_mem_encoder=False)
        steps = FrameOutputs(masks=[_upsample(out.ungated_multimask_logits, S)], ious=[out.ious],
                             object_score_logits=[out.object_score_logits])
        if t in plan.frames_to_correct and (points is not None or not cond):
            for _ in range(correction_clicks):
                click = simulate_correction(targets[t, 0].cpu(), (out.pred_masks_high_res[0, 0] > 0).detach().cpu(),
                                            rng=rng)
                new = {"point_coords": click.points.float()[None].to(device),
                       "point_labels": click.labels.to(torch.int32)[None].to(device)}
                points = new if points is None else {
                    "point_coords": torch.cat([points["point_coords"], new["point_coords"]], 1),
                    "point_labels": torch.cat([points["point_labels"], new["point_labels"]], 1)}
                out = sam2.track_frame(features, t, memory, T, is_init_cond_frame=cond, point_inputs=points,
                                       run_mem_encoder=False, prev_sam_mask_logits=out.pred_masks.clamp(-32.0, 32.0))
                steps.masks.append(_upsample(out.ungated_multimask_logits, S))
                steps.ious.append(out.ious)
                steps.object_score_logits.append(out.object_score_logits)
            cond = True  # a corrected frame joins the conditioning frames (SAM 2: add_all_frames_to_correct_as_cond)
        out = sam2.encode_memory(features, out, is_mask_from_pts=points is not None)
        memory[COND if cond else NON_COND][t] = out.memory_entry()
        outputs[t] = steps
        chosen[t] = out.pred_masks_high_res.detach()
    return outputs, targets, torch.cat(chosen)


def clip_scores(pred_logits: torch.Tensor, masks: np.ndarray) -> dict[str, float]:
    """The paper's per-track metrics of a clip's tracked frames (1..T-1) at the GT size.

    pred_logits: (T, 1, S, S) chosen logits; masks: (T, H, W) bool GT. Returns ``iou``,
    ``tracking_recall`` and ``false_positive_rate`` (`threeam.eval.metrics.score_track`; NaN where
    undefined, e.g. recall of a clip whose object never returns).
    """
    from threeam.eval.metrics import score_track

    T, H, W = masks.shape
    pred = F.interpolate(pred_logits.float(), size=(H, W), mode="bilinear", align_corners=False)[:, 0] > 0
    s = score_track(pred[1:].cpu().numpy(), masks[1:])
    return {"iou": s.iou, "tracking_recall": s.tracking_recall, "false_positive_rate": s.false_positive_rate}
