"""The 3AM video predictor: the SAM 2 session API with geometry-aware frame features.

It is `VideoPredictor` with one hook replaced (`compute_backbone_features`): each frame's stride-16
SAM 2 feature is fused with MUSt3R's features of the same frame by the Feature Merger. Prompts,
multi-object tracking, forward/reverse propagation and every other call are SAM 2's.

MUSt3R rule (see docs/3am.md):
* MUSt3R runs **once per frame per session stream**, never per object: the merged feature of a
  frame is cached in the session (``(1, C, S/16, S/16)`` float32 on the state's storage device) the
  first time the frame is visited, so every object, and re-propagations after a correction, reuse it.
* MUSt3R's streaming memory grows in **first-visit order**: the first frame whose features the
  session needs after `init_state` / `reset_session` (normally the prompted frame) is MUSt3R's
  reference frame. `reset_state` keeps the stream and the cache (same frames, same geometry);
  `reset_session` starts a new, empty MUSt3R stream and clears the cache, so the next prompted
  frame becomes the reference. The evaluation protocol calls `reset_session` before every
  (object group, direction), so a track never depends on other objects or on pass order.
* The merged-feature cache is bounded, so a long video's memory stays flat: by default it holds
  the ``2 W`` most recently used frames (``merged_cache_frames="auto"``, W the predictor's
  `memory_window`, 34 frames for the official models) plus every prompted frame, and at most
  ``merged_cache_mib`` MiB (default 1024). A frame whose feature was evicted is rendered by MUSt3R
  again against the current stream (without writing to its memory); the recomputed geometry may
  differ slightly from the first visit's when the stream's keyframes changed in between.
* Sequence-level fallback (paper Sec. 3.4): ``set_use_geometry(state, False)`` (or a
  ``motion_detector`` that returns True) makes the session plain SAM 2, reusing SAM 2's frozen
  encoder features. The switch is only allowed while nothing is tracked or cached in the stream
  (switching mid-sequence corrupts the memory bank: the paper's observation).

The per-session state is the typed field ``inference_state.three_am`` (`ThreeAMSession`).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from threeam.errors import InputError
from threeam.io.video import list_frame_files, read_image_file, read_video
from threeam.models.must3r.session import Must3rStreamingSession
from threeam.models.three_am import ThreeAM
from threeam.predictor.state import COND, NON_COND, InferenceState
from threeam.predictor.video_predictor import VideoPredictor

MotionDetector = Callable[["RawFrames"], bool]
"""Called once per session before the first propagation; True means "dynamic scene": fall back to SAM 2."""


class RawFrames:
    """The original uint8 RGB frames ``(H, W, 3)`` of a session, for MUSt3R (which keeps the aspect
    ratio). A frame source that serves originals itself (``images.raw(t)``) is used directly; a
    frames folder is read lazily file by file; arrays are kept as given; a video file is decoded
    once more (the SAM 2 side only keeps the square, normalised frames)."""

    def __init__(self, source: Any, images: Any = None):
        self._files: list[Path] | None = None
        self._array: np.ndarray | None = None
        self._images = images if callable(getattr(images, "raw", None)) else None
        if self._images is not None:
            return
        if isinstance(source, (str, Path)) and Path(source).is_dir():
            self._files = list_frame_files(source)
        else:
            self._array = read_video(source)

    def __len__(self) -> int:
        if self._images is not None:
            return len(self._images)
        return len(self._files) if self._files is not None else len(self._array)

    def __getitem__(self, index: int) -> np.ndarray:
        if self._images is not None:
            return self._images.raw(index)
        if self._files is not None:
            return read_image_file(self._files[index])
        return self._array[index]


class MergedFeatureCache(OrderedDict):
    """``{frame_idx: F_merged (1, C, S/16, S/16)}``, least recently used first.

    Two limits, each optional (None: no limit):

    * `max_frames`: at most this many frames that are not `pinned` (pinned frames, the prompted
      ones, never count against it and are never evicted by it);
    * `max_mib`: at most this many MiB of tensors in all, pinned frames included.

    Storing a feature evicts the least recently used ones beyond the limits (unpinned frames
    first; the newest one is always kept); `get` marks a feature as used.
    """

    def __init__(self, max_mib: float | None = 1024.0, max_frames: int | None = None):
        super().__init__()
        if max_mib is not None and (isinstance(max_mib, bool) or not isinstance(max_mib, (int, float))
                                    or not max_mib > 0):
            raise InputError(f"merged_cache_mib must be a positive number of MiB or None, got {max_mib!r}")
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                       or max_frames < 1):
            raise InputError(f"merged_cache_frames must be an integer >= 1, 'auto' or None, got {max_frames!r}")
        self.max_bytes = None if max_mib is None else int(float(max_mib) * 2**20)
        self.max_frames = max_frames
        self.pinned: frozenset[int] = frozenset()
        self.nbytes = 0
        self.evictions = 0

    @staticmethod
    def _size(t: torch.Tensor) -> int:
        return t.numel() * t.element_size()

    def pin(self, frames) -> None:
        """Exempt `frames` (the prompted frames) from the frame-count limit from now on."""
        self.pinned = frozenset(int(t) for t in frames)

    def _evict(self, key: int) -> None:
        old = OrderedDict.pop(self, key)
        self.nbytes -= self._size(old)
        self.evictions += 1

    def _shrink(self, newest: int) -> None:
        if self.max_frames is not None:
            unpinned = [k for k in self if k not in self.pinned]
            for k in unpinned[:max(len(unpinned) - self.max_frames, 0)]:
                if k != newest:
                    self._evict(k)
        if self.max_bytes is not None and self.nbytes > self.max_bytes:
            order = [k for k in self if k not in self.pinned] + [k for k in self if k in self.pinned]
            for k in order:
                if self.nbytes <= self.max_bytes:
                    break
                if k != newest:
                    self._evict(k)

    def __setitem__(self, key: int, value: torch.Tensor) -> None:
        if key in self:
            self.nbytes -= self._size(OrderedDict.__getitem__(self, key))
            OrderedDict.__delitem__(self, key)
        OrderedDict.__setitem__(self, key, value)
        self.nbytes += self._size(value)
        self._shrink(key)

    def __delitem__(self, key: int) -> None:
        self.nbytes -= self._size(OrderedDict.__getitem__(self, key))
        OrderedDict.__delitem__(self, key)

    def get(self, key: int, default: Any = None) -> Any:
        if key not in self:
            return default
        self.move_to_end(key)
        return OrderedDict.__getitem__(self, key)

    def clear(self) -> None:
        OrderedDict.clear(self)
        self.nbytes = 0


@dataclass
class ThreeAMSession:
    """Per-session 3AM state (the typed field ``inference_state.three_am``).

    Attributes:
        frames: the original frames (MUSt3R's input).
        stream: MUSt3R's streaming session (its memory; reference = first frame added).
        use_geometry: 3AM (True) or the plain SAM 2 fallback (False).
        decided: the motion detector / `set_use_geometry` has decided ``use_geometry``.
        merged: ``{frame_idx: F_merged (1, C, S/16, S/16)}`` cached on the storage device, a
            `MergedFeatureCache` bounded by the predictor's ``merged_cache_frames`` (plus the
            prompted frames, pinned) and ``merged_cache_mib``.
        sam2_backbone: SAM 2 backbone outputs computed before the stream needed them
            (``init_state``'s warm-up of frame 0), used once and dropped.
        must3r_calls, visit_order: how often / in which order MUSt3R ran in the current stream
            (first visits only: a frame whose merged feature left the cache is recomputed, counted
            in ``recomputed``).
    """

    frames: RawFrames
    stream: Must3rStreamingSession
    use_geometry: bool = True
    decided: bool = False
    merged: MergedFeatureCache = field(default_factory=MergedFeatureCache)
    sam2_backbone: dict[int, dict] = field(default_factory=dict)
    must3r_calls: int = 0
    visit_order: list[int] = field(default_factory=list)
    visited: set[int] = field(default_factory=set)
    recomputed: int = 0

    def reset_stream(self) -> None:
        """A new, empty MUSt3R memory and no cached merged features."""
        self.stream.reset()
        self.merged.clear()
        self.sam2_backbone.clear()
        self.must3r_calls = 0
        self.visit_order = []
        self.visited = set()
        self.recomputed = 0


class ThreeAMVideoPredictor(VideoPredictor):
    """`VideoPredictor` over a `ThreeAM` model (``self.model`` is its SAM 2 part, ``self.three_am`` the whole)."""

    def __init__(self, three_am: ThreeAM, config=None, *, motion_detector: Optional[MotionDetector] = None,
                 progress: bool = True, memory_policy: Any = None, merged_cache_mib: Any = "config",
                 merged_cache_frames: Any = "config", **options: Any):
        self.three_am = three_am  # before the base class, which may compile the parts
        super().__init__(three_am.sam2, config, progress=progress, memory_policy=memory_policy, **options)
        self.motion_detector = motion_detector
        if isinstance(merged_cache_mib, str) and merged_cache_mib == "config":
            merged_cache_mib = getattr(config, "merged_cache_mib", 1024.0) if config is not None else 1024.0
        if isinstance(merged_cache_frames, str) and merged_cache_frames == "config":
            merged_cache_frames = getattr(config, "merged_cache_frames", "auto") if config is not None else "auto"
        self.merged_cache_mib = merged_cache_mib
        self.merged_cache_frames = merged_cache_frames
        self._new_merged_cache()  # checks the values

    def merged_cache_frame_limit(self) -> int | None:
        """The merged-feature cache's frame limit (prompted frames come on top): ``2 W`` for
        ``merged_cache_frames="auto"`` (W = `memory_window`: the frames a correction or a pass in
        the other direction near the current frame reads again), else the option's value."""
        value = self.merged_cache_frames
        if isinstance(value, str):
            if value != "auto":
                raise InputError(f"merged_cache_frames must be an integer >= 1, 'auto' or None, got {value!r}")
            return 2 * self.memory_window()
        return value

    def _new_merged_cache(self) -> MergedFeatureCache:
        return MergedFeatureCache(self.merged_cache_mib, self.merged_cache_frame_limit())

    @classmethod
    def from_pretrained(cls, preset_or_checkpoint: Any = "3am_hiera_l", checkpoint: Any = None,
                        device: str | torch.device = "cpu", random_weights: bool = False, seed: int = 0,
                        **options: Any) -> "ThreeAMVideoPredictor":
        """A 3AM predictor from `threeam.predictor.build.build_predictor` (the one builder).

        ``preset_or_checkpoint`` is a 3AM preset (``3am_tiny``, ``3am_hiera_l``) or config, or a 3AM
        checkpoint folder / hub id (then ``checkpoint`` stays None).
        """
        from threeam.models.three_am import three_am_presets
        from threeam.predictor.build import build_predictor

        preset = preset_or_checkpoint
        if checkpoint is None and not random_weights and isinstance(preset, (str, Path)) \
                and str(preset) not in three_am_presets():
            preset, checkpoint = None, preset
        return build_predictor("3am", preset=preset, checkpoint=checkpoint, device=device,
                               random_weights=random_weights, seed=seed, **options)

    def _network(self) -> ThreeAM:
        return self.three_am  # `to` / `eval` move and switch all of 3AM, not only its SAM 2

    def compiled_parts(self) -> dict:
        """SAM 2's parts plus MUSt3R's encoder (fixed shapes per video) and decoder (dynamic: its
        memory grows up to ``max_keyframes``) and the Feature Merger (fixed shapes)."""
        parts = super().compiled_parts()
        must3r = self.three_am.must3r
        parts.update({"must3r_encoder": (must3r.encoder, False), "must3r_decoder": (must3r.decoder, True),
                      "merger": (self.three_am.merger, False)})
        return parts

    # ------------------------------------------------------------------ session
    def warm_up(self, inference_state: InferenceState) -> None:
        """Open the session's MUSt3R stream (empty memory) and compute SAM 2's features of frame 0
        without making frame 0 MUSt3R's reference (the stream starts at the first prompted frame)."""
        state = inference_state
        raw = RawFrames(state.video_source, state.images)
        if len(raw) != state.num_frames:
            raise InputError(f"MUSt3R sees {len(raw)} frames but SAM 2 sees {state.num_frames}")
        stream = Must3rStreamingSession(self.three_am.must3r, self.three_am.stream_config)
        state.three_am = ThreeAMSession(frames=raw, stream=stream, merged=self._new_merged_cache())
        image = state.images[0].to(state.device).float().unsqueeze(0)
        with self.autocast_context():
            state.three_am.sam2_backbone[0] = self.model.forward_image(image)

    def geometry(self, inference_state: InferenceState) -> ThreeAMSession:
        """The session's `ThreeAMSession`."""
        geo = inference_state.three_am
        if geo is None:
            raise InputError("this inference state was not made by a ThreeAMVideoPredictor (call its init_state)")
        return geo

    @torch.inference_mode()
    def reset_session(self, inference_state: InferenceState) -> None:
        """`reset_state`, cached features cleared and a new, empty MUSt3R stream: the next prompted
        frame becomes MUSt3R's reference, as on a freshly opened video."""
        super().reset_session(inference_state)
        self.geometry(inference_state).reset_stream()

    def set_use_geometry(self, inference_state: InferenceState, enabled: bool) -> None:
        """Switch the session between 3AM (True) and plain SAM 2 (False, the paper's fallback)."""
        geo = self.geometry(inference_state)
        if bool(enabled) == geo.use_geometry:
            geo.decided = True
            return
        if any(bank[COND] or bank[NON_COND]
               for bank in inference_state.output_dict_per_obj.values()) or geo.merged:
            raise InputError("the 3AM/SAM 2 switch must be made before anything is tracked in the session "
                             "(switching mid-sequence corrupts the memory bank); call reset_session first")
        geo.use_geometry = bool(enabled)
        geo.decided = True
        inference_state.cached_features = {}

    def _decide(self, geo: ThreeAMSession) -> None:
        if geo.decided:
            return
        geo.decided = True
        if self.motion_detector is not None and bool(self.motion_detector(geo.frames)):
            geo.use_geometry = False

    # ------------------------------------------------------------------ the feature hook
    def compute_backbone_features(self, inference_state: InferenceState, frame_idx: int,
                                  image: torch.Tensor) -> dict:
        """SAM 2's backbone output with ``backbone_fpn[-1]`` replaced by F_merged (3AM)."""
        geo = self.geometry(inference_state)
        out = geo.sam2_backbone.pop(frame_idx, None)
        if out is None:
            out = self.model.forward_image(image)
        self._decide(geo)
        if not geo.use_geometry:
            return out
        merged = geo.merged.get(frame_idx)
        if merged is not None:
            return self.three_am.with_merged_feature(out, merged.to(out["backbone_fpn"][-1].device))
        frame = geo.frames[frame_idx]
        if frame_idx in geo.visited:
            # evicted from the merged-feature cache: MUSt3R renders the frame again against the
            # current stream (memory unchanged; the memory may hold other keyframes than at the
            # first visit, so the geometry can differ slightly)
            must3r_out = geo.stream.render_frame(frame)
            geo.recomputed += 1
        else:
            must3r_out = geo.stream.add_frame(frame)
            geo.must3r_calls += 1
            geo.visit_order.append(frame_idx)
            geo.visited.add(frame_idx)
        fused = self.three_am.merge_backbone_output(out, must3r_out, frame.shape[:2])
        geo.merged.pin(prompted_frames(inference_state))
        geo.merged[frame_idx] = fused["backbone_fpn"][-1].to(inference_state.storage_device)
        return fused


def prompted_frames(state: InferenceState) -> set[int]:
    """Frames with a prompt (clicks, box or mask) or a conditioning output for any object."""
    frames: set[int] = set()
    for container in (state.point_inputs_per_obj, state.mask_inputs_per_obj):
        for per_frame in container.values():
            frames.update(per_frame)
    for bank in state.output_dict_per_obj.values():
        frames.update(bank[COND])
    for bank in state.temp_output_dict_per_obj.values():
        frames.update(bank[COND])
    return frames


def build_3am_predictor(ctx: Any) -> ThreeAMVideoPredictor:
    """The 3AM factory of the evaluation methods (`threeam.eval.methods`): a predictor from an
    `threeam.eval.EvalContext`; see `threeam.predictor.build.build_eval_predictor`."""
    from threeam.predictor.build import build_eval_predictor

    return build_eval_predictor(ctx, "3am")
