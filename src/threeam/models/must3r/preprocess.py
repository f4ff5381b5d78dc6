"""Image preprocessing for MUSt3R, as the official code does it.

Two modes:

* ``"crop16"`` (online / SLAM pipeline, the streaming default): resize so that the long side is
  ``res`` (PIL Lanczos when shrinking, bicubic when enlarging; sizes rounded), then centre-crop each
  side down to a multiple of 16. For ``res`` in (224, 336, 448) the *short* side is resized to ``res``
  and a ``res x res`` square is cropped instead (the square-trained 224 model).
* ``"buckets"`` (offline demo pipeline): centre-crop to the nearest trained aspect ratio, then resize
  (bilinear, antialiased) to that bucket, e.g. 512x384 (4:3), 512x336, 512x288, 512x256, 512x160
  (width x height; transposed for portrait frames). A frame already at a bucket size is untouched.

Both normalise RGB to [-1, 1] (``x / 255 * 2 - 1``; not ImageNet statistics) and keep portrait
frames portrait. ``to_orig`` maps network pixel coordinates (u, v, 1) to original ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from threeam.errors import InputError

__all__ = ["BUCKETS", "Must3rImage", "normalize", "preprocess_frame", "bucket_size"]

# long side -> list of (W, H) landscape sizes
BUCKETS: dict[int, list[tuple[int, int]]] = {
    224: [(224, 224)],
    336: [(336, 336)],
    384: [(384, 288), (384, 256), (384, 192), (384, 128)],
    448: [(448, 448)],
    512: [(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)],
    768: [(768, 576), (768, 512), (768, 432), (768, 384), (768, 240)],
}
_BUCKET_RATIOS = {
    384: [4 / 3, 3 / 2, 2 / 1, 3 / 1],
    512: [4 / 3, 32 / 21, 16 / 9, 2 / 1, 16 / 5],
    768: [4 / 3, 3 / 2, 16 / 9, 2 / 1, 16 / 5],
}
_SQUARE_RES = (224, 336, 448)


@dataclass
class Must3rImage:
    """A frame ready for MUSt3R.

    Attributes:
        image: (3, H, W) float32 in [-1, 1]; H and W are multiples of 16.
        true_shape: (H, W).
        orig_hw: (H0, W0) of the input frame.
        to_orig: (3, 3) float64 affine map from network pixels (u, v, 1) to original pixels.
    """

    image: torch.Tensor
    true_shape: tuple[int, int]
    orig_hw: tuple[int, int]
    to_orig: np.ndarray

    @property
    def focal_to_orig(self) -> float:
        """Factor that turns a focal in network pixels into original pixels (horizontal scale)."""
        return float(self.to_orig[0, 0])


def normalize(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0 * 2.0 - 1.0


def _as_rgb(frame) -> np.ndarray:
    if isinstance(frame, Image.Image):
        frame = np.asarray(frame.convert("RGB"))
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu().numpy()
    if not isinstance(frame, np.ndarray):
        raise InputError(f"a frame must be a uint8 numpy array (H, W, 3) or a PIL image, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InputError(f"a frame must have shape (H, W, 3), got {frame.shape}")
    if frame.dtype != np.uint8:
        raise InputError(f"a frame must be uint8 RGB, got dtype {frame.dtype}")
    return frame


def bucket_size(h: int, w: int, res: int = 512) -> tuple[int, int]:
    """(H, W) of the trained size nearest in aspect ratio to an h x w frame (portrait stays portrait)."""
    if res not in BUCKETS:
        raise InputError(f"res {res} has no trained sizes; valid: {sorted(BUCKETS)}")
    landscape = w >= h
    if len(BUCKETS[res]) == 1:
        bw, bh = BUCKETS[res][0]
    else:
        ratio = w / h if landscape else h / w
        ratios = np.array(_BUCKET_RATIOS[res])
        bw, bh = BUCKETS[res][int(np.argmin(np.abs(ratios - ratio)))]
    return (bh, bw) if landscape else (bw, bh)


def _crop16(rgb: np.ndarray, res: int) -> tuple[np.ndarray, np.ndarray]:
    H0, W0 = rgb.shape[:2]
    img = Image.fromarray(rgb)
    if res in _SQUARE_RES:
        long_side = max(W0, H0) / min(W0, H0) * res
    else:
        long_side = res
    S = max(W0, H0)
    resample = Image.LANCZOS if S > long_side else Image.BICUBIC
    W, H = (int(round(W0 * long_side / S)), int(round(H0 * long_side / S)))
    if min(W, H) < 16:
        raise InputError(f"frame {W0}x{H0} is too elongated: resized to {W}x{H}, a side is below 16 pixels")
    img = img.resize((W, H), resample)
    cx, cy = W // 2, H // 2
    if res in _SQUARE_RES:
        halfw = halfh = res // 2
    else:
        halfw, halfh = ((2 * cx) // 16) * 8, ((2 * cy) // 16) * 8
    box = (cx - halfw, cy - halfh, cx + halfw, cy + halfh)
    out = np.asarray(img.crop(box))
    to_orig = np.array([[W0 / W, 0, box[0] * W0 / W], [0, H0 / H, box[1] * H0 / H], [0, 0, 1]], dtype=np.float64)
    return out, to_orig


def _buckets(rgb: np.ndarray, res: int) -> tuple[torch.Tensor, np.ndarray]:
    H0, W0 = rgb.shape[:2]
    x = normalize(rgb)
    sizes = [(h, w) for (w, h) in BUCKETS[res]] + [(w, h) for (w, h) in BUCKETS[res]]
    if (H0, W0) in sizes:
        return x, np.eye(3)
    th, tw = bucket_size(H0, W0, res)
    ratio, target = W0 / H0, tw / th
    crop_w, crop_h = W0, H0
    if abs(ratio - target) >= np.finfo(np.float32).eps:
        if ratio < target:
            crop_h = int(W0 / target)
        else:
            crop_w = int(H0 * target)
    top = int(round((H0 - crop_h) / 2.0))
    left = int(round((W0 - crop_w) / 2.0))
    x = x[:, top:top + crop_h, left:left + crop_w]
    x = F.interpolate(x[None], size=(th, tw), mode="bilinear", align_corners=False, antialias=True)[0]
    to_orig = np.array([[crop_w / tw, 0, (W0 - crop_w) / 2.0], [0, crop_h / th, (H0 - crop_h) / 2.0], [0, 0, 1]])
    return x, to_orig


def preprocess_frame(frame, res: int = 512, mode: str = "crop16") -> Must3rImage:
    """Prepare one RGB frame (uint8 (H, W, 3) array or PIL image) for MUSt3R (see the module docstring)."""
    rgb = _as_rgb(frame)
    if mode == "crop16":
        if not isinstance(res, int) or res < 16 or res % 16:
            raise InputError(f"res must be a positive multiple of 16, got {res!r}")
        out, to_orig = _crop16(rgb, res)
        image = normalize(out)
    elif mode == "buckets":
        image, to_orig = _buckets(rgb, res)
    else:
        raise InputError(f"unknown preprocessing mode {mode!r}; expected 'crop16' or 'buckets'")
    H, W = image.shape[-2:]
    return Must3rImage(image.contiguous(), (int(H), int(W)), rgb.shape[:2], to_orig)
