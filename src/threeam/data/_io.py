"""Small image/text I/O helpers for the dataset readers and writers (atomic writes, clear errors)."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from threeam.errors import InputError, VideoError
from threeam.io import jsonio
from threeam.io.atomic import atomic_write_bytes, atomic_write_text

JPEG_QUALITY = 95


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB with the one frame reader
    (`threeam.io.frame_sources.read_image_file`); missing/corrupt files raise VideoError naming it."""
    from threeam.io.frame_sources import read_image_file

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"frame file not found: {path}")
    return read_image_file(path)


def read_png16(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """Read a 16-bit (or 8-bit) single-channel PNG as ``(H, W)`` int64; errors name the file."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("I;16", "I;16B", "I", "L", "P", "I;16L"):
                raise InputError(f"{path}: expected a single-channel {what} PNG, got mode {im.mode}")
            return np.asarray(im, dtype=np.int64).copy()
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"cannot read {what} {path}: {e}") from e


def write_jpg(path: str | os.PathLike, rgb: np.ndarray, quality: int = JPEG_QUALITY) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="JPEG", quality=quality, subsampling=0)
    atomic_write_bytes(path, buf.getvalue())


def write_png_rgb(path: str | os.PathLike, rgb: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def write_png16(path: str | os.PathLike, values: np.ndarray) -> None:
    """Write ``(H, W)`` integers in [0, 65535] as a 16-bit greyscale PNG, atomically."""
    from PIL import Image

    values = np.asarray(values)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise InputError(f"{path}: values must be in [0, 65535] for a 16-bit PNG, "
                         f"got [{values.min()}, {values.max()}]")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(values, dtype=np.uint16)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def depth_to_mm(depth: np.ndarray) -> np.ndarray:
    """Metres -> uint16 millimetres (rounded; > 65.535 m and invalid -> 0)."""
    mm = np.round(np.nan_to_num(depth, nan=0.0) * 1000.0)
    mm[(mm < 0) | (mm > 65535)] = 0
    return mm.astype(np.uint16)


def read_json(path: str | os.PathLike, what: str = "JSON file"):
    """`threeam.io.jsonio.read_json` (InputError naming `what`)."""
    return jsonio.read_json(path, what)


def write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def resize_nearest(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D array (pixel-centre aligned)."""
    h, w = arr.shape[:2]
    if (h, w) == (height, width):
        return arr
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return arr[rows][:, cols]
