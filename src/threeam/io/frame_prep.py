"""Turning one decoded frame into the model's input: the official SAM 2 recipe, done faster.

The official SAM 2 frame loader does, per frame: convert the image to RGB, resize it to
``S x S`` with PIL bicubic, divide by 255 (float64 numpy), store it as float32, then subtract
the ImageNet mean and divide by the std in float32. `prepare_frame` gives bit-identical values
with less work:

* the resize is the same PIL bicubic resize of the uint8 RGB image (frames already ``S x S`` are
  used as they are; PIL's resize to the same size is the identity);
* the normalisation is three in-place float32 operations written straight into the
  ``(3, S, S)`` output (uint8 -> ``/ 255`` -> ``- mean`` -> ``/ std``, channels first): no float64
  image, no intermediate copies, and numpy's loops run without the GIL (so the read-ahead
  threads do not hold up the tracking thread).

The values are exact, not approximately equal: ``float32(v / 255.0)`` computed in float64 (the
official order) equals ``float32(v) / 255`` in float32 for every ``v`` in 0..255
(`normalisation_table` lists all 3 x 256 possible results; tested), and the subtraction and
division are the same IEEE float32 operations.

Not used, because they change pixel values: PIL's JPEG ``draft`` mode (DCT-domain downscaling)
and ``reducing_gap`` (box pre-reduction before the bicubic pass).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_MEAN32 = np.array(IMG_MEAN, dtype=np.float32)[:, None, None]
_STD32 = np.array(IMG_STD, dtype=np.float32)[:, None, None]


@functools.lru_cache(maxsize=None)
def normalisation_table(mean: tuple[float, float, float] = IMG_MEAN,
                        std: tuple[float, float, float] = IMG_STD) -> np.ndarray:
    """float32 ``(3, 256)``: entry ``[c, v]`` is ``((v / 255) - mean[c]) / std[c]`` in float32 ops
    (every value a normalised input can take)."""
    values = torch.arange(256, dtype=torch.float32) / 255.0
    m = torch.tensor(mean, dtype=torch.float32)[:, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None]
    table = ((values[None, :] - m) / s).numpy()
    table.setflags(write=False)
    return table


def pil_to_rgb(img):
    """A PIL image as 8-bit RGB (a PIL image of mode ``"RGB"``).

    16-bit grayscale (modes ``I;16*``; ``I`` is taken as 16-bit too) is scaled to 8 bits with
    ``round(v * 255 / 65535)`` instead of being clipped at 255 (which makes such frames all
    white); every other mode goes through PIL's ``convert("RGB")`` as in the official loader
    (alpha dropped, palettes expanded; 16-bit RGB PNGs are already reduced to 8 bits by PIL).
    """
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT_MODES:
        v = np.asarray(img).astype(np.int64)
        v = np.clip(v, 0, 65535)
        gray = ((v * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2)))
    return img.convert("RGB")


def _as_pil(frame):
    from PIL import Image

    if isinstance(frame, np.ndarray):
        return Image.fromarray(np.ascontiguousarray(frame))
    return frame


def frame_array(frame) -> np.ndarray:
    """uint8 ``(H, W, 3)`` of a decoded frame (a numpy array is returned as it is)."""
    if isinstance(frame, np.ndarray):
        return frame
    w, h = frame.size
    return np.frombuffer(frame.tobytes(), dtype=np.uint8).reshape(h, w, 3)


def frame_hw(frame) -> tuple[int, int]:
    """``(H, W)`` of a decoded frame (numpy ``(H, W, 3)`` or PIL RGB image)."""
    if isinstance(frame, np.ndarray):
        return int(frame.shape[0]), int(frame.shape[1])
    w, h = frame.size
    return int(h), int(w)


def prepare_frame(frame, image_size: int) -> torch.Tensor:
    """One decoded frame -> the model input, float32 ``(3, S, S)`` on the CPU, ``S = image_size``.

    Args:
        frame: uint8 RGB ``(H, W, 3)`` numpy array or a PIL image of mode ``"RGB"``.
        image_size: the model's square input size S.

    Bit-identical to the official recipe (see the module docstring); frames already ``S x S``
    are not resized.
    """
    from PIL import Image

    S = int(image_size)
    if frame_hw(frame) != (S, S):
        frame = _as_pil(frame).resize((S, S), Image.BICUBIC)
    arr = frame_array(frame)
    out = np.empty((3, S, S), dtype=np.float32)
    np.divide(arr.transpose(2, 0, 1), np.float32(255.0), out=out, dtype=np.float32)
    np.subtract(out, _MEAN32, out=out)
    np.divide(out, _STD32, out=out)
    return torch.from_numpy(out)


def reference_model_input(frame: np.ndarray, image_size: int) -> torch.Tensor:
    """The straightforward recipe (PIL bicubic resize, ``/ 255``, ``(x - mean) / std`` as separate
    float32 tensor operations): what `prepare_frame` must equal bit for bit. Kept for tests and as
    the readable definition; use `prepare_frame`."""
    from PIL import Image

    if frame.shape[0] != image_size or frame.shape[1] != image_size:
        frame = np.asarray(Image.fromarray(frame).resize((image_size, image_size), Image.BICUBIC))
    img = torch.from_numpy(np.array(frame, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    return (img - mean) / std
