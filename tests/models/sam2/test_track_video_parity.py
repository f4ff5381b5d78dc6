"""SAM2Base tracking through the memory path against the golden small video cases.

Drives `track_step` the way the official video predictor does for one object: the prompted
frame runs without the memory encoder, its memory is then encoded from the low-res logits
resized to the model size (`is_mask_from_pts=True`); tracked frames run the memory encoder;
memory features are stored as bfloat16. Covers s1 (box, forward), s3 (click, reverse) and
s4 (object predicted absent).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam2_small_build import attach_image_encoder, build_small, normalised_frames, rel_err

VIDEO_H, VIDEO_W = 240, 320


def _model(golden_dir, fill, overrides_key):
    model, js, npz = build_small(golden_dir, fill, overrides_key)
    return attach_image_encoder(model, js, fill, overrides_key), js, npz


def _store(out, mem=None, mem_pos=None):
    return {"maskmem_features": (out["maskmem_features"] if mem is None else mem).to(torch.bfloat16),
            "maskmem_pos_enc": out["maskmem_pos_enc"] if mem_pos is None else mem_pos,
            "pred_masks": out["pred_masks"], "obj_ptr": out["obj_ptr"],
            "object_score_logits": out["object_score_logits"]}


def _track(model, frames, point_inputs, prompt_frame, num_frames, reverse, bank=None):
    """Yield (frame index, kind, track_step output, stored bfloat16 memory) in processing order.

    The memory bank is filled in `bank` (a new one when None).
    """
    bank = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}} if bank is None else bank

    def features(t):
        return model._prepare_backbone_features(model.forward_image(frames[t:t + 1]))[1:]

    with torch.no_grad():
        feats, pos, sizes = features(prompt_frame)
        out = model.track_step(prompt_frame, True, feats, pos, sizes, point_inputs, None, bank, num_frames,
                               run_mem_encoder=False)
        high = F.interpolate(out["pred_masks"], size=(model.image_size,) * 2, mode="bilinear", align_corners=False)
        mem, mem_pos = model._encode_new_memory(feats, sizes, high, out["object_score_logits"], True)
        bank["cond_frame_outputs"][prompt_frame] = _store(out, mem, mem_pos)
        yield prompt_frame, 0, out, bank["cond_frame_outputs"][prompt_frame]["maskmem_features"]
        order = range(prompt_frame - 1, -1, -1) if reverse else range(prompt_frame + 1, num_frames)
        for t in order:
            feats, pos, sizes = features(t)
            out = model.track_step(t, False, feats, pos, sizes, None, None, bank, num_frames,
                                   track_in_reverse=reverse, run_mem_encoder=True)
            bank["non_cond_frame_outputs"][t] = _store(out)
            yield t, 1, out, bank["non_cond_frame_outputs"][t]["maskmem_features"]


def _compare(npz, prefix, kind, out, mem):
    assert int(npz[f"{prefix}/kind"]) == kind
    ref = torch.from_numpy(npz[f"{prefix}/pred_masks"])
    diff = (out["pred_masks"] - ref).abs().max().item()
    assert diff <= 5e-3, f"{prefix}: mask logits differ by {diff:.2e}"
    assert ((out["pred_masks"] > 0) == (ref > 0)).float().mean().item() >= 0.999, prefix
    score_diff = (out["object_score_logits"] - torch.from_numpy(npz[f"{prefix}/object_score_logits"])).abs().max()
    assert score_diff <= 1e-3, f"{prefix}: object score differs by {score_diff:.2e}"
    ptr_diff = (out["obj_ptr"] - torch.from_numpy(npz[f"{prefix}/obj_ptr"])).abs().max()
    assert ptr_diff <= 1e-3, f"{prefix}: object pointer differs by {ptr_diff:.2e}"
    err = rel_err(mem.float(), npz[f"{prefix}/maskmem_features"].astype(np.float32))
    assert err <= 1e-2, f"{prefix}: memory features relative error {err:.2e}"


def _points(prompt, key="points_video", label_key="labels"):
    pts = torch.tensor(prompt[key], dtype=torch.float32).reshape(1, -1, 2)
    return pts / torch.tensor([VIDEO_W, VIDEO_H]) * 256


def test_s1_box_tracked_forward(golden_dir, fill):
    model, js, npz = _model(golden_dir, fill, "overrides_s1_s3")
    frames = normalised_frames(npz)
    box = _points(js["prompts"]["s1"], key="obj1_box_xyxy_video")
    point_inputs = {"point_coords": box, "point_labels": torch.tensor([[2, 3]], dtype=torch.int32)}
    seen = []
    for t, kind, out, mem in _track(model, frames, point_inputs, 0, 20, reverse=False):
        _compare(npz, f"s1/obj1/f{t:03d}", kind, out, mem)
        seen.append(t)
    assert seen == list(range(20))


def test_s3_click_tracked_in_reverse(golden_dir, fill):
    model, js, npz = _model(golden_dir, fill, "overrides_s1_s3")
    prompt = js["prompts"]["s3"]
    assert prompt["reverse"] and prompt["frame"] == 19
    point_inputs = {"point_coords": _points(prompt), "point_labels": torch.tensor([prompt["labels"]], dtype=torch.int32)}
    seen = []
    for t, kind, out, mem in _track(model, normalised_frames(npz), point_inputs, 19, 20, reverse=True):
        _compare(npz, f"s3/obj{prompt['obj']}/f{t:03d}", kind, out, mem)
        seen.append(t)
    assert seen == list(range(19, -1, -1))


def test_s4_absent_object(golden_dir, fill):
    model, js, npz = _model(golden_dir, fill, "overrides_s4")
    prompt = js["prompts"]["s4"]
    point_inputs = {"point_coords": _points(prompt), "point_labels": torch.tensor([prompt["labels"]], dtype=torch.int32)}
    frames = normalised_frames(npz)
    for t, kind, out, mem in _track(model, frames, point_inputs, prompt["frame"], prompt["frames"], reverse=False):
        _compare(npz, f"s4/obj{prompt['obj']}/f{t:03d}", kind, out, mem)
        # absent: hard "no object" logits and the learned no-object pointer
        assert (out["object_score_logits"] < 0).all()
        assert (out["pred_masks"] == -1024.0).all()
        torch.testing.assert_close(out["obj_ptr"], model.no_obj_ptr)


def test_s2_correction_clicks_then_retrack(golden_dir, fill):
    """s1, then two clicks on the tracked frame 10 (fed with the clamped previous logits, stored as a
    conditioning frame), then re-tracking from frame 0 with two conditioning frames."""
    model, js, npz = _model(golden_dir, fill, "overrides_s1_s3")
    frames = normalised_frames(npz)
    box = _points(js["prompts"]["s1"], key="obj1_box_xyxy_video")
    point_inputs = {"point_coords": box, "point_labels": torch.tensor([[2, 3]], dtype=torch.int32)}
    bank = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    for _ in _track(model, frames, point_inputs, 0, 20, reverse=False, bank=bank):
        pass
    assert sorted(bank["cond_frame_outputs"]) == [0] and sorted(bank["non_cond_frame_outputs"]) == list(range(1, 20))

    prompt = js["prompts"]["s2"]
    assert prompt["add_all_frames_to_correct_as_cond"] and prompt["frame"] == 10
    clicks = {"point_coords": _points(prompt), "point_labels": torch.tensor([prompt["labels"]], dtype=torch.int32)}
    prev_logits = torch.clamp(bank["non_cond_frame_outputs"][10]["pred_masks"], -32.0, 32.0)

    def features(t):
        return model._prepare_backbone_features(model.forward_image(frames[t:t + 1]))[1:]

    with torch.no_grad():
        feats, pos, sizes = features(10)
        out = model.track_step(10, False, feats, pos, sizes, clicks, None, bank, 20, run_mem_encoder=False,
                               prev_sam_mask_logits=prev_logits)
        high = F.interpolate(out["pred_masks"], size=(256, 256), mode="bilinear", align_corners=False)
        mem, mem_pos = model._encode_new_memory(feats, sizes, high, out["object_score_logits"], True)
        bank["cond_frame_outputs"][10] = _store(out, mem, mem_pos)
        del bank["non_cond_frame_outputs"][10]
        _compare(npz, "s2/obj1/f010", 0, out, bank["cond_frame_outputs"][10]["maskmem_features"])
        for t in range(1, 20):
            if t == 10:
                continue
            feats, pos, sizes = features(t)
            out = model.track_step(t, False, feats, pos, sizes, None, None, bank, 20, run_mem_encoder=True)
            bank["non_cond_frame_outputs"][t] = _store(out)
            _compare(npz, f"s2/obj1/f{t:03d}", 1, out, bank["non_cond_frame_outputs"][t]["maskmem_features"])
