"""The one state-dict key check: a checkpoint's keys and shapes against a model's.

Used by the SAM 2, MUSt3R and 3AM checkpoint loaders, so every mismatch reads the same way:
``<source> does not match <what>: N missing keys (a, b, ...); N unexpected keys (...); N shape
mismatches (key: checkpoint (..) vs model (..))[; hint]`` as one `CheckpointError`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from threeam.errors import CheckpointError

MAX_LISTED = 10


@dataclass
class KeyReport:
    """What differs between a checkpoint and a model (keys in the model's / checkpoint's order)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[str] = field(default_factory=list)  # "key: checkpoint (..) vs model (..)"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    def message(self, source: str, what: str = "the model's configuration") -> str:
        parts = [f"{source} does not match {what}:"]
        for label, items in (("missing keys", self.missing), ("unexpected keys", self.unexpected),
                             ("shape mismatches", self.wrong_shape)):
            if items:
                parts.append(f"{len(items)} {label} ({listing(items)})")
        return " ".join(parts[:1]) + " " + "; ".join(parts[1:])


def listing(items: Iterable[str], limit: int = MAX_LISTED) -> str:
    """``a, b, c, ... (N more)``."""
    items = list(items)
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def compare_keys(expected: Mapping[str, tuple], given: Mapping[str, tuple]) -> KeyReport:
    """Compare ``{key: shape}`` of a model (``expected``) with a checkpoint's (``given``)."""
    return KeyReport(
        missing=[k for k in expected if k not in given],
        unexpected=[k for k in given if k not in expected],
        wrong_shape=[f"{k}: checkpoint {tuple(given[k])} vs model {tuple(expected[k])}"
                     for k in expected if k in given and tuple(given[k]) != tuple(expected[k])],
    )


def shapes_of(tensors: Mapping) -> dict[str, tuple]:
    """``{key: tuple(shape)}`` of a state dict."""
    return {k: tuple(v.shape) for k, v in tensors.items()}


def check_keys(expected: Mapping, given: Mapping, source: str, what: str = "the model's configuration",
               hint: Optional[str] = None) -> None:
    """Raise one `CheckpointError` unless the two state dicts (tensors or shapes) have the same
    keys and shapes; ``hint`` (e.g. the preset the checkpoint fits) is appended."""
    def as_shapes(d: Mapping) -> dict[str, tuple]:
        return {k: tuple(v.shape) if hasattr(v, "shape") else tuple(v) for k, v in d.items()}

    report = compare_keys(as_shapes(expected), as_shapes(given))
    if report.ok:
        return
    msg = report.message(source, what)
    if hint:
        msg += f"; {hint}"
    raise CheckpointError(msg)


__all__ = ["KeyReport", "compare_keys", "check_keys", "listing", "shapes_of", "MAX_LISTED"]
