"""threeam.models.must3r: MUSt3R (ViT-L encoder + memory ViT-B decoder) in plain PyTorch.

Official state-dict key names: ``Must3r.encoder`` / ``Must3r.decoder`` load ``ckpt["encoder"]`` /
``ckpt["decoder"]`` of the released checkpoints unchanged (:func:`load_must3r`).

Main entry points:

* :func:`build_must3r` / :func:`load_must3r` -> :class:`Must3r` (``encode``, ``init_memory``,
  ``add_frames``, ``render``);
* :class:`Must3rStreamingSession` for video, yielding :class:`Must3rFrameOutput` per frame;
* :func:`preprocess_frame`, :func:`postprocess` and the geometry helpers.
"""

from threeam.models.must3r.checkpoint import load_must3r, read_must3r_checkpoint
from threeam.models.must3r.config import (
    MUST3R_PRESETS,
    Must3rConfig,
    Must3rDecoderConfig,
    Must3rEncoderConfig,
    from_checkpoint_args,
    get_must3r_config,
    must3r_presets,
)
from threeam.models.must3r.decoder import Must3rDecoder, Must3rDecoderOutput, Must3rMemory
from threeam.models.must3r.encoder import Must3rEncoder
from threeam.models.must3r.model import Must3r, build_must3r
from threeam.models.must3r.postprocess import (
    Must3rPointmaps,
    estimate_focal,
    estimate_pose,
    postprocess,
    rays_from_pointmap,
    weighted_procrustes,
)
from threeam.models.must3r.preprocess import Must3rImage, preprocess_frame
from threeam.models.must3r.rope import RoPE2D, grid_positions
from threeam.models.must3r.session import (
    DEFAULT_FEATURE_LEVELS,
    Must3rFrameOutput,
    Must3rStreamConfig,
    Must3rStreamingSession,
)

__all__ = [
    "DEFAULT_FEATURE_LEVELS",
    "MUST3R_PRESETS",
    "Must3r",
    "Must3rConfig",
    "Must3rDecoder",
    "Must3rDecoderConfig",
    "Must3rDecoderOutput",
    "Must3rEncoder",
    "Must3rEncoderConfig",
    "Must3rFrameOutput",
    "Must3rImage",
    "Must3rMemory",
    "Must3rPointmaps",
    "Must3rStreamConfig",
    "Must3rStreamingSession",
    "RoPE2D",
    "build_must3r",
    "estimate_focal",
    "estimate_pose",
    "from_checkpoint_args",
    "get_must3r_config",
    "grid_positions",
    "load_must3r",
    "must3r_presets",
    "postprocess",
    "preprocess_frame",
    "rays_from_pointmap",
    "read_must3r_checkpoint",
    "weighted_procrustes",
]
