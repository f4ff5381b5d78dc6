"""Test helper (not a test module): the golden `sam2/case_image_small_v21` model and data.

The model is built like the video parity tests (`SAM2Config.from_official_dict` on the reference
config + `build_sam2_from_state_dict` with the `fill.py` weights and the case's overrides).
The reference ran with one torch thread; so do these tests (tiny tensors: extra threads only spin).
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from threeam.models.sam2.build import build_sam2_from_state_dict
from threeam.models.sam2.config import SAM2Config

from .golden_check import unpack_video_masks

IMAGE_HW = (240, 320)

# tolerances of the golden README, section sam2/case_image_small_v21
INPUT_ATOL = 1e-5
FEAT_REL = 1e-4
LOGIT_ATOL = 5e-3
SIGN_AGREEMENT = 0.999
IOU_ATOL = 1e-4
MASK_AGREEMENT = 0.999
STABILITY_ATOL = 1e-3


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def image_case(golden_dir, fill):
    """``.js`` (the JSON), ``.npz``, ``.model`` (a fresh SAM2Base per test module), ``.image``."""
    js = json.loads((golden_dir / "sam2" / "case_image_small_v21.json").read_text())
    npz = np.load(golden_dir / "sam2" / "case_image_small_v21.npz")
    cfg = SAM2Config.from_official_dict(js["config"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build_sam2_from_state_dict(cfg, fill.fill_state_dict(js["shapes"], js["overrides"]))
    finally:
        torch.set_num_threads(before)
    image = npz["image"]
    assert image.shape == (*IMAGE_HW, 3) and image.dtype == np.uint8
    return SimpleNamespace(js=js, npz=npz, model=model, image=image)


def unpack_masks(packed: np.ndarray, width: int = IMAGE_HW[1]) -> np.ndarray:
    """Golden `np.packbits(mask, axis=-1)` -> bool masks of the same leading shape."""
    return unpack_video_masks(packed, width)


def call_by_prefix(js: dict, prefix: str) -> dict:
    """The JSON call record whose npz keys start with `prefix`."""
    for call in js["calls"]:
        if any(k.startswith(prefix) for k in call.get("npz", [])):
            return call
    raise KeyError(prefix)
