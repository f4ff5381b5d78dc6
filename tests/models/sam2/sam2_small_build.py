"""Test helper: the small golden SAM 2.1 model (without image encoder) built straight from the JSON config.

Not a test module. Builds our heads / memory modules with the official keyword arguments of
`case_small_v21.json` and loads the `fill.py` weights for every non-image-encoder key.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from threeam.models.sam2.memory_attention import MemoryAttention, MemoryAttentionLayer
from threeam.models.sam2.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
from threeam.models.sam2.position_encoding import PositionEmbeddingSine
from threeam.models.sam2.sam2_base import SAM2Base
from threeam.models.sam2.transformer import RoPEAttention


def _kw(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "_target_"}


class _NeckStub(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model


class NoImageEncoder(nn.Module):
    """Stands in for the image encoder: the tests feed golden backbone features directly."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.neck = _NeckStub(d_model)


def build_small(golden_dir: Path, fill, overrides_key: str = "overrides_s1_s3") -> tuple[SAM2Base, dict, dict]:
    """(model in eval mode, json dict, npz dict) for the small golden case."""
    js = json.loads((golden_dir / "sam2" / "case_small_v21.json").read_text())
    cfg = js["config"]
    ma = cfg["memory_attention"]
    lay = ma["layer"]
    layer = MemoryAttentionLayer(
        self_attention=RoPEAttention(**_kw(lay["self_attention"])),
        cross_attention=RoPEAttention(**_kw(lay["cross_attention"])),
        **{k: v for k, v in _kw(lay).items() if k not in ("self_attention", "cross_attention")},
    )
    memory_attention = MemoryAttention(layer=layer, **{k: v for k, v in _kw(ma).items() if k != "layer"})
    me = cfg["memory_encoder"]
    memory_encoder = MemoryEncoder(
        out_dim=me["out_dim"],
        mask_downsampler=MaskDownSampler(**_kw(me["mask_downsampler"])),
        fuser=Fuser(layer=CXBlock(**_kw(me["fuser"]["layer"])), num_layers=me["fuser"]["num_layers"]),
        position_encoding=PositionEmbeddingSine(**_kw(me["position_encoding"])),
        in_dim=me["in_dim"],
    )
    # SAM2Base keywords: everything but the sub-module configs and the predictor-only option
    top = {k: v for k, v in _kw(cfg).items()
           if k not in ("image_encoder", "memory_attention", "memory_encoder", "fill_hole_area")}
    model = SAM2Base(image_encoder=NoImageEncoder(cfg["image_encoder"]["neck"]["d_model"]),
                     memory_attention=memory_attention, memory_encoder=memory_encoder, **top)
    shapes = {k: v for k, v in js["shapes"].items() if not k.startswith("image_encoder.")}
    sd = fill.fill_state_dict(shapes, js[overrides_key])
    own = model.state_dict()
    assert set(own) == set(shapes), (sorted(set(own) - set(shapes)), sorted(set(shapes) - set(own)))
    for k, v in own.items():
        assert list(v.shape) == list(shapes[k]), (k, v.shape, shapes[k])
    model.load_state_dict(sd, strict=True)
    model.eval()
    npz = np.load(golden_dir / "sam2" / "case_small_v21.npz")
    return model, js, npz


def attach_image_encoder(model: SAM2Base, js: dict, fill, overrides_key: str = "overrides_s1_s3") -> SAM2Base:
    """Give `model` the real small Hiera image encoder and load the full golden weight set (strict)."""
    from threeam.models.sam2.hiera import Hiera
    from threeam.models.sam2.image_encoder import FpnNeck, ImageEncoder

    ie = js["config"]["image_encoder"]
    neck_kw = _kw(ie["neck"])
    neck_kw["position_encoding"] = PositionEmbeddingSine(**_kw(ie["neck"]["position_encoding"]))
    model.image_encoder = ImageEncoder(trunk=Hiera(**_kw(ie["trunk"])), neck=FpnNeck(**neck_kw), scalp=ie["scalp"])
    model.load_state_dict(fill.fill_state_dict(js["shapes"], js[overrides_key]), strict=True)
    return model.eval()


def normalised_frames(npz) -> torch.Tensor:
    """Golden frames (T, 256, 256, 3) uint8 -> ImageNet-normalised (T, 3, 256, 256) float32."""
    x = torch.from_numpy(np.asarray(npz["frames"])).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406])
    std = torch.tensor([0.229, 0.224, 0.225])
    return ((x - mean) / std).permute(0, 3, 1, 2).contiguous()


def rel_err(out: torch.Tensor, ref) -> float:
    ref = torch.as_tensor(np.asarray(ref, dtype=np.float32))
    out = out.detach().float().cpu()
    assert tuple(out.shape) == tuple(ref.shape), (tuple(out.shape), tuple(ref.shape))
    return float((out - ref).norm() / ref.norm().clamp_min(1e-12))
