"""Helpers for the MUSt3R golden case (``../shared/golden/must3r/case_small_kv``)."""
from __future__ import annotations

import json

import numpy as np
import torch

from threeam.models.must3r.config import Must3rConfig, Must3rDecoderConfig, Must3rEncoderConfig
from threeam.models.must3r.model import Must3r


def small_config(js: dict, memory_mode: str | None = None) -> Must3rConfig:
    e, d = js["encoder"], js["decoder"]
    enc = Must3rEncoderConfig(img_size=tuple(e["img_size"]), patch_size=e["patch_size"], embed_dim=e["embed_dim"],
                              depth=e["depth"], num_heads=e["num_heads"], mlp_ratio=e["mlp_ratio"],
                              pos_embed=e["pos_embed"])
    dec = Must3rDecoderConfig(img_size=tuple(e["img_size"]), enc_embed_dim=d["enc_embed_dim"], patch_size=e["patch_size"],
                              embed_dim=d["embed_dim"], depth=d["depth"], num_heads=d["num_heads"],
                              output_dim=d["output_dim"], feedback_type=d["feedback_type"],
                              memory_mode=memory_mode or d["memory_mode"],
                              pointmaps_activation=d["pointmaps_activation"].lower())
    return Must3rConfig(enc, dec)


def load_case(golden_dir, fill, memory_mode: str | None = None):
    """(model, case json, npz, frames (5, 3, 96, 128) in [-1, 1])."""
    base = golden_dir / "must3r" / "case_small_kv"
    js = json.loads((base.with_suffix(".json")).read_text())
    npz = np.load(base.with_suffix(".npz"))
    model = Must3r(small_config(js, memory_mode)).eval()
    model.encoder.load_state_dict({k: fill.fill_tensor("encoder." + k, s) for k, s in js["encoder_shapes"].items()})
    model.decoder.load_state_dict({k: fill.fill_tensor("decoder." + k, s) for k, s in js["decoder_shapes"].items()})
    frames = torch.from_numpy(npz["frames"]).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    return model, js, npz, frames


def rel_err(out: torch.Tensor, ref: np.ndarray) -> float:
    ref_t = torch.from_numpy(np.asarray(ref)).to(out.dtype)
    assert tuple(out.shape) == tuple(ref_t.shape), (tuple(out.shape), tuple(ref_t.shape))
    return float((out - ref_t).norm() / ref_t.norm().clamp_min(1e-12))
