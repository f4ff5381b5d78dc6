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


def check_points_inside(xy: torch.Tensor, name: str, size_hw: tuple[int, int], normalize_coords: bool, *,
                        area: str, pixels: str) -> None:
    """Points ``(..., 2)`` as (x, y) lie in ``[0, W] x [0, H]`` of `size_hw` (``pixels``, e.g. "video
    pixels"), or in ``[0, 1]`` without `normalize_coords`; else one `InputError` naming the first
    point outside the `area` ("image", "frame")."""
    if normalize_coords:
        max_x, max_y, unit = float(size_hw[1]), float(size_hw[0]), pixels
    else:
        max_x, max_y, unit = 1.0, 1.0, "normalised [0, 1] coordinates (normalize_coords=False)"
    flat = xy.reshape(-1, 2)
    bad = (flat[:, 0] < 0) | (flat[:, 0] > max_x) | (flat[:, 1] < 0) | (flat[:, 1] > max_y)
    if bad.any():
        x, y = flat[bad][0].tolist()
        raise InputError(f"{name} ({x:g}, {y:g}) is outside the {area}: (x, y) must lie in "
                         f"[0, {max_x:g}] x [0, {max_y:g}] {unit}")
