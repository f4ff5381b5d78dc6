"""The compiled mode (issue 11, part 4; the official ``vos_optimized=True``) on the CPU: with
torch.compile's default backend (inductor, code generation) the debug SAM 2 model builds and gives
eager's masks; 3AM's extra compiled parts (MUSt3R's encoder and decoder, the Feature Merger) are
captured by dynamo and give eager's results. Slow: compilation takes minutes on a shared CPU."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from threeam.io.synthetic_video import SyntheticVideo

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not hasattr(torch, "compile"), reason="this torch has no torch.compile")]
FRAMES = 3


def _video():
    v = SyntheticVideo(FRAMES, 64, 64, seed=0)
    return np.stack([v[t] for t in range(FRAMES)]), v.box(0)


def _run(predictor):
    frames, box = _video()
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 0, 1, box=box)
    masks = {t: m.clone() for t, _, m in predictor.propagate_in_video(state)}
    bank = state.output_dict_per_obj[0]["non_cond_frame_outputs"]
    # pointers and object scores come out of memory attention and the mask decoder on every frame
    ptrs = {t: torch.cat([e["obj_ptr"].flatten(), e["object_score_logits"].flatten().float()]) for t, e in bank.items()}
    return masks, ptrs


def _sam2():
    from threeam.models.three_am import debug_sam2_config
    from threeam.predictor.build import build_predictor

    return build_predictor("sam2", preset=debug_sam2_config(), random_weights=True, seed=0, progress=False)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="inductor needs a C++ compiler on the CPU")
def test_inductor_compiled_sam2_gives_the_eager_masks():
    ref_masks, ref_ptrs = _run(_sam2())
    p = _sam2()
    p.compile_model()
    assert p.compiled and all(getattr(m.forward, "_three_am_compiled", False) for m, _ in p.compiled_parts().values())
    masks, ptrs = _run(p)
    assert sorted(masks) == sorted(ref_masks)
    for t in ref_masks:
        assert torch.allclose(masks[t], ref_masks[t], atol=1e-3, rtol=1e-3), f"frame {t}"
        assert ((masks[t] > 0) == (ref_masks[t] > 0)).all(), f"frame {t}"
    for t in ref_ptrs:
        assert torch.allclose(ptrs[t], ref_ptrs[t], atol=1e-4, rtol=1e-3), f"frame {t}: object pointer"


def test_3am_compiled_parts_with_eager_backend_give_the_eager_results():
    from threeam.predictor.build import build_three_am_model
    from threeam.predictor.three_am_predictor import ThreeAMVideoPredictor

    model = build_three_am_model("3am_tiny", random_weights=True, seed=1)
    with torch.no_grad():  # a non-zero merger output, so the fused features matter
        conv = model.merger.last_conv
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    ref = ThreeAMVideoPredictor(model, progress=False)
    ref_masks, ref_ptrs = _run(ref)
    compiled_model = build_three_am_model("3am_tiny", random_weights=True, seed=1)
    compiled_model.load_state_dict(model.state_dict())
    p = ThreeAMVideoPredictor(compiled_model, progress=False)
    assert {"must3r_encoder", "must3r_decoder", "merger"} <= set(p.compiled_parts())
    p.compile_model(backend="eager")
    assert getattr(compiled_model.merger.forward, "_three_am_compiled", False)
    assert getattr(compiled_model.must3r.decoder.forward, "_three_am_compiled", False)
    masks, ptrs = _run(p)
    for t in ref_masks:
        assert torch.allclose(masks[t], ref_masks[t], atol=1e-4), f"frame {t}"
    for t in ref_ptrs:
        assert torch.allclose(ptrs[t], ref_ptrs[t], atol=1e-5), f"frame {t}: object pointer"
