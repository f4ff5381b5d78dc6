"""Checks shared by the image and video predictors: user numbers become clean tensors or one
`InputError` line."""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from threeam.errors import InputError


def is_int(value: Any) -> bool:
    """An integer (Python, numpy) that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_float_tensor(value: Any, name: str) -> torch.Tensor:
    """`value` (tensor, array, nested lists) as a float32 CPU tensor; non-numbers and non-finite
    values are an `InputError` naming `name`."""
    try:
        t = value.detach().to("cpu", torch.float32) if isinstance(value, torch.Tensor) \
            else torch.as_tensor(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numbers, got {value!r}") from exc
    if not torch.isfinite(t).all():
        shown = t.tolist() if t.numel() <= 16 else f"{t.numel()} values"
        raise InputError(f"{name} must be finite numbers, got {shown}")
    return t


# The prompt-coordinate rule (docs/tracking.md, "Prompts outside the frame"). The official predictors
# check nothing; we accept what they accept where it is plausibly meant (a detector box slightly
# outside the frame, a click on the far border) and refuse what is clearly a mistake.
OUTSIDE_MARGIN = 1.0  # how far past the frame (in frame sizes) a point or box corner may lie
ASPECT_TOLERANCE = 0.01  # a mask prompt of another size must have the frame's aspect ratio within 1%


def _extent(size_hw: tuple[int, int], normalize_coords: bool, pixels: str) -> tuple[float, float, str]:
    if normalize_coords:
        return float(size_hw[1]), float(size_hw[0]), pixels
    return 1.0, 1.0, "normalised coordinates (normalize_coords=False; the frame is [0, 1] x [0, 1])"


def check_points(xy: torch.Tensor, name: str, size_hw: tuple[int, int], normalize_coords: bool, *,
                 area: str, pixels: str) -> None:
    """Points ``(..., 2)`` as (x, y) of a frame of `size_hw` (``pixels``, e.g. "video pixels"; or
    [0, 1] units without `normalize_coords`).

    A point inside ``[0, W] x [0, H]`` is what it says. One past the right or bottom edge by at
    most one frame size (`OUTSIDE_MARGIN`) is passed to the model unchanged, as the official
    predictors do (the prompt encoder extends past the frame). A negative coordinate or a point
    farther out is an `InputError` naming the first such point and the allowed range.
    """
    max_x, max_y, unit = _extent(size_hw, normalize_coords, pixels)
    lim_x, lim_y = max_x * (1 + OUTSIDE_MARGIN), max_y * (1 + OUTSIDE_MARGIN)
    flat = xy.reshape(-1, 2)
    bad = (flat[:, 0] < 0) | (flat[:, 0] > lim_x) | (flat[:, 1] < 0) | (flat[:, 1] > lim_y)
    if bad.any():
        x, y = flat[bad][0].tolist()
        raise InputError(f"{name} ({x:g}, {y:g}) is outside the {area}: (x, y) must lie in "
                         f"[0, {lim_x:g}] x [0, {lim_y:g}] {unit} (the {area} is [0, {max_x:g}] x [0, {max_y:g}]; "
                         f"no negative coordinates)")


def check_boxes(corners: torch.Tensor, name: str, size_hw: tuple[int, int], normalize_coords: bool, *,
                area: str, pixels: str) -> torch.Tensor:
    """Boxes as corner pairs ``(..., 2, 2)`` (``[[x0, y0], [x1, y1]]``, x1 >= x0, y1 >= y0), used
    as given: a box reaching past the frame ``[0, W] x [0, H]`` (detector boxes often do) is passed
    to the model unchanged, as the official predictors do (the prompt encoder extends past the
    frame), never clipped.

    Refused (`InputError`): a corner more than one frame size outside (`OUTSIDE_MARGIN`: x in
    ``[-W, 2W]``, y in ``[-H, 2H]``), and a box that misses the frame entirely (touching its edge
    is enough). Returns ``corners`` itself.
    """
    max_x, max_y, unit = _extent(size_hw, normalize_coords, pixels)
    m = OUTSIDE_MARGIN
    flat = corners.reshape(-1, 2)
    bad = (flat[:, 0] < -m * max_x) | (flat[:, 0] > (1 + m) * max_x) | \
          (flat[:, 1] < -m * max_y) | (flat[:, 1] > (1 + m) * max_y)
    if bad.any():
        x, y = flat[bad][0].tolist()
        raise InputError(f"{name} ({x:g}, {y:g}) is outside the {area}: box corners must lie in "
                         f"[{-m * max_x:g}, {(1 + m) * max_x:g}] x [{-m * max_y:g}, {(1 + m) * max_y:g}] {unit} "
                         f"(the {area} is [0, {max_x:g}] x [0, {max_y:g}])")
    boxes = corners.reshape(-1, 2, 2)
    away = (boxes[:, 0, 0] > max_x) | (boxes[:, 1, 0] < 0) | (boxes[:, 0, 1] > max_y) | (boxes[:, 1, 1] < 0)
    if away.any():
        x0, y0, x1, y1 = boxes[away][0].reshape(-1).tolist()
        raise InputError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) misses the {area} "
                         f"[0, {max_x:g}] x [0, {max_y:g}] {unit} entirely: a box must overlap or touch it")
    return corners


def check_mask_size(mask_hw: tuple[int, int], size_hw: tuple[int, int], what: str = "video frames") -> bool:
    """A mask prompt of ``mask_hw`` for frames of ``size_hw``: the same size, or another size with
    the same aspect ratio within `ASPECT_TOLERANCE` (it is then resized, as the official predictor
    resizes any mask to the model's input size). Returns whether it needs resizing; any other
    size is an `InputError`."""
    mh, mw = int(mask_hw[0]), int(mask_hw[1])
    h, w = int(size_hw[0]), int(size_hw[1])
    if (mh, mw) == (h, w):
        return False
    if mh < 1 or mw < 1 or abs((mw / mh) / (w / h) - 1.0) > ASPECT_TOLERANCE:
        raise InputError(f"mask has size (H, W) = ({mh}, {mw}) but the {what} are ({h}, {w}); give a mask at "
                         f"that size or with the same aspect ratio {w / h:.4g} (W/H, within "
                         f"{ASPECT_TOLERANCE:.0%}; got {mw / max(mh, 1):.4g})")
    return True
