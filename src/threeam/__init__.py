"""threeam: geometry-consistent video object segmentation (the 3AM method).

SAM 2.1 and MUSt3R are reimplemented in plain PyTorch with the official state-dict key names;
a Feature Merger fuses MUSt3R's multi-level features into SAM 2's stride-16 image features.

The short public API (imported on first use)::

    import threeam
    predictor = threeam.build_predictor("sam2", preset="sam2.1_hiera_t", checkpoint="sam2.1_hiera_tiny.pt")
    predictor = threeam.build_predictor("3am", checkpoint="path/to/3am_folder")
    threeam.VideoPredictor, threeam.SAM2VideoPredictor, threeam.ThreeAMVideoPredictor, threeam.ThreeAM
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "build_predictor": "threeam.predictor.build",
    "VideoPredictor": "threeam.predictor.video_predictor",
    "SAM2VideoPredictor": "threeam.predictor.video_predictor",
    "ThreeAMVideoPredictor": "threeam.predictor.three_am_predictor",
    "ThreeAM": "threeam.models.three_am",
    "InputError": "threeam.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'threeam' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
