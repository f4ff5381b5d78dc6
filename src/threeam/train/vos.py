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


def track_clip(sam2, rgb: np.ndarray, masks: np.ndarray, prompt_kind: str = "mask", prompt_seed: int = 0,
               correction_clicks: int = 0, fuse: Fuse | None = None
               ) -> tuple[list[FrameOutputs], torch.Tensor, torch.Tensor]:
    """SAM 2 over one clip (see the module docstring).

    Args:
        rgb: (T, H, W, 3) uint8 frames; masks: (T, H, W) bool GT masks of the object (frame 0 the prompt).
        prompt_kind: ``mask``, ``box`` or ``point`` on frame 0.
        correction_clicks: corrective clicks on frame 0 of click/box clips (each step supervised).
        fuse: optional stride-16 feature fusion per frame (3AM).
    Returns:
        per-frame `FrameOutputs` (ungated multimask logits at S x S), the targets (T, 1, S, S) bool and
        the chosen, gated prediction logits (T, 1, S, S) (what the tracker outputs).
    """
    device = next(sam2.parameters()).device
    S = sam2.image_size
    T, H, W = masks.shape
    images = torch.stack([frame_to_model_input(f, S) for f in rgb]).to(device)
    backbone = encode_frames(sam2, images)
    gt = torch.from_numpy(np.ascontiguousarray(masks)).float()[:, None].to(device)
    targets = F.interpolate(gt, size=(S, S), mode="bilinear", align_corners=False) > 0.5
    rng = np.random.default_rng(prompt_seed)
    prompt = initial_prompt(masks[0], prompt_kind, rng=rng)
    point_inputs = mask_inputs = None
    if prompt.mask is not None:
        mask_inputs = targets[:1].float()
    else:
        scale = torch.tensor([S / W, S / H])
        point_inputs = {"point_coords": (prompt.points.points.float() * scale)[None].to(device),
                        "point_labels": prompt.points.labels.to(torch.int32)[None].to(device)}
    memory = empty_memory_bank()
    outputs: list[FrameOutputs] = []
    chosen: list[torch.Tensor] = []
    for t in range(T):
        one = {"backbone_fpn": [f[t:t + 1] for f in backbone["backbone_fpn"]],
               "vision_pos_enc": [p[t:t + 1] for p in backbone["vision_pos_enc"]]}
        if fuse is not None:
            one = fuse(t, one, (H, W))
        features = sam2.prepare_frame_features(one)
        first = t == 0
        points = point_inputs if first else None
        out = sam2.track_frame(features, t, memory, T, is_init_cond_frame=first, point_inputs=points,
                               mask_inputs=mask_inputs if first else None, run_mem_encoder=False)
        steps = FrameOutputs(masks=[_upsample(out.ungated_multimask_logits, S)], ious=[out.ious],
                             object_score_logits=[out.object_score_logits])
        if first and points is not None:
            for _ in range(correction_clicks):
                click = simulate_correction(targets[0, 0].cpu(), (out.pred_masks_high_res[0, 0] > 0).detach().cpu(),
                                            rng=rng)
                points = {"point_coords": torch.cat([points["point_coords"], click.points.float()[None].to(device)], 1),
                          "point_labels": torch.cat([points["point_labels"],
                                                     click.labels.to(torch.int32)[None].to(device)], 1)}
                out = sam2.track_frame(features, t, memory, T, is_init_cond_frame=True, point_inputs=points,
                                       run_mem_encoder=False, prev_sam_mask_logits=out.pred_masks.clamp(-32.0, 32.0))
                steps.masks.append(_upsample(out.ungated_multimask_logits, S))
                steps.ious.append(out.ious)
                steps.object_score_logits.append(out.object_score_logits)
        out = sam2.encode_memory(features, out, is_mask_from_pts=points is not None)
        memory[COND if first else NON_COND][t] = out.memory_entry()
        outputs.append(steps)
        chosen.append(out.pred_masks_high_res.detach())
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
