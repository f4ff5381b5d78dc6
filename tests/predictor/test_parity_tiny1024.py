"""Golden parity of the video predictor with the real sam2.1_hiera_t configuration at 1024
(`case_tiny1024_v21`: one click on frame 0, four frames), through the public predictor API."""
from __future__ import annotations

import json

import numpy as np

from threeam.models.sam2.build import build_sam2_from_state_dict
from threeam.models.sam2.config import SAM2Config, VideoPredictorConfig, get_sam2_config
from threeam.predictor.video_predictor import VideoPredictor

from .golden_check import check_object_outputs, check_video_masks


def test_tiny1024_click_tracked_through_the_predictor(golden_dir, fill):
    js = json.loads((golden_dir / "sam2" / "case_tiny1024_v21.json").read_text())
    npz = np.load(golden_dir / "sam2" / "case_tiny1024_v21.npz")
    cfg = SAM2Config.from_official_dict(js["config"])
    # the reference ran the real preset: our named preset must describe the same model
    assert cfg.to_dict()["image_encoder"] == get_sam2_config("sam2.1_hiera_t").to_dict()["image_encoder"]
    vcfg = VideoPredictorConfig.from_official_dict(js["config"])
    shapes = fill.load_manifest(golden_dir / "sam2" / "manifest_sam2.1_hiera_t.json")
    model = build_sam2_from_state_dict(cfg, fill.fill_state_dict(shapes, js["overrides"]), video_config=vcfg)
    predictor = VideoPredictor(model, vcfg, progress=False)

    h, w = js["video_hw"]
    state = predictor.init_state(npz["frames"], video_size=(h, w))
    p = js["prompts"]["f1"]
    t, ids, masks = predictor.add_new_points_or_box(state, p["frame"], p["obj"], points=p["points_video"],
                                                    labels=p["labels"])
    outputs = {t: (list(ids), m.clone()) for t, ids, m in predictor.propagate_in_video(state)}
    assert sorted(outputs) == [0, 1, 2, 3]
    for t, (ids, m) in outputs.items():
        check_video_masks(npz, f"f1/video_masks/f{t:03d}", f"f1/video_ids/f{t:03d}", ids, m, f"tiny1024 frame {t}")
    assert check_object_outputs(npz, "f1", state, p["obj"]) == 4
