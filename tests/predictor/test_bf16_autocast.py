"""bfloat16 autocast (issue 11, part 4) checked on the CPU: forced with ``autocast=True``, the
golden small SAM 2.1 model (filled weights that do track the object) gives masks that agree with
float32 on > 99% of the pixels; memories are stored as bfloat16 (with and without autocast, as the
official predictor does) and masks come out as float32. 3AM's fusion runs under it too."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from threeam.models.sam2.build import build_sam2_from_state_dict
from threeam.models.sam2.config import SAM2Config, VideoPredictorConfig
from threeam.predictor.state import COND, NON_COND
from threeam.predictor.video_predictor import VideoPredictor

FRAMES = 4


@pytest.fixture(scope="module")
def golden(golden_dir, fill):
    js = json.loads((golden_dir / "sam2" / "case_small_v21.json").read_text())
    npz = np.load(golden_dir / "sam2" / "case_small_v21.npz")
    cfg = SAM2Config.from_official_dict(js["config"])
    vcfg = VideoPredictorConfig.from_official_dict(js["config"])
    state_dict = fill.fill_state_dict(js["shapes"], js["overrides_s1_s3"])
    return cfg, vcfg, state_dict, npz["frames"][:FRAMES]


def _track(golden, autocast):
    cfg, vcfg, state_dict, frames = golden
    predictor = VideoPredictor(build_sam2_from_state_dict(cfg, state_dict, video_config=vcfg), vcfg,
                               progress=False, autocast=autocast)
    assert predictor.autocast_enabled() is autocast
    state = predictor.init_state(frames, video_size=(240, 320))
    predictor.add_new_points_or_box(state, 0, 1, box=[60, 40, 200, 170])
    return state, {t: m.clone() for t, _, m in predictor.propagate_in_video(state)}


def test_bf16_autocast_agrees_with_float32_and_stores_bf16_memory(golden):
    ref_state, ref = _track(golden, False)
    state, out = _track(golden, True)
    assert sorted(out) == sorted(ref) == list(range(FRAMES))
    for t in ref:
        assert out[t].dtype == torch.float32
        fg = (ref[t] > 0).float().mean().item()
        assert 0.05 < fg < 0.95, f"frame {t}: the object must be tracked for the comparison to mean anything"
        agree = ((out[t] > 0) == (ref[t] > 0)).float().mean().item()
        assert agree > 0.99, f"frame {t}: bf16 and fp32 masks agree on {agree:.2%}"
    assert any(not torch.equal(out[t], ref[t]) for t in ref), "autocast changed nothing: it did not run"
    for s in (state, ref_state):
        bank = s.output_dict_per_obj[0]
        entries = list(bank[COND].values()) + list(bank[NON_COND].values())
        assert entries and all(e["maskmem_features"].dtype == torch.bfloat16 for e in entries)
        assert all(e["pred_masks"].dtype == torch.float32 for e in entries)


def test_3am_fusion_runs_under_bf16_autocast():
    from threeam.predictor.build import build_three_am_model
    from threeam.predictor.three_am_predictor import ThreeAMVideoPredictor

    model = build_three_am_model("3am_tiny", random_weights=True, seed=1)
    with torch.no_grad():
        conv = model.merger.last_conv
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    rng = np.random.default_rng(0)
    video = (rng.random((3, 48, 64, 3)) * 255).astype(np.uint8)
    merged = {}
    for autocast in (False, True):
        predictor = ThreeAMVideoPredictor(model, progress=False, autocast=autocast)
        state = predictor.init_state(video)
        predictor.add_new_points_or_box(state, 0, 1, box=[10, 10, 40, 30])
        masks = [m for _, _, m in predictor.propagate_in_video(state)]
        assert len(masks) == 3 and all(m.dtype == torch.float32 for m in masks)
        merged[autocast] = {t: f.float() for t, f in predictor.geometry(state).merged.items()}
    assert merged[True].keys() == merged[False].keys() == {0, 1, 2}
    for t, ref in merged[False].items():
        err = ((merged[True][t] - ref).norm() / ref.norm()).item()
        assert 0 < err < 0.05, f"frame {t}: bf16 merged feature differs from float32 by {err:.3%}"
