"""Tracking parity with the real sam2.1_hiera_t configuration at 1024 (one click, four frames). Slow on CPU."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sam2_small_build import rel_err
from test_track_video_parity import _compare, _track
from threeam.models.sam2.build import build_sam2
from threeam.models.sam2.config import SAM2Config


@pytest.mark.slow
def test_tiny1024_click_tracked(golden_dir, fill):
    js = json.loads((golden_dir / "sam2" / "case_tiny1024_v21.json").read_text())
    npz = np.load(golden_dir / "sam2" / "case_tiny1024_v21.npz")
    model = build_sam2(SAM2Config.from_official_dict(js["config"]))
    shapes = fill.load_manifest(golden_dir / "sam2" / "manifest_sam2.1_hiera_t.json")
    model.load_state_dict(fill.fill_state_dict(shapes, js["overrides"]), strict=True)
    model.eval()

    x = torch.from_numpy(npz["frames"]).float() / 255.0
    frames = ((x - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])).permute(0, 3, 1, 2)
    with torch.no_grad():
        fpn = model.forward_image(frames[:1])["backbone_fpn"]
    for i in range(3):  # float16 references, every 4th row and column
        assert rel_err(fpn[i][..., ::4, ::4], npz[f"image0/backbone_fpn/{i}"].astype(np.float32)) <= 1e-2

    prompt = js["prompts"]["f1"]
    h, w = js["video_hw"]
    coords = torch.tensor(prompt["points_video"], dtype=torch.float32)[None] / torch.tensor([w, h]) * model.image_size
    point_inputs = {"point_coords": coords, "point_labels": torch.tensor([prompt["labels"]], dtype=torch.int32)}
    seen = []
    for t, kind, out, mem in _track(model, frames, point_inputs, prompt["frame"], frames.shape[0], reverse=False):
        _compare(npz, f"f1/obj{prompt['obj']}/f{t:03d}", kind, out, mem)
        seen.append(t)
    assert seen == [0, 1, 2, 3]
