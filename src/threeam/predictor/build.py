"""One entry point for SAM 2 and 3AM video predictors.

`build_predictor` delegates to `VideoPredictor.from_pretrained` (SAM 2) and
`threeam.predictor.three_am_predictor.build_threeam_predictor` (3AM); both predictors share the
same session API (prompts, multi-object, forward/reverse propagation).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from threeam.errors import InputError


def build_predictor(model: str = "sam2", preset: Optional[str] = None, checkpoint: Optional[str] = None,
                    device: str = "cpu", random_weights: bool = False, seed: int = 0, **predictor_options: Any):
    """A SAM 2 (``model="sam2"``) or 3AM (``model="3am"``) video predictor.

    Args:
        model: ``"sam2"`` or ``"3am"``.
        preset: SAM 2 preset (default ``sam2.1_hiera_l``) or 3AM preset (default ``3am_hiera_l``).
        checkpoint: SAM 2 checkpoint file/hub id, or 3AM checkpoint folder/hub id.
        device: ``"cpu"`` or ``"cuda"``.
        random_weights: deterministic random weights from ``seed`` (smoke tests); then ``checkpoint``
            is ignored.
        **predictor_options: `VideoPredictorConfig` fields, ``config=``, ``progress=``.
    Raises:
        InputError: unknown model, or neither weights nor ``random_weights``.
    """
    if model not in ("sam2", "3am"):
        raise InputError(f"model must be 'sam2' or '3am', got {model!r}")
    if checkpoint is None and not random_weights:
        raise InputError("no weights: give checkpoint= (file, folder or hub id) or random_weights=True")
    if model == "sam2":
        from threeam.predictor.video_predictor import VideoPredictor

        torch.manual_seed(seed)
        return VideoPredictor.from_pretrained(preset or "sam2.1_hiera_l",
                                              checkpoint=None if random_weights else checkpoint,
                                              device=device, **predictor_options)
    from threeam.predictor.three_am_predictor import build_threeam_predictor

    return build_threeam_predictor(preset or "3am_hiera_l", checkpoint=None if random_weights else checkpoint,
                                   device=device, random_weights=random_weights, seed=seed, **predictor_options)
