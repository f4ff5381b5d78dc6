"""Test helper (not a test module): compare a predictor session against golden SAM 2 video data."""
from __future__ import annotations

import numpy as np
import torch

from threeam.predictor.state import COND, NON_COND

# tolerances of ../shared/golden/README.md
LOGIT_ATOL = 5e-3
SIGN_AGREEMENT = 0.999
SCORE_ATOL = 1e-3
PTR_ATOL = 1e-3
MEM_REL = 1e-2  # float16 copies of bfloat16 memories
VIDEO_AGREEMENT = 0.999


def rel_err(out: torch.Tensor, ref: np.ndarray) -> float:
    ref_t = torch.from_numpy(np.asarray(ref, dtype=np.float32))
    out = out.detach().float().cpu()
    assert tuple(out.shape) == tuple(ref_t.shape), (tuple(out.shape), tuple(ref_t.shape))
    return float((out - ref_t).norm() / ref_t.norm().clamp_min(1e-12))


def unpack_video_masks(packed: np.ndarray, width: int) -> np.ndarray:
    """Golden `np.packbits(mask > 0, axis=-1)` -> bool (N, 1, H, W)."""
    return np.unpackbits(packed, axis=-1)[..., :width].astype(bool)


def golden_frames(npz, case: str, obj_id: int) -> list[int]:
    prefix = f"{case}/obj{obj_id}/"
    return sorted({int(k[len(prefix) + 1:len(prefix) + 4]) for k in npz.files if k.startswith(prefix)})


def check_video_masks(npz, key_masks: str, key_ids: str, obj_ids, video_res_masks: torch.Tensor, where: str):
    ref_ids = npz[key_ids].tolist()
    assert list(obj_ids) == ref_ids, f"{where}: object ids {list(obj_ids)} != reference {ref_ids}"
    ours = (video_res_masks > 0).cpu().numpy()
    ref = unpack_video_masks(npz[key_masks], ours.shape[-1])
    assert ours.shape == ref.shape, f"{where}: video masks {ours.shape} vs reference {ref.shape}"
    agree = (ours == ref).mean()
    assert agree >= VIDEO_AGREEMENT, f"{where}: video-resolution masks agree on {agree:.5%} of pixels"


def check_object_outputs(npz, case: str, state, obj_id: int) -> int:
    """Compare every stored frame output of one object with the reference; returns the frame count."""
    frames = golden_frames(npz, case, obj_id)
    assert frames, f"no reference frames for {case}/obj{obj_id}"
    idx = state.obj_id_to_idx[obj_id]
    bank = state.output_dict_per_obj[idx]
    ours_frames = sorted(set(bank[COND]) | set(bank[NON_COND]))
    assert ours_frames == frames, f"{case}/obj{obj_id}: frames with output {ours_frames} != reference {frames}"
    for t in frames:
        p = f"{case}/obj{obj_id}/f{t:03d}"
        kind = int(npz[f"{p}/kind"])
        out = bank[COND].get(t) if kind == 0 else bank[NON_COND].get(t)
        assert out is not None, f"{p}: expected a {'conditioning' if kind == 0 else 'tracked'} frame output"
        ref = torch.from_numpy(npz[f"{p}/pred_masks"])
        ours = out["pred_masks"].float().cpu()
        diff = (ours - ref).abs().max().item()
        assert diff <= LOGIT_ATOL, f"{p}: pred_masks max abs diff {diff:.3e}"
        sign = ((ours > 0) == (ref > 0)).float().mean().item()
        assert sign >= SIGN_AGREEMENT, f"{p}: pred_masks sign agreement {sign:.5%}"
        d = (out["object_score_logits"].float().cpu() - torch.from_numpy(npz[f"{p}/object_score_logits"])).abs().max()
        assert d <= SCORE_ATOL, f"{p}: object_score_logits diff {d:.3e}"
        d = (out["obj_ptr"].float().cpu() - torch.from_numpy(npz[f"{p}/obj_ptr"])).abs().max()
        assert d <= PTR_ATOL, f"{p}: obj_ptr diff {d:.3e}"
        mem = out["maskmem_features"]
        assert mem is not None and mem.dtype == torch.bfloat16, f"{p}: memory must be stored as bfloat16"
        e = rel_err(mem, npz[f"{p}/maskmem_features"].astype(np.float32))
        assert e <= MEM_REL, f"{p}: maskmem_features relative error {e:.3e}"
    return len(frames)
