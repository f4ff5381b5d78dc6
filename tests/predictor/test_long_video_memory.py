"""Constant memory over a long video (issue 11, part 2): tracking one object through 2,000
generated frames, the process RSS (and, on CUDA, the allocated memory) may grow by less than 5%
between frame 500 and frame 2,000, with the debug SAM 2 model and with 3AM (`3am_tiny`: its
merged-feature cache and MUSt3R's memory are bounded too). Frames stream from a lazy generated
source, so only the predictor's per-frame state can make memory grow. Slow (minutes on CPU)."""
from __future__ import annotations

import gc
import os

import pytest
import torch

from threeam.io.synthetic_video import SyntheticVideo

FRAMES, START = 2_000, 500


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _predictor(model: str):
    from threeam.models.three_am import debug_sam2_config
    from threeam.predictor.build import build_predictor

    if model == "sam2":
        return build_predictor("sam2", preset=debug_sam2_config(), random_weights=True, progress=False)
    return build_predictor("3am", preset="3am_tiny", random_weights=True, progress=False)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc to read the RSS")
@pytest.mark.parametrize("model", ["sam2", "3am"])
def test_memory_is_flat_over_a_long_video(model):
    predictor = _predictor(model)
    video = SyntheticVideo(FRAMES, 128, 128, seed=0)
    state = predictor.init_state(video)
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=video.box(0))
    cuda = predictor.device.type == "cuda"
    at = {}
    for frame_idx, _, masks in predictor.propagate_in_video(state):
        if frame_idx + 1 in (START, FRAMES):
            del masks
            gc.collect()
            at[frame_idx + 1] = (_rss_bytes(), torch.cuda.memory_allocated() if cuda else 0)
    assert set(at) == {START, FRAMES}
    held = sum(len(v) for bank in state.output_dict_per_obj.values() for v in bank.values())
    assert held <= 3 * predictor.memory_window(), f"{held} per-frame outputs held after {FRAMES} frames"
    if model == "3am":
        merged = predictor.geometry(state).merged
        assert len(merged) <= predictor.merged_cache_frame_limit() + 1, f"{len(merged)} merged features cached"
    rss_growth = (at[FRAMES][0] - at[START][0]) / at[START][0]
    assert rss_growth < 0.05, f"RSS grew {100 * rss_growth:.1f}% from frame {START} to {FRAMES}"
    if cuda:
        cuda_growth = (at[FRAMES][1] - at[START][1]) / max(at[START][1], 1)
        assert cuda_growth < 0.05, f"CUDA allocated memory grew {100 * cuda_growth:.1f}%"
