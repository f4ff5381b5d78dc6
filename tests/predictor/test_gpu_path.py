"""The GPU fast path's logic on the CPU (issue 11, part 4): bfloat16 autocast is on by default only
on CUDA and can be forced for a test; the compiled mode wraps the official parts and, with the
eager backend (dynamo capture without code generation), gives the eager results. Timings are never
asserted; what needs a GPU is measured by benchmarks/bench_track.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from threeam.io.synthetic_video import SyntheticVideo

FRAMES = 3


def _predictor(**options):
    from threeam.models.three_am import debug_sam2_config
    from threeam.predictor.build import build_predictor

    return build_predictor("sam2", preset=debug_sam2_config(), random_weights=True, seed=0, progress=False,
                           **options)


def _run(predictor):
    v = SyntheticVideo(FRAMES, 64, 64, seed=0)
    state = predictor.init_state(np.stack([v[t] for t in range(FRAMES)]))
    predictor.add_new_points_or_box(state, 0, 1, box=v.box(0))
    return state, {t: m.clone() for t, _, m in predictor.propagate_in_video(state)}


def test_autocast_defaults_to_cuda_only():
    p = _predictor()
    assert p.autocast is None and p.autocast_enabled() is (p.device.type == "cuda")
    forced = _predictor(autocast=True)
    assert forced.autocast_enabled()
    with forced.autocast_context():
        assert torch.is_autocast_enabled(forced.device.type) if hasattr(torch, "is_autocast_enabled") else True
    assert not _predictor(autocast=False).autocast_enabled()


@pytest.mark.slow
def test_forced_bf16_autocast_runs_and_stores_bf16_memory():
    _, ref = _run(_predictor())
    state, out = _run(_predictor(autocast=True))
    assert sorted(out) == sorted(ref)
    bank = state.output_dict_per_obj[0]
    assert all(e["maskmem_features"].dtype == torch.bfloat16 for e in bank["non_cond_frame_outputs"].values())
    for t in ref:
        assert out[t].dtype == torch.float32
        agree = ((out[t] > 0) == (ref[t] > 0)).float().mean().item()
        assert agree > 0.9, f"frame {t}: bf16 and fp32 masks agree on {agree:.2%}"


def test_compiled_parts_are_the_official_ones():
    p = _predictor()
    assert set(p.compiled_parts()) == {"image_encoder", "memory_attention", "sam_prompt_encoder",
                                       "sam_mask_decoder", "memory_encoder"}
    assert p.compiled_parts()["memory_attention"][1] is True  # dynamic: the memory grows


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(torch, "compile"), reason="this torch has no torch.compile")
def test_compiled_mode_with_eager_backend_equals_eager():
    _, ref = _run(_predictor())
    p = _predictor()
    p.compile_model(backend="eager")
    assert p.compiled and getattr(p.model.image_encoder.forward, "_three_am_compiled", False)
    _, out = _run(p)
    for t in ref:
        assert torch.allclose(out[t], ref[t], atol=1e-4), f"frame {t}"
