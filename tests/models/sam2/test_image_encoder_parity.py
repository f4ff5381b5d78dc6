"""Parity of the SAM 2 image encoder (Hiera trunk, FPN neck, position encodings, conv_s0/conv_s1).

Reference values were computed by the official code with `fill.py` weights on frame 0 of each case.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from threeam.models.sam2.build import build_sam2_from_state_dict
from threeam.models.sam2.config import SAM2Config

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _rel(out: torch.Tensor, ref: np.ndarray) -> float:
    ref_t = torch.from_numpy(np.asarray(ref, dtype=np.float32))
    out = out.detach().float()
    assert tuple(out.shape) == tuple(ref_t.shape), (tuple(out.shape), tuple(ref_t.shape))
    return float((out - ref_t).norm() / ref_t.norm())


def _run(golden_dir, fill, case: str, manifest: str | None, overrides_key: str):
    js = json.loads((golden_dir / "sam2" / f"{case}.json").read_text())
    npz = np.load(golden_dir / "sam2" / f"{case}.npz")
    cfg = SAM2Config.from_official_dict(js["config"])
    shapes = js["shapes"] if manifest is None else json.loads(
        (golden_dir / "sam2" / f"manifest_{manifest}.json").read_text())["shapes"]
    model = build_sam2_from_state_dict(cfg, fill.fill_state_dict(shapes, js[overrides_key]))
    frame = torch.from_numpy(npz["frames"][0]).permute(2, 0, 1)[None].float()
    image = (frame / 255.0 - MEAN) / STD
    stages: list[torch.Tensor] = []
    hook = model.image_encoder.trunk.register_forward_hook(lambda _m, _i, out: stages.extend(out))
    with torch.no_grad():
        out = model.forward_image(image)
    hook.remove()
    return npz, stages, out


def test_small_case_image_encoder(golden_dir, fill):
    npz, stages, out = _run(golden_dir, fill, "case_small_v21", None, "overrides_s1_s3")
    tol = 1e-4
    assert len(stages) == 4 and len(out["backbone_fpn"]) == 3 and len(out["vision_pos_enc"]) == 3
    for i in range(4):
        assert _rel(stages[i], npz[f"image0/trunk/{i}"]) <= tol, f"trunk/{i}"
    for i in range(3):
        assert _rel(out["vision_pos_enc"][i], npz[f"image0/vision_pos_enc/{i}"]) <= tol, f"vision_pos_enc/{i}"
        # levels 0 and 1 went through the decoder's conv_s0 / conv_s1 in forward_image
        assert _rel(out["backbone_fpn"][i], npz[f"image0/backbone_fpn/{i}"]) <= tol, f"backbone_fpn/{i}"
    assert out["vision_features"] is out["backbone_fpn"][-1]


def test_small_case_image_encoder_detects_a_perturbation(golden_dir, fill):
    """The comparison is sensitive: one changed weight moves the trunk output past the tolerance."""
    js = json.loads((golden_dir / "sam2" / "case_small_v21.json").read_text())
    npz = np.load(golden_dir / "sam2" / "case_small_v21.npz")
    sd = fill.fill_state_dict(js["shapes"], js["overrides_s1_s3"])
    sd["image_encoder.trunk.blocks.0.attn.qkv.weight"] = sd["image_encoder.trunk.blocks.0.attn.qkv.weight"] * 1.01
    model = build_sam2_from_state_dict(SAM2Config.from_official_dict(js["config"]), sd)
    frame = torch.from_numpy(npz["frames"][0]).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        stages = model.image_encoder.trunk((frame / 255.0 - MEAN) / STD)
    assert _rel(stages[0], npz["image0/trunk/0"]) > 1e-4


def test_tiny_1024_image_encoder(golden_dir, fill):
    """Real sam2.1_hiera_t layout at 1024 (windows padded 64 -> 70 in stage 3); float16 refs, every 4th pixel."""
    npz, stages, out = _run(golden_dir, fill, "case_tiny1024_v21", "sam2.1_hiera_t", "overrides")
    tol = 1e-2
    for i in range(4):
        assert _rel(stages[i][..., ::4, ::4], npz[f"image0/trunk/{i}"]) <= tol, f"trunk/{i}"
    for i in range(3):
        assert _rel(out["backbone_fpn"][i][..., ::4, ::4], npz[f"image0/backbone_fpn/{i}"]) <= tol, f"backbone_fpn/{i}"
    assert [tuple(p.shape) for p in out["vision_pos_enc"]] == [(1, 256, 256, 256), (1, 256, 128, 128), (1, 256, 64, 64)]


def test_window_partition_round_trip_with_padding():
    from threeam.models.sam2.hiera import window_partition, window_unpartition

    x = torch.randn(2, 9, 11, 5)
    windows, pad_hw = window_partition(x, 4)
    assert pad_hw == (12, 12) and windows.shape == (2 * 9, 4, 4, 5)
    assert torch.equal(windows[0], x[0, :4, :4])  # first window, row-major over the grid
    assert torch.equal(windows[1], x[0, :4, 4:8])
    assert torch.equal(windows[2, :, :3], x[0, :4, 8:11]) and not windows[2, :, 3].any()  # zero padding
    assert torch.equal(window_unpartition(windows, 4, pad_hw, (9, 11)), x)


def test_image_encoder_rejects_bad_input():
    from threeam.errors import InputError
    from threeam.models.sam2.build import build_image_encoder
    from threeam.models.sam2.config import get_sam2_config

    encoder = build_image_encoder(get_sam2_config("sam2.1_hiera_t").image_encoder)
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        encoder(torch.zeros(1, 1, 64, 64))
    with pytest.raises(InputError, match="multiple of 32"):
        encoder.trunk(torch.zeros(1, 3, 48, 48))
