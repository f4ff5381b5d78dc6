"""Streaming MUSt3R for video: frames arrive one at a time, memory stays bounded.

Policy (all configurable in :class:`Must3rStreamConfig`):

* frame 0 starts the memory alone and is the reference camera (its pose is the identity); it is
  never evicted;
* frame ``i`` is a *keyframe* (written to memory) when ``keyframe_interval`` divides ``i`` and/or,
  with ``new_geometry_threshold`` set, when it sees enough new geometry: the
  ``new_geometry_percentile``-th percentile of the distance from its confident reference-frame
  points to the nearest stored keyframe point, divided by the point's depth, exceeds the threshold
  (and its median confidence is at least ``min_keyframe_conf``), as in the official online SLAM;
* other frames are rendered against the memory (a one-frame write gives exactly the same outputs as
  a render, so the keyframe decision can be taken after the pass);
* when more than ``max_keyframes`` keyframes are stored, the oldest one after the reference is
  removed (memory tokens and its points), so memory, compute and host state are bounded no matter
  how long the video is.

Per-frame outputs are :class:`Must3rFrameOutput`. Feature levels: level 0 is the encoder output
(C = 1024 for ViT-L), level ``k`` (1 .. depth) the output of decoder block ``k`` counted from 1
(C = 768), the last one after ``norm_dec``. The default ``DEFAULT_FEATURE_LEVELS = (0, 4, 7, 11)``
reads the 3AM paper's "encoder output and decoder layers 4, 7, 11" as 1-based block numbers, i.e.
the outputs of the 4th, 7th and 11th decoder blocks (0-based block indices 3, 6, 10). For the
0-based reading use ``(0, 5, 8, 12)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from threeam.errors import InputError
from threeam.models.must3r.decoder import Must3rMemory
from threeam.models.must3r.model import Must3r
from threeam.models.must3r.postprocess import estimate_focal, estimate_pose, postprocess, rays_from_pointmap
from threeam.models.must3r.preprocess import Must3rImage, preprocess_frame

__all__ = [
    "DEFAULT_FEATURE_LEVELS",
    "Must3rStreamConfig",
    "Must3rFrameOutput",
    "Must3rStreamingSession",
    "new_geometry_score",
]

DEFAULT_FEATURE_LEVELS: tuple[int, ...] = (0, 4, 7, 11)


@dataclass(frozen=True)
class Must3rStreamConfig:
    """Streaming options.

    Attributes:
        res: preprocessing size (long side for ``crop16``); ``None`` uses the model's training size
            (``config.encoder.img_size``, i.e. 512 or 224).
        preprocess_mode: ``"crop16"`` (online pipeline) or ``"buckets"``.
        feature_levels: feature levels to return (see the module docstring); empty for none.
        keyframe_interval: every k-th frame is a keyframe; ``None`` disables the rule.
        new_geometry_threshold: depth-normalised new-geometry score above which a frame is a
            keyframe; ``None`` disables the rule.
        new_geometry_percentile: percentile of the per-point scores used as the frame score.
        min_keyframe_conf: median confidence a frame needs to become a geometry keyframe, and the
            confidence a point needs to be used by the geometry test.
        max_keyframes: most keyframes kept in memory (the reference frame included), >= 1.
        keyframe_points: points per keyframe kept for the geometry test (random subsample).
        compute_camera: also return the pose (Procrustes) and focal (Weiszfeld) per frame.
        bf16: run the decoder under bfloat16 autocast on CUDA (the encoder and head stay fp32).
    """

    res: Optional[int] = None
    preprocess_mode: str = "crop16"
    feature_levels: tuple[int, ...] = DEFAULT_FEATURE_LEVELS
    keyframe_interval: Optional[int] = 3
    new_geometry_threshold: Optional[float] = None
    new_geometry_percentile: float = 70.0
    min_keyframe_conf: float = 1.5
    max_keyframes: int = 32
    keyframe_points: int = 2048
    compute_camera: bool = True
    bf16: bool = True

    def input_res(self, model) -> int:
        """The long side frames are resized to for ``model`` (a `Must3r`): ``res``, else its training size."""
        return int(self.res) if self.res is not None else int(model.config.encoder.img_size[0])

    def __post_init__(self):
        if self.keyframe_interval is not None and (not isinstance(self.keyframe_interval, int) or self.keyframe_interval < 1):
            raise InputError(f"keyframe_interval must be a positive int or None, got {self.keyframe_interval!r}")
        if not isinstance(self.max_keyframes, int) or self.max_keyframes < 1:
            raise InputError(f"max_keyframes must be an int >= 1, got {self.max_keyframes!r}")
        if self.keyframe_points < 1:
            raise InputError(f"keyframe_points must be >= 1, got {self.keyframe_points!r}")
        if not 0 <= self.new_geometry_percentile <= 100:
            raise InputError(f"new_geometry_percentile must be in [0, 100], got {self.new_geometry_percentile!r}")
        if self.new_geometry_threshold is not None and self.new_geometry_threshold < 0:
            raise InputError(f"new_geometry_threshold must be >= 0 or None, got {self.new_geometry_threshold!r}")


@dataclass
class Must3rFrameOutput:
    """MUSt3R outputs for one frame (B = 1 in a streaming session).

    Attributes:
        frame_index: index of the frame in the stream.
        is_keyframe: whether the frame was written to memory.
        features: one (B, N, C_l) tensor per configured level (``levels``), N = h * w tokens.
        levels: the feature levels, in the order of ``features``.
        positions: (B, N, 2) int64 token (row, col) positions.
        grid_hw: (h, w) token grid.
        true_shape: (H, W) pixel size of the network frame (H = 16 h, W = 16 w).
        pts_ref: (B, H, W, 3) points in the reference (frame 0) camera frame.
        pts_self: (B, H, W, 3) points in this frame's own camera frame.
        conf: (B, H, W) confidence (> 1).
        rays: (B, H, W, 3) unit viewing directions (from ``pts_self``).
        c2w: (B, 4, 4) camera-to-reference pose, or None.
        focal: (B,) focal in network pixels (principal point at the centre), or None.
        to_orig: (3, 3) network pixels -> original frame pixels, or None.
    """

    frame_index: int
    is_keyframe: bool
    features: list[Tensor]
    levels: tuple[int, ...]
    positions: Tensor
    grid_hw: tuple[int, int]
    true_shape: tuple[int, int]
    pts_ref: Tensor
    pts_self: Tensor
    conf: Tensor
    rays: Tensor
    c2w: Optional[Tensor] = None
    focal: Optional[Tensor] = None
    to_orig: Optional[np.ndarray] = None

    @property
    def depth(self) -> Tensor:
        """(B, H, W) depth in the frame's own camera."""
        return self.pts_self[..., 2]

    def feature(self, level: int) -> Tensor:
        """The (B, N, C) features of one configured level."""
        if level not in self.levels:
            raise InputError(f"feature level {level} was not computed; available: {self.levels}")
        return self.features[self.levels.index(level)]


def new_geometry_score(points: Tensor, depth: Tensor, keyframe_points: Tensor, percentile: float = 70.0) -> float:
    """How much new geometry a frame sees, relative to the stored keyframe points.

    Args:
        points: (P, 3) the frame's points in the reference frame.
        depth: (P,) their depth in the frame's own camera (for scale invariance).
        keyframe_points: (Q, 3) stored keyframe points (reference frame).
        percentile: percentile of the per-point scores ``nn_distance / depth``.
    Returns:
        The score (``inf`` when there are no keyframe points, 0 when the frame has no points).
    """
    if points.shape[0] == 0:
        return 0.0
    if keyframe_points.shape[0] == 0:
        return float("inf")
    from scipy.spatial import cKDTree

    tree = cKDTree(keyframe_points.detach().double().cpu().numpy())
    dist, _ = tree.query(points.detach().double().cpu().numpy(), k=1)
    ratio = dist / np.maximum(depth.detach().abs().double().cpu().numpy(), 1e-8)
    return float(np.percentile(ratio, percentile))


@dataclass
class _Keyframe:
    frame_index: int
    label: int
    points: Tensor  # (P, 3) cpu float32


class Must3rStreamingSession:
    """Feed frames one by one with :meth:`add_frame` (or iterate :meth:`stream`).

    Frames may be uint8 (H, W, 3) arrays / PIL images (preprocessed with the config), a
    :class:`Must3rImage`, or a float tensor (3, H, W) already normalised to [-1, 1]. Frame sizes may
    change during a stream (memory tokens carry no position).
    """

    def __init__(self, model: Must3r, config: Must3rStreamConfig = Must3rStreamConfig(), seed: int = 0):
        depth = len(model.decoder.blocks_dec)
        bad = [lv for lv in config.feature_levels if not 0 <= lv <= depth]
        if bad:
            raise InputError(f"feature levels {bad} are out of range for a decoder of depth {depth}: valid 0..{depth}")
        self.model = model
        self.config = config
        self._levels = tuple(config.feature_levels)
        self._generator = torch.Generator().manual_seed(seed)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything (the next frame becomes the reference)."""
        self.memory: Optional[Must3rMemory] = None
        self.keyframes: list[_Keyframe] = []
        self.frame_count = 0

    @property
    def keyframe_indices(self) -> list[int]:
        """Stream indices of the keyframes now in memory."""
        return [k.frame_index for k in self.keyframes]

    @property
    def memory_tokens(self) -> int:
        return 0 if self.memory is None else self.memory.num_tokens

    # ------------------------------------------------------------------ input
    def _prepare(self, frame) -> tuple[Tensor, Optional[np.ndarray]]:
        if isinstance(frame, Must3rImage):
            return frame.image, frame.to_orig
        if isinstance(frame, Tensor) and frame.is_floating_point():
            if frame.ndim != 3 or frame.shape[0] != 3:
                raise InputError(f"a normalised frame tensor must be (3, H, W), got {tuple(frame.shape)}")
            return frame, None
        prepared = preprocess_frame(frame, res=self.config.input_res(self.model), mode=self.config.preprocess_mode)
        return prepared.image, prepared.to_orig

    # ------------------------------------------------------------------ main step
    @torch.no_grad()
    def add_frame(self, frame) -> Must3rFrameOutput:
        """Process the next frame of the stream and return its outputs."""
        cfg = self.config
        image, to_orig = self._prepare(frame)
        device = next(self.model.parameters()).device
        image = image.to(device)
        index = self.frame_count
        H, W = image.shape[-2:]

        tokens, pos = self.model.encode(image[None, None])
        first = self.memory is None
        by_interval = cfg.keyframe_interval is not None and index % cfg.keyframe_interval == 0
        want_geometry = cfg.new_geometry_threshold is not None
        write = first or by_interval or want_geometry
        use_bf16 = cfg.bf16 and device.type == "cuda"
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = self.model.decode(tokens, pos, (H, W), memory=self.memory, render=not write,
                                    keep_levels=self._levels)
        pm = postprocess(out.pointmaps_raw[:, 0], self.model.config.decoder.pointmaps_activation)

        is_key = first or by_interval
        if not is_key and want_geometry:
            is_key = self._sees_new_geometry(pm.pts_ref[0], pm.pts_self[0], pm.conf[0])
        if is_key:
            self.memory = out.memory
            label = out.memory.num_images - 1
            self.keyframes.append(_Keyframe(index, label, self._keyframe_points(pm.pts_ref[0], pm.conf[0])))
            self._evict()
        self.frame_count += 1

        c2w = focal = None
        if cfg.compute_camera:
            focal = estimate_focal(pm.pts_self, weights=pm.conf - 1.0)
            c2w = estimate_pose(pm.pts_self, pm.pts_ref, pm.conf)
        feats = [out.feats[lv][:, 0].float() for lv in self._levels]
        h, w = H // self.model.encoder.patch_size, W // self.model.encoder.patch_size
        return Must3rFrameOutput(
            frame_index=index, is_keyframe=is_key, features=feats, levels=self._levels, positions=pos[:, 0],
            grid_hw=(h, w), true_shape=(H, W), pts_ref=pm.pts_ref, pts_self=pm.pts_self, conf=pm.conf,
            rays=rays_from_pointmap(pm.pts_self), c2w=c2w, focal=focal, to_orig=to_orig,
        )

    @torch.no_grad()
    def render_frame(self, frame) -> Must3rFrameOutput:
        """A frame's outputs against the current memory, changing nothing: no write, no keyframe,
        no frame counter step (for recomputing evicted per-frame results). Needs a started stream."""
        if self.memory is None:
            raise InputError("render_frame needs a started stream: add_frame the reference frame first")
        image, to_orig = self._prepare(frame)
        device = next(self.model.parameters()).device
        image = image.to(device)
        H, W = image.shape[-2:]
        tokens, pos = self.model.encode(image[None, None])
        use_bf16 = self.config.bf16 and device.type == "cuda"
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = self.model.decode(tokens, pos, (H, W), memory=self.memory, render=True, keep_levels=self._levels)
        pm = postprocess(out.pointmaps_raw[:, 0], self.model.config.decoder.pointmaps_activation)
        c2w = focal = None
        if self.config.compute_camera:
            focal = estimate_focal(pm.pts_self, weights=pm.conf - 1.0)
            c2w = estimate_pose(pm.pts_self, pm.pts_ref, pm.conf)
        feats = [out.feats[lv][:, 0].float() for lv in self._levels]
        h, w = H // self.model.encoder.patch_size, W // self.model.encoder.patch_size
        return Must3rFrameOutput(
            frame_index=-1, is_keyframe=False, features=feats, levels=self._levels, positions=pos[:, 0],
            grid_hw=(h, w), true_shape=(H, W), pts_ref=pm.pts_ref, pts_self=pm.pts_self, conf=pm.conf,
            rays=rays_from_pointmap(pm.pts_self), c2w=c2w, focal=focal, to_orig=to_orig,
        )

    def stream(self, frames: Iterable) -> Iterator[Must3rFrameOutput]:
        """Yield the outputs of each frame in turn (nothing is accumulated)."""
        for frame in frames:
            yield self.add_frame(frame)

    # ------------------------------------------------------------------ keyframe helpers
    def _confident(self, conf: Tensor) -> Tensor:
        mask = conf > self.config.min_keyframe_conf
        return mask.reshape(-1)

    def _keyframe_points(self, pts_ref: Tensor, conf: Tensor) -> Tensor:
        if self.config.new_geometry_threshold is None:
            return torch.zeros(0, 3)
        pts = pts_ref.reshape(-1, 3)[self._confident(conf)].float().cpu()
        n = self.config.keyframe_points
        if pts.shape[0] > n:
            pts = pts[torch.randperm(pts.shape[0], generator=self._generator)[:n]]
        return pts

    def _sees_new_geometry(self, pts_ref: Tensor, pts_self: Tensor, conf: Tensor) -> bool:
        cfg = self.config
        if float(conf.median()) < cfg.min_keyframe_conf:
            return False
        mask = self._confident(conf)
        pts = pts_ref.reshape(-1, 3)[mask].float().cpu()
        depth = pts_self.reshape(-1, 3)[mask][:, 2].float().cpu()
        if pts.shape[0] > cfg.keyframe_points:
            sel = torch.randperm(pts.shape[0], generator=self._generator)[: cfg.keyframe_points]
            pts, depth = pts[sel], depth[sel]
        stored = torch.cat([k.points for k in self.keyframes]) if self.keyframes else torch.zeros(0, 3)
        score = new_geometry_score(pts, depth, stored, cfg.new_geometry_percentile)
        return score > cfg.new_geometry_threshold

    def _evict(self) -> None:
        while len(self.keyframes) > self.config.max_keyframes:
            victim_pos = 1 if len(self.keyframes) > 1 else 0  # the reference frame stays
            victim = self.keyframes.pop(victim_pos)
            self.memory = self.memory.remove_images([victim.label])
