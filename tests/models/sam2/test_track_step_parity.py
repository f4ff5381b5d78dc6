"""SAM2Base.track_step on golden case s1, frame 0 (a box for object 1, a mask for object 7).

Mirrors what the official video predictor does on a prompted frame: track_step without the
memory encoder, then the memory encoder on the low-res logits resized to the model size
(`is_mask_from_pts=True`), stored as bfloat16.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam2_small_build import build_small, rel_err

VIDEO_H, VIDEO_W = 240, 320


@pytest.fixture(scope="module")
def small(golden_dir, fill):
    return build_small(golden_dir, fill)


def _frame0(model, npz):
    t = lambda k: torch.from_numpy(npz[k])
    backbone_out = {"backbone_fpn": [t(f"image0/backbone_fpn/{i}") for i in range(3)],
                    "vision_pos_enc": [t(f"image0/vision_pos_enc/{i}") for i in range(3)]}
    _, feats, pos, sizes = model._prepare_backbone_features(backbone_out)
    assert [f.shape for f in feats] == [(4096, 1, 8), (1024, 1, 16), (256, 1, 64)]
    return feats, pos, sizes


def _prompted_frame(model, feats, pos, sizes, point_inputs, mask_inputs):
    bank = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    with torch.no_grad():
        out = model.track_step(0, True, feats, pos, sizes, point_inputs, mask_inputs, bank, num_frames=20,
                               run_mem_encoder=False)
        assert out["maskmem_features"] is None
        high = F.interpolate(out["pred_masks"], size=(256, 256), mode="bilinear", align_corners=False)
        mem, mem_pos = model._encode_new_memory(feats, sizes, high, out["object_score_logits"], True)
    assert mem_pos[0].shape == (1, 16, 16, 16)
    return out, mem.to(torch.bfloat16)


def _check(out, mem, npz, prefix):
    assert int(npz[f"{prefix}/kind"]) == 0
    ref = torch.from_numpy(npz[f"{prefix}/pred_masks"])
    diff = (out["pred_masks"] - ref).abs().max().item()
    assert diff <= 5e-3, f"{prefix} pred_masks max abs diff {diff:.2e}"
    assert ((out["pred_masks"] > 0) == (ref > 0)).float().mean().item() >= 0.999
    assert torch.allclose(out["object_score_logits"], torch.from_numpy(npz[f"{prefix}/object_score_logits"]), atol=1e-3)
    assert torch.allclose(out["obj_ptr"], torch.from_numpy(npz[f"{prefix}/obj_ptr"]), atol=1e-3)
    # float16 copy of a bfloat16 memory: compare at the float16 level
    assert rel_err(mem.float(), npz[f"{prefix}/maskmem_features"].astype(np.float32)) <= 1e-2


def test_box_prompt_frame0(small):
    model, js, npz = small
    feats, pos, sizes = _frame0(model, npz)
    box = torch.tensor(js["prompts"]["s1"]["obj1_box_xyxy_video"], dtype=torch.float32).reshape(1, 2, 2)
    coords = box / torch.tensor([VIDEO_W, VIDEO_H]) * model.image_size
    point_inputs = {"point_coords": coords, "point_labels": torch.tensor([[2, 3]], dtype=torch.int32)}
    out, mem = _prompted_frame(model, feats, pos, sizes, point_inputs, None)
    assert out["pred_masks"].shape == (1, 1, 64, 64) and out["pred_masks_high_res"].shape == (1, 1, 256, 256)
    _check(out, mem, npz, "s1/obj1/f000")


def test_mask_prompt_frame0(small):
    model, js, npz = small
    feats, pos, sizes = _frame0(model, npz)
    # 'rows 120:200, cols 180:290, minus rows 150:170 cols 230:260' (video resolution)
    mask = torch.zeros(VIDEO_H, VIDEO_W)
    mask[120:200, 180:290] = 1
    mask[150:170, 230:260] = 0
    mask_inputs = F.interpolate(mask[None, None], size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
    mask_inputs = (mask_inputs >= 0.5).float()
    out, mem = _prompted_frame(model, feats, pos, sizes, None, mask_inputs)
    # a mask prompt is passed through as +-10 logits; the object is present
    assert set(out["pred_masks_high_res"].unique().tolist()) == {-10.0, 10.0}
    _check(out, mem, npz, "s1/obj7/f000")
