"""Tiny weights that ship inside the package, loadable by name without any download.

They were trained on generated scenes only (``threeam experiment toy-ablation``; the runs, the
commands and the measured tables are in docs/evidence.md and ``provenance.json`` beside this file):

============================  ======  ==============================================================
name                          model   what
============================  ======  ==============================================================
``3am_tiny``                  3am     3AM: the debug SAM 2 (256 px), the tiny MUSt3R (64 px) and the
                                      tiny Feature Merger, fine-tuned on continuous clips
``3am_tiny_wide``             3am     the same with the tiny-wide MUSt3R (4x the parameters; the first
                                      3AM whose Tracking Recall gain needs the tracked room's geometry)
``sam2.1_debug_256``          sam2    the same debug SAM 2 fine-tuned alone with the same recipe
                                      (the control the 3AM model is compared with)
============================  ======  ==============================================================

``build_three_am_model("3am_tiny")`` / ``build_sam2_model("sam2.1_debug_256")`` (and ``threeam
track --model 3am --preset 3am_tiny``) use them when no checkpoint is given; random weights only
with ``random_weights=True``. They are toy models: they track the generated rooms they were
trained on, not real video.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from threeam.errors import CheckpointError

__all__ = ["SHIPPED", "DEBUG_SAM2_NAME", "is_debug_sam2_name", "shipped_names", "shipped_weights"]

DEBUG_SAM2_NAME = "sam2.1_debug_256"
"""The name of the debug SAM 2 architecture (`threeam.models.three_am.debug_sam2_config`); ``debug`` is an alias."""

SHIPPED: dict[tuple[str, str], str] = {
    ("3am", "3am_tiny"): "3am_tiny",  # a 3AM checkpoint folder (threeam.models.three_am_weights)
    ("3am", "3am_tiny_wide"): "3am_tiny_wide",
    ("sam2", DEBUG_SAM2_NAME): f"{DEBUG_SAM2_NAME}.safetensors",  # a SAM 2 state dict (official key names)
}
"""``(model, preset name) -> path`` of the shipped weights, relative to this package."""

_HERE = Path(__file__).resolve().parent


def is_debug_sam2_name(name: Any) -> bool:
    """Whether ``name`` names the debug SAM 2 (``sam2.1_debug_256`` or ``debug``)."""
    return isinstance(name, str) and name in (DEBUG_SAM2_NAME, "debug")


def shipped_names(model: str) -> list[str]:
    """Preset names of ``model`` (``"sam2"`` or ``"3am"``) that have shipped weights."""
    return [name for m, name in SHIPPED if m == model]


def shipped_weights(model: str, name: Any) -> Optional[Path]:
    """The shipped weights of preset ``name`` of ``model`` (a folder for 3AM, a safetensors file for
    SAM 2), or None when none ship under that name (a config object never has shipped weights).

    Raises CheckpointError when the installation lacks a file it should have."""
    if is_debug_sam2_name(name):
        name = DEBUG_SAM2_NAME
    rel = SHIPPED.get((model, name)) if isinstance(name, str) else None
    if rel is None:
        return None
    path = _HERE / rel
    if not path.exists():
        raise CheckpointError(f"the shipped {model} weights {name!r} are missing from this installation "
                              f"({path}); reinstall threeam")
    return path
