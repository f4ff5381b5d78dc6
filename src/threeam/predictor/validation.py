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
