"""Test helper: the small golden SAM 2.1 model built from the official config in `case_small_v21.json`.

Not a test module. Builds through ``SAM2Config.from_official_dict`` + ``build_sam2`` and loads the
`fill.py` weights.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from threeam.models.sam2.build import build_image_encoder, build_sam2
from threeam.models.sam2.config import SAM2Config
from threeam.models.sam2.sam2_base import SAM2Base


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
    """(model in eval mode, json dict, npz dict) for the small golden case.

    Built through ``SAM2Config.from_official_dict`` + ``build_sam2``; the image encoder is then
    replaced by a stub (tests feed golden backbone features), and the `fill.py` weights are
    loaded for every other key (strict). See :func:`attach_image_encoder` for the full model.
    """
    js = json.loads((golden_dir / "sam2" / "case_small_v21.json").read_text())
    model = build_sam2(SAM2Config.from_official_dict(js["config"]))
    assert isinstance(model, SAM2Base)
    model.image_encoder = NoImageEncoder(js["config"]["image_encoder"]["neck"]["d_model"])
    shapes = {k: v for k, v in js["shapes"].items() if not k.startswith("image_encoder.")}
    own = model.state_dict()
    assert set(own) == set(shapes), (sorted(set(own) - set(shapes)), sorted(set(shapes) - set(own)))
    for k, v in own.items():
        assert list(v.shape) == list(shapes[k]), (k, v.shape, shapes[k])
    model.load_state_dict(fill.fill_state_dict(shapes, js[overrides_key]), strict=True)
    model.eval()
    npz = np.load(golden_dir / "sam2" / "case_small_v21.npz")
    return model, js, npz


def attach_image_encoder(model: SAM2Base, js: dict, fill, overrides_key: str = "overrides_s1_s3") -> SAM2Base:
    """Give `model` the real small Hiera image encoder and load the full golden weight set (strict)."""
    cfg = SAM2Config.from_official_dict(js["config"])
    model.image_encoder = build_image_encoder(cfg.image_encoder)
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
