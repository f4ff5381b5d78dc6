"""The checks config dataclasses run in ``__post_init__``: each bad value is one `InputError` line
naming the field (with the config's prefix, e.g. ``lift option`` or ``toy.``) and what is allowed."""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Optional

from threeam.errors import InputError

__all__ = ["check_ints", "check_numbers", "check_heads"]


def _name(prefix: str, field: str) -> str:
    return f"{prefix}{field}" if not prefix or prefix.endswith((".", " ")) else f"{prefix} {field}"


def check_ints(config: Any, minimums: Mapping[str, int], prefix: str = "") -> None:
    """Every field in `minimums` is an integer (not a bool) of at least its minimum."""
    for field, low in minimums.items():
        v = getattr(config, field)
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
            raise InputError(f"{_name(prefix, field)} must be an integer >= {low}, got {v!r}")


def check_numbers(config: Any, ranges: Mapping[str, tuple[Optional[float], Optional[float]]],
                  prefix: str = "") -> None:
    """Every field in `ranges` is a real number (not a bool, not NaN) in its closed ``(low, high)``
    range (None: unbounded on that side, where infinity is allowed)."""
    for field, (low, high) in ranges.items():
        v = getattr(config, field)
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and not math.isnan(v)
        if ok and (low is None or v >= low) and (high is None or v <= high):
            continue
        if low is None and high is None:
            raise InputError(f"{_name(prefix, field)} must be a real number (not NaN), got {v!r}")
        if low is not None and high is not None:
            allowed = f"in [{low:g}, {high:g}]"
        else:
            allowed = f">= {low:g}" if low is not None else f"<= {high:g}"
        raise InputError(f"{_name(prefix, field)} must be a number {allowed}, got {v!r}")


def check_heads(what: str, dim: int, heads: int) -> None:
    """`dim` channels split into `heads` attention heads whose width is a multiple of 4 (2-D RoPE:
    a sine and a cosine per axis)."""
    if heads < 1 or dim % heads or (dim // heads) % 4:
        raise InputError(f"{what} {dim} must split into {heads} heads of a width divisible by 4 (2-D RoPE)")
