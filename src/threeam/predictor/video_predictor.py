"""SAM 2 video predictor: the interactive session API (init_state / add prompts / propagate).

Same methods, arguments, defaults and results as the official ``SAM2VideoPredictor`` (Dec-2024
release): objects are tracked independently (batch 1 per object) on shared per-frame backbone
features, so objects can be added at any time; prompted frames are held back until
`propagate_in_video_preflight` encodes them into memory; memories are stored as bfloat16.

Differences, all on the friendly side:

* the predictor wraps a model (`SAM2Base`) instead of being one: ``VideoPredictor(model, ...)`` or
  ``VideoPredictor.from_pretrained("sam2.1_hiera_t", checkpoint=...)``;
* ``init_state`` also takes a numpy array / torch tensor ``(T, H, W, 3)`` uint8 and a
  ``video_size=(H, W)`` for frames that were already resized (see `threeam.io.video`);
* bad input (points clearly outside the frame, unknown object ids, a mask of another aspect
  ratio, ...) raises `threeam.errors.InputError` with a clear message before anything in the
  state changes; boxes reaching up to one frame size past the frame are used as given (not
  clipped, as the official does) and a mask of another size with the frame's
  aspect ratio is resized (docs/tracking.md, "Prompts outside the frame");
  ``remove_object`` ignores an unknown id by default (as the official does) and raises for one
  with ``strict=True``;
* hole filling (``fill_hole_area``) runs on any device: on an accelerator on the device itself
  (no host synchronisation), on the CPU with scipy connected components
  (`threeam.predictor.postprocess`);
* ``progress=False`` silences the tqdm progress bar.

Two public hooks:

* `VideoPredictor.compute_backbone_features` gives each frame's backbone output; subclasses (the
  3AM predictor) override it to replace the stride-16 feature;
* a *memory policy* (`threeam.eval.baselines.policy.MemoryPolicy`, set with `with_memory_policy`)
  takes over every tracking step of a frame without prompt (SAM2Long and DAM4SAM are policies);
  without one, `track_object_step` runs SAM 2's own step.

Two resets: `reset_state` (official: prompts, outputs and object ids go, cached features stay) and
`reset_session` (also every cached feature, and in subclasses any per-session stream such as
3AM's MUSt3R memory), so that the next prompt starts as on a freshly opened video.
"""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from threeam.errors import InputError
from threeam.io.video import VideoSource, load_video_frames
from threeam.predictor.postprocess import fill_holes_in_mask_scores
from threeam.models.sam2.sam2_base import memory_frame_indices
from threeam.models.sam2.tracking import COND, NON_COND, NO_OBJ_SCORE, FrameFeatures, TrackStepOutput
from threeam.predictor.state import TRACKED, InferenceState, empty_output_dict
from threeam.predictor.validation import as_float_tensor, check_mask_size, check_points, check_boxes, is_int

PREDICTOR_OPTIONS = (
    "fill_hole_area",
    "non_overlap_masks",
    "clear_non_cond_mem_around_input",
    "add_all_frames_to_correct_as_cond",
    "binarize_mask_from_pts_for_mem_enc",
)
# ours (see docs/performance.md): batched objects, bounded per-frame state
PERFORMANCE_OPTIONS = ("batch_objects", "keep_all_outputs", "spill_dir", "autocast", "compile")
_PERFORMANCE_DEFAULTS = dict(batch_objects=True, keep_all_outputs=False, spill_dir=None, autocast=None, compile=False)
# the per-frame entry fields written to a spill file (maskmem_pos_enc is the shared copy)
_SPILL_KEYS = ("maskmem_features", "pred_masks", "obj_ptr", "object_score_logits")


class VideoPredictor:
    """Interactive SAM 2 video segmentation around a `SAM2Base` model.

    Args:
        model: a `threeam.models.sam2.sam2_base.SAM2Base` (put in eval mode here).
        config: optional predictor options object (e.g. `VideoPredictorConfig`); its attributes named
            like the keywords below are used, explicit keywords win.
        fill_hole_area: fill background holes of at most this many pixels (low-res mask) with a
            small positive logit; 0 turns it off (official default 0).
        non_overlap_masks: at each pixel keep only the highest-scoring object in the outputs.
        clear_non_cond_mem_around_input: after a correction on frame t, drop the tracked
            (non-conditioning) memories within ``num_maskmem`` frames of t for that object.
        add_all_frames_to_correct_as_cond: a frame that gets a correction becomes a conditioning frame.
        binarize_mask_from_pts_for_mem_enc: None keeps the model's setting; a bool sets it on the model
            (threshold masks from clicks at 0 before encoding them into memory).
        progress: show a tqdm progress bar while propagating.
        memory_policy: a `MemoryPolicy` that takes over the tracking steps (see `with_memory_policy`).
        batch_objects: track the objects of a frame whose memory selections are identical as one
            batch (default True; results equal the per-object path within float32 rounding).
        keep_all_outputs: keep every per-frame output as the official predictor does (default False:
            tracked outputs that no later step can read are dropped, so memory stays flat; see
            `release_unreachable_outputs`).
        spill_dir: a folder for the dropped outputs (default None: they are gone); with one, a
            correction or a pass that needs a dropped output reads it back, exactly as if it had
            been kept.
        autocast: None (default): bfloat16 autocast on CUDA, float32 elsewhere; True/False force it
            (True on the CPU is for tests: CPU bfloat16 autocast).
        compile: torch.compile the model's parts (the official ``vos_optimized=True``; see
            `compile_model`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: Any = None,
        *,
        fill_hole_area: int | None = None,
        non_overlap_masks: bool | None = None,
        clear_non_cond_mem_around_input: bool | None = None,
        add_all_frames_to_correct_as_cond: bool | None = None,
        binarize_mask_from_pts_for_mem_enc: bool | None = None,
        progress: bool = True,
        memory_policy: Any = None,
        batch_objects: bool | None = None,
        keep_all_outputs: bool | None = None,
        spill_dir: str | os.PathLike | None = None,
        autocast: bool | None = None,
        compile: bool | None = None,
    ) -> None:
        self.model = model.eval()
        self.memory_policy = memory_policy
        perf = {}
        for name, value in (("batch_objects", batch_objects), ("keep_all_outputs", keep_all_outputs),
                            ("spill_dir", spill_dir), ("autocast", autocast), ("compile", compile)):
            if value is None and config is not None:
                value = getattr(config, name, None)
            perf[name] = _PERFORMANCE_DEFAULTS[name] if value is None else value
        self.batch_objects = bool(perf["batch_objects"])
        self.keep_all_outputs = bool(perf["keep_all_outputs"])
        self.spill_dir = None if perf["spill_dir"] is None else Path(perf["spill_dir"])
        if self.spill_dir is not None and self.spill_dir.exists() and not self.spill_dir.is_dir():
            raise InputError(f"spill_dir {str(self.spill_dir)!r} exists and is not a folder")
        self.autocast = None if perf["autocast"] is None else bool(perf["autocast"])
        self.compiled = False
        if perf["compile"]:
            self.compile_model()
        explicit = dict(
            fill_hole_area=fill_hole_area,
            non_overlap_masks=non_overlap_masks,
            clear_non_cond_mem_around_input=clear_non_cond_mem_around_input,
            add_all_frames_to_correct_as_cond=add_all_frames_to_correct_as_cond,
            binarize_mask_from_pts_for_mem_enc=binarize_mask_from_pts_for_mem_enc,
        )
        defaults = dict(fill_hole_area=0, non_overlap_masks=False, clear_non_cond_mem_around_input=False,
                        add_all_frames_to_correct_as_cond=False, binarize_mask_from_pts_for_mem_enc=None)
        opts = {}
        for name in PREDICTOR_OPTIONS:
            value = explicit[name]
            if value is None and config is not None:
                value = getattr(config, name, None)
            opts[name] = defaults[name] if value is None else value
        if not is_int(opts["fill_hole_area"]) or opts["fill_hole_area"] < 0:
            raise InputError(f"fill_hole_area must be an integer >= 0 (pixels), got {opts['fill_hole_area']!r}")
        self.fill_hole_area = int(opts["fill_hole_area"])
        self.non_overlap_masks = bool(opts["non_overlap_masks"])
        self.clear_non_cond_mem_around_input = bool(opts["clear_non_cond_mem_around_input"])
        self.add_all_frames_to_correct_as_cond = bool(opts["add_all_frames_to_correct_as_cond"])
        if opts["binarize_mask_from_pts_for_mem_enc"] is not None:
            self.model.binarize_mask_from_pts_for_mem_enc = bool(opts["binarize_mask_from_pts_for_mem_enc"])
        self.progress = progress

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        preset_or_config: Any,
        checkpoint: Any = None,
        device: str | torch.device = "cpu",
        random_weights: bool = False,
        seed: int = 0,
        **options: Any,
    ) -> "VideoPredictor":
        """A SAM 2 predictor from `threeam.predictor.build.build_predictor` (the one builder).

        As the official ``build_sam2_video_predictor`` / ``SAM2VideoPredictor.from_pretrained``,
        the predictor options default to `VideoPredictorConfig()` (hole filling up to 8 pixels,
        binarised click masks for the memory encoder).

        Args:
            preset_or_config: a preset name (``"sam2.1_hiera_t"``), an official hub id
                (``"facebook/sam2.1-hiera-tiny"``: downloaded, or a clear `OfflineError` offline) or a
                `SAM2Config`.
            checkpoint: a checkpoint path or hub id (see ``build_sam2``).
            random_weights, seed: deterministic random weights, only when asked for by name.
            device: where the model runs.
            **options: ``config=`` a `VideoPredictorConfig`, any of its fields to override it,
                ``progress``, ``memory_policy``.
        """
        from threeam.predictor.build import build_predictor

        return build_predictor("sam2", preset=preset_or_config, checkpoint=checkpoint, device=device,
                               random_weights=random_weights, seed=seed, **options)

    # ------------------------------------------------------------------ the official predictor's nn.Module face
    def _network(self) -> torch.nn.Module:
        """The whole network behind the predictor (3AM: SAM 2, MUSt3R and the merger)."""
        return self.model

    def to(self, *args: Any, **kwargs: Any) -> "VideoPredictor":
        """Move the model (``predictor.to("cuda")``); returns the predictor, as ``nn.Module.to`` does."""
        self._network().to(*args, **kwargs)
        return self

    def eval(self) -> "VideoPredictor":
        self._network().eval()
        return self

    def __getattr__(self, name: str) -> Any:
        # attribute access to the model's parts (``predictor.image_encoder``, ``predictor.num_maskmem``),
        # as on the official SAM2VideoPredictor, which *is* a SAM2Base
        if name.startswith("__") or "model" not in self.__dict__:
            raise AttributeError(name)
        try:
            return getattr(self.__dict__["model"], name)
        except AttributeError:
            raise AttributeError(f"{type(self).__name__!r} object (and its model) has no attribute {name!r}") from None

    def with_memory_policy(self, policy: Any) -> "VideoPredictor":
        """A copy of this predictor (same model and options) whose tracking steps follow `policy`
        (a `threeam.eval.baselines.policy.MemoryPolicy`); this predictor is left unchanged."""
        from threeam.eval.baselines.policy import MemoryPolicy

        if not isinstance(policy, MemoryPolicy):
            raise InputError(f"policy must be a MemoryPolicy, got {type(policy).__name__}")
        if self.memory_policy is not None:
            raise InputError(f"this predictor already has a memory policy ({self.memory_policy.name})")
        out = copy.copy(self)
        out.memory_policy = policy
        return out

    @property
    def image_size(self) -> int:
        """The model's square input size S."""
        return int(self.model.image_size)

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------ session
    @torch.inference_mode()
    def init_state(
        self,
        video_path: VideoSource | None = None,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
        video_size: tuple[int, int] | None = None,
        *,
        video: VideoSource | None = None,
        check_all_frames: bool = False,
    ) -> InferenceState:
        """Load a video and start a session.

        Args:
            video_path (or ``video=``): a frames folder (jpg/jpeg/png, ordered by the number in the names), a video file
                (mp4/mov/avi/...), or a uint8 array/tensor ``(T, H, W, 3)``.
            offload_video_to_cpu: keep the normalised frames on the CPU (saves GPU memory).
            offload_state_to_cpu: keep masks and memories on the CPU (object pointers stay on the device).
            async_loading_frames: for a frames folder, load frames in a background thread.
            video_size: ``(H, W)`` of the original video when the frames given were already resized;
                prompts are then read, and outputs produced, in that frame. Frames that already
                are ``S x S`` are never resized again.
            check_all_frames: for a frames folder, open every file now (as the official
                synchronous loader does), so that a file that is not a readable image, or a frame
                of another size, raises `VideoError` here instead of when tracking reaches it.
                It reads headers only (a few milliseconds per hundred files).

        Returns:
            An `InferenceState`; the backbone features of frame 0 are computed and cached.
        """
        if video is not None and video_path is not None:
            raise InputError("give the video once: video_path= or video=, not both")
        video = video_path if video is None else video
        if video is None:
            raise InputError("init_state needs a video: a frames folder, a video file or a (T, H, W, 3) uint8 array")
        device = self.device
        frames_device = torch.device("cpu") if offload_video_to_cpu else device
        video_data = load_video_frames(video, self.image_size, video_size=video_size, device=frames_device,
                                       async_loading_frames=async_loading_frames,
                                       check_all_frames=bool(check_all_frames))
        state = InferenceState(
            images=video_data.images,
            num_frames=video_data.num_frames,
            video_height=video_data.video_height,
            video_width=video_data.video_width,
            device=device,
            storage_device=torch.device("cpu") if offload_state_to_cpu else device,
            offload_video_to_cpu=offload_video_to_cpu,
            offload_state_to_cpu=offload_state_to_cpu,
            source=video_data.source,
            video_source=video,
        )
        self.warm_up(state)
        return state

    def warm_up(self, inference_state: InferenceState) -> None:
        """Compute and cache frame 0's backbone features (as the official ``init_state`` does)."""
        self.frame_features(inference_state, frame_idx=0)

    # ------------------------------------------------------------------ validation helpers
    def _check_frame_idx(self, state: InferenceState, frame_idx: Any, name: str = "frame_idx") -> int:
        if not is_int(frame_idx):
            raise InputError(f"{name} must be an integer, got {frame_idx!r}")
        if not 0 <= frame_idx < state.num_frames:
            raise InputError(f"{name} {frame_idx} is out of range: the video has {state.num_frames} frames "
                             f"(valid 0..{state.num_frames - 1})")
        return int(frame_idx)

    @staticmethod
    def _check_obj_id(obj_id: Any) -> int:
        if not is_int(obj_id):
            raise InputError(f"obj_id must be an integer, got {obj_id!r}")
        return int(obj_id)

    def _known_obj_idx(self, state: InferenceState, obj_id: Any) -> int:
        obj_id = self._check_obj_id(obj_id)
        idx = state.obj_id_to_idx.get(obj_id)
        if idx is None:
            raise InputError(f"unknown object id {obj_id}: it was never prompted in this session "
                             f"(known ids: {list(state.obj_ids)})")
        return idx

    def _obj_id_to_idx(self, state: InferenceState, obj_id: int) -> int:
        """Map a user object id to its model-side index, adding a new object if needed."""
        idx = state.obj_id_to_idx.get(obj_id)
        if idx is not None:
            return idx
        idx = len(state.obj_id_to_idx)
        state.obj_id_to_idx[obj_id] = idx
        state.obj_idx_to_id[idx] = obj_id
        state.obj_ids = list(state.obj_id_to_idx)
        state.point_inputs_per_obj[idx] = {}
        state.mask_inputs_per_obj[idx] = {}
        state.output_dict_per_obj[idx] = empty_output_dict()
        state.temp_output_dict_per_obj[idx] = empty_output_dict()
        state.frames_tracked_per_obj[idx] = {}
        return idx

    def _obj_idx_to_id(self, state: InferenceState, obj_idx: int) -> int:
        return state.obj_idx_to_id[obj_idx]

    def _get_obj_num(self, state: InferenceState) -> int:
        return len(state.obj_idx_to_id)

    def _check_coords(self, state: InferenceState, coords: torch.Tensor, name: str, normalize_coords: bool) -> None:
        """coords (..., 2) as (x, y): inside the video frame (pixels) or in [0, 1] without normalisation."""
        check_points(coords, name, (state.video_height, state.video_width), normalize_coords, area="frame",
                     pixels="video pixels")

    def _prepare_point_prompt(self, state, points, labels, box, normalize_coords, clear_old_points):
        """Validate the prompt and turn it into model-input coordinates: ((1, P, 2), (1, P) int32)."""
        if (points is None) != (labels is None):
            raise InputError("points and labels must be given together (one label per point)")
        if points is None and box is None:
            raise InputError("give points (with labels) or a box")
        if points is not None:
            pts = as_float_tensor(points, "points")
            if pts.dim() == 3 and pts.shape[0] == 1:
                pts = pts[0]
            if pts.dim() != 2 or pts.shape[-1] != 2:
                raise InputError(f"points must have shape (N, 2) as (x, y), got {tuple(pts.shape)}")
            lab = labels.detach().to("cpu") if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
            if lab.dim() == 2 and lab.shape[0] == 1:
                lab = lab[0]
            if lab.dim() != 1:
                raise InputError(f"labels must have shape (N,), got {tuple(lab.shape)}")
            if lab.shape[0] != pts.shape[0]:
                raise InputError(f"got {pts.shape[0]} points but {lab.shape[0]} labels; give one label per point")
            if lab.is_floating_point() and not torch.equal(lab, lab.round()):
                raise InputError(f"labels must be integers (1 positive, 0 negative), got {lab.tolist()}")
            lab = lab.to(torch.int32)
            allowed = {-1, 0, 1, 2, 3}
            if not set(lab.tolist()) <= allowed:
                raise InputError(f"labels must be 1 (positive) or 0 (negative) (2/3 box corners, -1 padding), "
                                 f"got {lab.tolist()}")
            self._check_coords(state, pts, "point", normalize_coords)
        else:
            pts = torch.zeros(0, 2, dtype=torch.float32)
            lab = torch.zeros(0, dtype=torch.int32)
        if box is not None:
            if not clear_old_points:
                raise InputError("a box must come before any click: add it with clear_old_points=True")
            b = as_float_tensor(box, "box")
            if b.numel() != 4:
                raise InputError(f"box must be 4 numbers (x0, y0, x1, y1), got shape {tuple(b.shape)}")
            b = b.reshape(2, 2)
            if b[1, 0] < b[0, 0] or b[1, 1] < b[0, 1]:
                raise InputError(f"box (x0, y0, x1, y1) = {tuple(b.reshape(-1).tolist())} needs x1 >= x0 and y1 >= y0")
            b = check_boxes(b, "box corner", (state.video_height, state.video_width), normalize_coords,
                           area="frame", pixels="video pixels")
            pts = torch.cat([b, pts], dim=0)
            lab = torch.cat([torch.tensor([2, 3], dtype=torch.int32), lab], dim=0)
        if normalize_coords:
            pts = pts / torch.tensor([state.video_width, state.video_height], dtype=torch.float32)
        pts = pts * self.image_size
        return pts[None].to(state.device), lab[None].to(state.device)

    # ------------------------------------------------------------------ prompts
    @torch.inference_mode()
    def add_new_points_or_box(
        self,
        inference_state: InferenceState,
        frame_idx: int,
        obj_id: int,
        points: Any = None,
        labels: Any = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: Any = None,
    ) -> tuple[int, list[int], torch.Tensor]:
        """Add clicks and/or a box for one object on one frame.

        Args:
            points: ``(N, 2)`` as (x, y) in video pixels (in [0, 1] if ``normalize_coords=False``).
            labels: ``(N,)``: 1 positive, 0 negative.
            clear_old_points: replace this frame's earlier clicks for the object (else append).
            box: ``(x0, y0, x1, y1)`` in the same coordinates; it becomes the first two points.

        Returns:
            ``(frame_idx, obj_ids, video_res_masks)``: mask logits ``(num_objects, 1, H, W)`` at video
            resolution for every object on this frame (objects without output there get -1024).
        """
        state = inference_state
        frame_idx = self._check_frame_idx(state, frame_idx)
        obj_id = self._check_obj_id(obj_id)
        new_points, new_labels = self._prepare_point_prompt(state, points, labels, box, normalize_coords,
                                                            clear_old_points)
        obj_idx = self._obj_id_to_idx(state, obj_id)
        self._restore_around_prompt(state, frame_idx)
        point_inputs_per_frame = state.point_inputs_per_obj[obj_idx]
        old = None if clear_old_points else point_inputs_per_frame.get(frame_idx)
        if old is None:
            point_inputs = {"point_coords": new_points, "point_labels": new_labels}
        else:
            point_inputs = {"point_coords": torch.cat([old["point_coords"], new_points], dim=1),
                            "point_labels": torch.cat([old["point_labels"], new_labels], dim=1)}
        point_inputs_per_frame[frame_idx] = point_inputs
        state.mask_inputs_per_obj[obj_idx].pop(frame_idx, None)

        is_init_cond_frame, reverse, is_cond, storage_key = self._frame_role(state, obj_idx, frame_idx)
        obj_output_dict = state.output_dict_per_obj[obj_idx]
        obj_temp_output_dict = state.temp_output_dict_per_obj[obj_idx]
        # the latest logits of this object on this frame are fed back as a mask prompt
        prev_out = obj_temp_output_dict[storage_key].get(frame_idx)
        if prev_out is None:
            prev_out = obj_output_dict[COND].get(frame_idx)
            if prev_out is None:
                prev_out = obj_output_dict[NON_COND].get(frame_idx)
        prev_sam_mask_logits = None
        if prev_out is not None and prev_out["pred_masks"] is not None:
            prev_sam_mask_logits = torch.clamp(prev_out["pred_masks"].to(state.device), -32.0, 32.0)
        current_out, _ = self._run_single_frame_inference(
            state, obj_output_dict, frame_idx, batch_size=1, is_init_cond_frame=is_init_cond_frame,
            point_inputs=point_inputs, mask_inputs=None, reverse=reverse,
            run_mem_encoder=False,  # encoded in propagate_in_video_preflight, once the prompts are final
            prev_sam_mask_logits=prev_sam_mask_logits,
        )
        obj_temp_output_dict[storage_key][frame_idx] = current_out
        return self._frame_result(state, frame_idx, is_cond)

    def add_new_points(self, *args, **kwargs):
        """Deprecated alias of `add_new_points_or_box` (kept for official API compatibility)."""
        return self.add_new_points_or_box(*args, **kwargs)

    @torch.inference_mode()
    def add_new_mask(
        self,
        inference_state: InferenceState,
        frame_idx: int,
        obj_id: int,
        mask: Any,
    ) -> tuple[int, list[int], torch.Tensor]:
        """Give one object's mask on one frame.

        Args:
            mask: ``(H, W)`` bool (or 0/1) mask at video resolution, or at another size with the
                video's aspect ratio (within 1%); it is resized to the model's input size either way.

        Returns:
            ``(frame_idx, obj_ids, video_res_masks)`` as `add_new_points_or_box`.
        """
        state = inference_state
        frame_idx = self._check_frame_idx(state, frame_idx)
        obj_id = self._check_obj_id(obj_id)
        m = mask.detach().to("cpu") if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
        if m.dim() != 2:
            raise InputError(f"mask must be 2-D (H, W) = ({state.video_height}, {state.video_width}), "
                             f"got shape {tuple(m.shape)}")
        check_mask_size(tuple(m.shape), (state.video_height, state.video_width))  # or the same aspect ratio
        mask_inputs = (m > 0.5 if m.is_floating_point() else m.bool()).float()[None, None].to(state.device)
        size = self.image_size
        if mask_inputs.shape[-2:] != (size, size):
            mask_inputs = F.interpolate(mask_inputs, size=(size, size), mode="bilinear", align_corners=False,
                                        antialias=True)
            mask_inputs = (mask_inputs >= 0.5).float()

        obj_idx = self._obj_id_to_idx(state, obj_id)
        self._restore_around_prompt(state, frame_idx)
        state.mask_inputs_per_obj[obj_idx][frame_idx] = mask_inputs
        state.point_inputs_per_obj[obj_idx].pop(frame_idx, None)
        is_init_cond_frame, reverse, is_cond, storage_key = self._frame_role(state, obj_idx, frame_idx)
        current_out, _ = self._run_single_frame_inference(
            state, state.output_dict_per_obj[obj_idx], frame_idx, batch_size=1,
            is_init_cond_frame=is_init_cond_frame, point_inputs=None, mask_inputs=mask_inputs, reverse=reverse,
            run_mem_encoder=False,
        )
        state.temp_output_dict_per_obj[obj_idx][storage_key][frame_idx] = current_out
        return self._frame_result(state, frame_idx, is_cond)

    def _restore_around_prompt(self, state: InferenceState, frame_idx: int) -> None:
        """A prompt on a tracked frame reads the memories around it (and every object's output on
        it): bring spilled ones back first."""
        if state.spilled:
            for obj_idx in range(self._get_obj_num(state)):
                self._restore_spilled(state, obj_idx, frame_idx)

    def _frame_role(self, state: InferenceState, obj_idx: int, frame_idx: int):
        """(is_init_cond_frame, reverse, is_cond, storage_key) for a prompt on a frame.

        A frame the object was never tracked on is an initial conditioning frame (segmented
        without memory, like SAM); a tracked frame gets a correction (with memory), kept as a
        conditioning frame only with ``add_all_frames_to_correct_as_cond``.
        """
        tracked = state.frames_tracked_per_obj[obj_idx]
        is_init_cond_frame = frame_idx not in tracked
        reverse = False if is_init_cond_frame else tracked[frame_idx]["reverse"]
        is_cond = is_init_cond_frame or self.add_all_frames_to_correct_as_cond
        return is_init_cond_frame, reverse, is_cond, COND if is_cond else NON_COND

    def _frame_result(self, state: InferenceState, frame_idx: int, is_cond: bool):
        consolidated = self._consolidate_temp_output_across_obj(state, frame_idx, is_cond=is_cond,
                                                                consolidate_at_video_res=True)
        _, video_res_masks = self._get_orig_video_res_output(state, consolidated["pred_masks_video_res"])
        return frame_idx, list(state.obj_ids), video_res_masks

    # ------------------------------------------------------------------ outputs
    def _get_orig_video_res_output(self, state: InferenceState, any_res_masks: torch.Tensor):
        """Resize mask logits (N, 1, h, w) to the video size (bilinear) and apply the optional
        non-overlap constraint. Returns (any_res_masks on the device, video_res_masks (N, 1, H, W))."""
        any_res_masks = any_res_masks.to(state.device, non_blocking=True)
        if any_res_masks.shape[-2:] == (state.video_height, state.video_width):
            video_res_masks = any_res_masks
        else:
            video_res_masks = F.interpolate(any_res_masks, size=(state.video_height, state.video_width),
                                            mode="bilinear", align_corners=False)
        if self.non_overlap_masks:
            video_res_masks = self.model.apply_non_overlapping_constraints(video_res_masks)
        return any_res_masks, video_res_masks

    def _consolidate_temp_output_across_obj(self, state: InferenceState, frame_idx: int, is_cond: bool,
                                            consolidate_at_video_res: bool = False) -> dict:
        """Gather every object's latest logits on a frame into one (num_objects, 1, h, w) tensor
        (pending outputs first, then the bank; objects without output get NO_OBJ_SCORE)."""
        batch_size = self._get_obj_num(state)
        storage_key = COND if is_cond else NON_COND
        if consolidate_at_video_res:
            h, w, key = state.video_height, state.video_width, "pred_masks_video_res"
        else:
            h = w = self.image_size // 4
            key = "pred_masks"
        consolidated = torch.full((batch_size, 1, h, w), NO_OBJ_SCORE, dtype=torch.float32,
                                  device=state.storage_device)
        for obj_idx in range(batch_size):
            out = state.temp_output_dict_per_obj[obj_idx][storage_key].get(frame_idx)
            if out is None:
                out = state.output_dict_per_obj[obj_idx][COND].get(frame_idx)
            if out is None:
                out = state.output_dict_per_obj[obj_idx][NON_COND].get(frame_idx)
            if out is None:
                continue
            obj_mask = out["pred_masks"].to(consolidated.device)
            if obj_mask.shape[-2:] != (h, w):
                obj_mask = F.interpolate(obj_mask, size=(h, w), mode="bilinear", align_corners=False)
            consolidated[obj_idx:obj_idx + 1] = obj_mask
        return {key: consolidated}

    # ------------------------------------------------------------------ propagation
    @torch.inference_mode()
    def propagate_in_video_preflight(self, inference_state: InferenceState) -> None:
        """Encode the prompted frames into memory and merge them into each object's bank."""
        state = inference_state
        batch_size = self._get_obj_num(state)
        if batch_size == 0:
            raise InputError("no prompts yet: add points, a box or a mask (add_new_points_or_box / add_new_mask) "
                             "before propagating")
        for obj_idx in range(batch_size):
            obj_output_dict = state.output_dict_per_obj[obj_idx]
            obj_temp_output_dict = state.temp_output_dict_per_obj[obj_idx]
            for storage_key in (NON_COND, COND):
                for frame_idx, out in obj_temp_output_dict[storage_key].items():
                    if out["maskmem_features"] is None:
                        high_res_masks = F.interpolate(out["pred_masks"].to(state.device),
                                                       size=(self.image_size, self.image_size),
                                                       mode="bilinear", align_corners=False)
                        out["maskmem_features"], out["maskmem_pos_enc"] = self._run_memory_encoder(
                            state, frame_idx, batch_size=1, high_res_masks=high_res_masks,
                            object_score_logits=out["object_score_logits"], is_mask_from_pts=True)
                    obj_output_dict[storage_key][frame_idx] = out
                    if self.clear_non_cond_mem_around_input:
                        self._clear_obj_non_cond_mem_around_input(state, frame_idx, obj_idx)
                obj_temp_output_dict[storage_key].clear()
            if len(obj_output_dict[COND]) == 0:
                obj_id = self._obj_idx_to_id(state, obj_idx)
                raise InputError(f"object id {obj_id} has no prompt on any frame; add points, a box or a mask "
                                 "for it (or remove_object it) before propagating")
            for frame_idx in obj_output_dict[COND]:
                obj_output_dict[NON_COND].pop(frame_idx, None)

    @torch.inference_mode()
    def propagate_in_video(
        self,
        inference_state: InferenceState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
        progress: bool | None = None,
    ) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        """Track every object through the video.

        Args:
            start_frame_idx: first frame (default: the earliest prompted frame).
            max_frame_num_to_track: at most this many frames after (before, in reverse) the start
                (default: the whole video).
            reverse: track towards frame 0.
            progress: show a progress bar (default: the predictor's ``progress``).

        Yields:
            ``(frame_idx, obj_ids, video_res_masks)`` with mask logits ``(num_objects, 1, H, W)``
            (threshold at 0).
        """
        state = inference_state
        if start_frame_idx is not None:
            start_frame_idx = self._check_frame_idx(state, start_frame_idx, "start_frame_idx")
        if max_frame_num_to_track is not None and (not is_int(max_frame_num_to_track) or max_frame_num_to_track < 0):
            raise InputError(f"max_frame_num_to_track must be an integer >= 0, got {max_frame_num_to_track!r}")
        self.propagate_in_video_preflight(state)

        obj_ids = list(state.obj_ids)
        num_frames = state.num_frames
        batch_size = self._get_obj_num(state)
        if start_frame_idx is None:
            start_frame_idx = min(t for d in state.output_dict_per_obj.values() for t in d[COND])
        if max_frame_num_to_track is None:
            max_frame_num_to_track = num_frames
        if reverse:
            end_frame_idx = max(start_frame_idx - max_frame_num_to_track, 0)
            order = range(start_frame_idx, end_frame_idx - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end_frame_idx = min(start_frame_idx + max_frame_num_to_track, num_frames - 1)
            order = range(start_frame_idx, end_frame_idx + 1)

        show = self.progress if progress is None else progress
        policy = self.memory_policy
        state.revised_outputs = {}
        if policy is not None:
            policy.begin_pass(self, state, reverse)
        bounded = self._bounding_active()
        if bounded or self.spill_dir is not None:
            # a pass reads the outputs behind its start frame (and next to every prompted frame)
            for obj_idx in range(batch_size):
                self._restore_spilled(state, obj_idx, start_frame_idx)
                for t in list(state.output_dict_per_obj[obj_idx][COND]):
                    self._restore_spilled(state, obj_idx, t)
        for frame_idx in tqdm(order, desc="propagate in video", disable=not show):
            pred_masks_per_obj: list[torch.Tensor | None] = [None] * batch_size
            to_track = []
            for obj_idx in range(batch_size):
                obj_output_dict = state.output_dict_per_obj[obj_idx]
                if frame_idx in obj_output_dict[COND]:
                    # a prompted frame: its output is already in the bank
                    pred_masks = obj_output_dict[COND][frame_idx]["pred_masks"].to(state.device, non_blocking=True)
                    pred_masks_per_obj[obj_idx] = pred_masks
                    if self.clear_non_cond_mem_around_input:
                        self._clear_obj_non_cond_mem_around_input(state, frame_idx, obj_idx)
                else:
                    to_track.append(obj_idx)
            for group in self._object_groups(state, to_track, frame_idx):
                if len(group) == 1:
                    steps = [self.track_object_step(state, group[0], frame_idx, reverse)]
                else:
                    steps = self.track_objects_step(state, group, frame_idx, reverse)
                for obj_idx, (current_out, pred_masks) in zip(group, steps):
                    state.output_dict_per_obj[obj_idx][NON_COND][frame_idx] = current_out
                    pred_masks_per_obj[obj_idx] = pred_masks
            for obj_idx in range(batch_size):
                state.frames_tracked_per_obj[obj_idx][frame_idx] = TRACKED[bool(reverse)]
                if bounded:
                    self.release_unreachable_outputs(state, obj_idx, frame_idx, reverse)
            all_pred_masks = torch.cat(pred_masks_per_obj, dim=0) if batch_size > 1 else pred_masks_per_obj[0]
            _, video_res_masks = self._get_orig_video_res_output(state, all_pred_masks)
            yield frame_idx, obj_ids, video_res_masks
        if policy is not None:
            self._apply_policy_revisions(state, policy.end_pass(self, state) or {})

    def _apply_policy_revisions(self, state: InferenceState, revised: dict) -> None:
        """Store an offline policy's final outputs ``{obj_idx: {frame_idx: compact_out}}`` and keep the
        video-resolution masks of the frames that changed for `revised_outputs`."""
        frames = set()
        for obj_idx, outs in revised.items():
            bank = state.output_dict_per_obj[obj_idx][NON_COND]
            for t, out in outs.items():
                if bank.get(t) is not out:
                    bank[t] = out
                    frames.add(t)
        for t in sorted(frames):
            consolidated = self._consolidate_temp_output_across_obj(state, t, is_cond=False)
            state.revised_outputs[t] = self._get_orig_video_res_output(state, consolidated["pred_masks"])[1]

    def revised_outputs(self, inference_state: InferenceState) -> dict[int, torch.Tensor]:
        """Frames whose final masks differ from what the last ``propagate_in_video`` yielded (offline
        memory policies such as SAM2Long revise earlier frames at the end of a pass):
        ``{frame_idx: video-res mask logits (num_objects, 1, H, W)}``; empty for SAM 2 itself."""
        return dict(inference_state.revised_outputs)

    # ------------------------------------------------------------------ editing
    @torch.inference_mode()
    def clear_all_prompts_in_frame(self, inference_state: InferenceState, frame_idx: int, obj_id: int,
                                   need_output: bool = True):
        """Remove one object's prompts on a frame; its output there (if any) becomes a tracked frame.

        Returns ``(frame_idx, obj_ids, video_res_masks)`` when ``need_output``, else None.
        """
        state = inference_state
        frame_idx = self._check_frame_idx(state, frame_idx)
        obj_idx = self._known_obj_idx(state, obj_id)
        state.point_inputs_per_obj[obj_idx].pop(frame_idx, None)
        state.mask_inputs_per_obj[obj_idx].pop(frame_idx, None)
        temp = state.temp_output_dict_per_obj
        temp[obj_idx][COND].pop(frame_idx, None)
        temp[obj_idx][NON_COND].pop(frame_idx, None)
        obj_output_dict = state.output_dict_per_obj[obj_idx]
        out = obj_output_dict[COND].pop(frame_idx, None)
        if out is not None:
            obj_output_dict[NON_COND][frame_idx] = out
            state.frames_tracked_per_obj[obj_idx].pop(frame_idx, None)
        if not need_output:
            return None
        is_cond = any(frame_idx in d[COND] for d in temp.values())
        return self._frame_result(state, frame_idx, is_cond)

    @torch.inference_mode()
    def reset_session(self, inference_state: InferenceState) -> None:
        """`reset_state` and also drop every cached feature (and, in subclasses, per-session
        streams such as 3AM's MUSt3R memory): the session is as freshly opened on the same video."""
        self.reset_state(inference_state)
        inference_state.cached_features = {}
        inference_state.revised_outputs = {}

    @torch.inference_mode()
    def reset_state(self, inference_state: InferenceState) -> None:
        """Forget every prompt, output and object id (the video and its cached features stay)."""
        state = inference_state
        self._reset_tracking_results(state)
        self._drop_spilled(state)
        state.obj_id_to_idx.clear()
        state.obj_idx_to_id.clear()
        state.obj_ids.clear()
        state.point_inputs_per_obj.clear()
        state.mask_inputs_per_obj.clear()
        state.output_dict_per_obj.clear()
        state.temp_output_dict_per_obj.clear()
        state.frames_tracked_per_obj.clear()

    def _reset_tracking_results(self, state: InferenceState) -> None:
        for container in (state.point_inputs_per_obj, state.mask_inputs_per_obj, state.frames_tracked_per_obj):
            for v in container.values():
                v.clear()
        for container in (state.output_dict_per_obj, state.temp_output_dict_per_obj):
            for v in container.values():
                v[COND].clear()
                v[NON_COND].clear()

    @torch.inference_mode()
    def remove_object(self, inference_state: InferenceState, obj_id: int, strict: bool = False,
                      need_output: bool = True):
        """Remove an object from the session.

        An unknown id is ignored (the official default); with ``strict=True`` it raises `InputError`.

        Returns:
            ``(obj_ids, updated_frames)``: the remaining ids and, with ``need_output``, a list of
            ``(frame_idx, video_res_masks)`` for the frames where the removed object had prompts.
        """
        state = inference_state
        obj_id = self._check_obj_id(obj_id)
        old_idx = state.obj_id_to_idx.get(obj_id)
        updated_frames: list[tuple[int, torch.Tensor]] = []
        if old_idx is None:
            if not strict:
                return list(state.obj_ids), updated_frames
            raise InputError(f"cannot remove object id {obj_id}: no such object (known ids: {list(state.obj_ids)})")
        if len(state.obj_id_to_idx) == 1:
            self.reset_state(state)
            return list(state.obj_ids), updated_frames

        self._drop_spilled(state, obj_id)
        input_frames = set(state.point_inputs_per_obj[old_idx]) | set(state.mask_inputs_per_obj[old_idx])
        for frame_idx in input_frames:
            self.clear_all_prompts_in_frame(state, frame_idx, obj_id, need_output=False)

        old_ids = list(state.obj_ids)
        remain = [i for i in range(len(old_ids)) if i != old_idx]
        old_to_new = {old: new for new, old in enumerate(remain)}
        new_ids = [old_ids[i] for i in remain]
        state.obj_id_to_idx = OrderedDict((oid, i) for i, oid in enumerate(new_ids))
        state.obj_idx_to_id = OrderedDict((i, oid) for i, oid in enumerate(new_ids))
        state.obj_ids = new_ids
        for container in (state.point_inputs_per_obj, state.mask_inputs_per_obj, state.output_dict_per_obj,
                          state.temp_output_dict_per_obj, state.frames_tracked_per_obj):
            items = {old_to_new[k]: v for k, v in container.items() if k in old_to_new}
            container.clear()
            container.update(items)

        if need_output:
            temp = state.temp_output_dict_per_obj
            for frame_idx in sorted(input_frames):
                is_cond = any(frame_idx in d[COND] for d in temp.values())
                _, _, masks = self._frame_result(state, frame_idx, is_cond)
                updated_frames.append((frame_idx, masks))
        return list(state.obj_ids), updated_frames

    def _clear_non_cond_mem_around_input(self, state: InferenceState, frame_idx: int) -> None:
        """Drop every object's tracked memories within ``stride * num_maskmem`` frames of `frame_idx`."""
        for obj_idx in range(self._get_obj_num(state)):
            self._clear_obj_non_cond_mem_around_input(state, frame_idx, obj_idx)

    def _clear_obj_non_cond_mem_around_input(self, state: InferenceState, frame_idx: int, obj_idx: int) -> None:
        """Drop one object's tracked memories within ``stride * num_maskmem`` frames of `frame_idx`
        (they may describe the object as it was before a correction)."""
        r = self.model.memory_temporal_stride_for_eval * self.model.num_maskmem
        non_cond = state.output_dict_per_obj[obj_idx][NON_COND]
        spilled = state.spilled.get(state.obj_idx_to_id.get(obj_idx), {})
        for t in range(frame_idx - r, frame_idx + r + 1):
            non_cond.pop(t, None)
            path = spilled.pop(t, None)
            if path is not None:
                Path(path).unlink(missing_ok=True)

    # ------------------------------------------------------------------ GPU fast path
    def autocast_enabled(self) -> bool:
        """Whether the model runs under bfloat16 autocast (``autocast`` option; default: on CUDA)."""
        return self.device.type == "cuda" if self.autocast is None else self.autocast

    def autocast_context(self):
        """bfloat16 autocast on the model's device when `autocast_enabled`, else a no-op. Each model
        call of the predictor runs inside it (never across a ``yield``)."""
        if not self.autocast_enabled():
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def compiled_parts(self) -> dict[str, tuple[torch.nn.Module, bool]]:
        """The parts `compile_model` compiles: ``{name: (module, dynamic)}``. As the official
        ``vos_optimized`` mode: fixed shapes for the image encoder, prompt encoder, mask decoder and
        memory encoder; dynamic shapes for memory attention (its memory grows in the first frames)."""
        m = self.model
        return {"image_encoder": (m.image_encoder, False), "memory_attention": (m.memory_attention, True),
                "sam_prompt_encoder": (m.sam_prompt_encoder, False), "sam_mask_decoder": (m.sam_mask_decoder, False),
                "memory_encoder": (m.memory_encoder, False)}

    def compile_model(self, mode: str | None = None, backend: str | None = None, fullgraph: bool = False) -> None:
        """torch.compile the parts of `compiled_parts` in place (their ``forward``).

        ``mode`` defaults to ``"max-autotune"`` on CUDA (as the official) and the default mode
        elsewhere; ``backend`` to inductor. The first frames of a session pay the compilation
        (one compile per shape: each number of batched objects is a new shape); run a short warm-up
        session before timing. Raises `InputError` when this torch has no ``torch.compile``.
        """
        if self.compiled:
            return
        if not hasattr(torch, "compile"):
            raise InputError(f"compile=True needs torch.compile (torch >= 2.0), this is torch {torch.__version__}")
        if mode is None and self.device.type == "cuda":
            mode = "max-autotune"
        kwargs = {"fullgraph": fullgraph}
        if mode is not None:
            kwargs["mode"] = mode
        if backend is not None:
            kwargs["backend"] = backend
        for name, (module, dynamic) in self.compiled_parts().items():
            if getattr(module.forward, "_three_am_compiled", False):
                continue
            fn = torch.compile(module.forward, dynamic=dynamic, **kwargs)
            fn._three_am_compiled = True  # type: ignore[attr-defined]
            module.forward = fn
        self.compiled = True

    # ------------------------------------------------------------------ features (the hook)
    def compute_backbone_features(self, inference_state: InferenceState, frame_idx: int,
                                  image: torch.Tensor) -> dict:
        """Backbone output for one frame: THE hook for feature-level extensions.

        Args:
            inference_state: the session (gives subclasses access to the whole video).
            frame_idx: the frame's index.
            image: normalised frame ``(1, 3, S, S)`` on the model's device.

        Returns:
            ``{"backbone_fpn": [...], "vision_pos_enc": [...], ...}`` as `SAM2Base.forward_image`:
            lists highest resolution first; with high-res features three levels
            ``(1, C/8, S/4, S/4)``, ``(1, C/4, S/8, S/8)``, ``(1, C, S/16, S/16)``, the last one being
            the stride-16 feature used by memory attention, the SAM heads and the memory encoder.

        The result is cached per frame (the most recent frame), so this runs once per frame visit.
        A subclass may replace ``backbone_fpn[-1]`` (same shape) to fuse other features in, e.g. the
        3AM Feature Merger; the positional encodings should stay as they are.
        """
        return self.model.forward_image(image)

    def frame_features(self, inference_state: InferenceState, frame_idx: int, batch_size: int = 1) -> FrameFeatures:
        """One frame's backbone features for `batch_size` objects, flattened (`FrameFeatures`).

        The backbone output (:meth:`compute_backbone_features`) of the most recently used frame is
        cached in the session, so each frame visit runs the backbone once whatever the objects.
        """
        state = inference_state
        _, backbone_out = state.cached_features.get(frame_idx, (None, None))
        if backbone_out is None:
            image = state.images[frame_idx].to(state.device, non_blocking=True).float().unsqueeze(0)
            with self.autocast_context():
                backbone_out = self.compute_backbone_features(state, frame_idx, image)
            state.cached_features = {frame_idx: (image, backbone_out)}
        return self.model.prepare_frame_features(backbone_out, batch_size=batch_size)

    # ------------------------------------------------------------------ one frame
    def _run_single_frame_inference(self, inference_state: InferenceState, output_dict: dict, frame_idx: int,
                                    batch_size: int, is_init_cond_frame: bool, point_inputs: dict | None,
                                    mask_inputs: torch.Tensor | None, reverse: bool, run_mem_encoder: bool,
                                    prev_sam_mask_logits: torch.Tensor | None = None):
        """Segment one frame for one object (batch 1) against its memory bank.

        Returns ``(compact_out, pred_masks)`` as :meth:`pack_output`.
        """
        features = self.frame_features(inference_state, frame_idx, batch_size)
        with self.autocast_context():
            out = self.model.track_frame(
                features, frame_idx, output_dict, inference_state.num_frames, is_init_cond_frame=is_init_cond_frame,
                point_inputs=point_inputs, mask_inputs=mask_inputs, reverse=reverse, run_mem_encoder=run_mem_encoder,
                prev_sam_mask_logits=prev_sam_mask_logits)
        return self.pack_output(inference_state, out)

    def pack_output(self, inference_state: InferenceState, out: TrackStepOutput) -> tuple[dict, torch.Tensor]:
        """What the session stores of a step: ``(compact_out, pred_masks)``.

        ``compact_out`` has the official keys (memory as bfloat16 on the storage device, one shared
        positional encoding, low-res logits hole-filled if enabled); ``pred_masks`` are the
        ``(B, 1, S/4, S/4)`` logits on the compute device.
        """
        state = inference_state
        maskmem_features = out.maskmem_features
        if maskmem_features is not None:
            maskmem_features = maskmem_features.to(torch.bfloat16).to(state.storage_device, non_blocking=True)
        pred_masks_gpu = out.pred_masks
        if self.fill_hole_area > 0:
            pred_masks_gpu = fill_holes_in_mask_scores(pred_masks_gpu, self.fill_hole_area)
        compact = {
            "maskmem_features": maskmem_features,
            "maskmem_pos_enc": self._get_maskmem_pos_enc(state, {"maskmem_pos_enc": out.maskmem_pos_enc}),
            "pred_masks": pred_masks_gpu.to(state.storage_device, non_blocking=True),
            "obj_ptr": out.obj_ptr,
            "object_score_logits": out.object_score_logits,
        }
        return compact, pred_masks_gpu

    def track_object_step(self, inference_state: InferenceState, obj_idx: int, frame_idx: int,
                          reverse: bool) -> tuple[dict, torch.Tensor]:
        """THE per-frame step strategy: track one object on a frame without prompt.

        Without a memory policy this is SAM 2's step against the object's whole memory bank; with
        one (`with_memory_policy`), ``policy.step(predictor, state, obj_idx, bank, frame_idx,
        reverse)`` decides which memories are attended to and which candidate is kept.

        Returns ``(compact_out, pred_masks)`` as :meth:`pack_output`.
        """
        bank = inference_state.output_dict_per_obj[obj_idx]
        if self.memory_policy is not None:
            with self.autocast_context():
                return self.memory_policy.step(self, inference_state, obj_idx, bank, frame_idx, reverse)
        return self._run_single_frame_inference(
            inference_state, bank, frame_idx, batch_size=1, is_init_cond_frame=False, point_inputs=None,
            mask_inputs=None, reverse=reverse, run_mem_encoder=True)

    # ------------------------------------------------------------------ batched objects
    def memory_window(self) -> int:
        """W: a tracking step on frame t reads tracked outputs of frames within ``[t - W, t + W]``
        only (``max(num_maskmem * memory_temporal_stride_for_eval + 1, max_obj_ptrs_in_encoder) + 1``:
        the spatial memories and the object pointers, plus one frame of margin)."""
        m = self.model
        return max(m.num_maskmem * m.memory_temporal_stride_for_eval + 1, m.max_obj_ptrs_in_encoder) + 1

    def memory_signature(self, inference_state: InferenceState, obj_idx: int, frame_idx: int) -> tuple:
        """What SAM 2's memory selection for one object on `frame_idx` depends on: the sorted
        conditioning frames and the sorted tracked frames within the `memory_window`. Objects with
        equal signatures read the same frames, so they can share one batched step."""
        bank = inference_state.output_dict_per_obj[obj_idx]
        w = self.memory_window()
        non_cond = bank[NON_COND]
        near = tuple(t for t in range(frame_idx - w, frame_idx + w + 1) if t in non_cond)
        return tuple(sorted(bank[COND])), near

    def _object_groups(self, state: InferenceState, obj_idxs: list[int], frame_idx: int) -> list[list[int]]:
        """Split the objects to track on a frame into batches (singletons when batching is off, with
        a memory policy, or when the model couples objects in its memory encoder)."""
        if (not self.batch_objects or self.memory_policy is not None or len(obj_idxs) < 2
                or getattr(self.model, "non_overlap_masks_for_mem_enc", False)):
            return [[i] for i in obj_idxs]
        groups: dict[tuple, list[int]] = {}
        for obj_idx in obj_idxs:
            groups.setdefault(self.memory_signature(state, obj_idx, frame_idx), []).append(obj_idx)
        return list(groups.values())

    def batched_memory(self, inference_state: InferenceState, obj_idxs: Sequence[int], frame_idx: int,
                       reverse: bool) -> dict:
        """One memory-bank view for B objects of equal `memory_signature` on `frame_idx`: per frame,
        the objects' entries concatenated along the batch (``maskmem_features`` (B, C_mem, h, w),
        ``maskmem_pos_enc`` [(B, C_mem, h, w)], ``obj_ptr`` (B, C), ``object_score_logits`` (B, 1)).
        Spatial memories are gathered only for the frames SAM 2 can read them from (conditioning
        frames and `memory_frame_indices`); the other tracked frames give their object pointers."""
        state = inference_state
        banks = [state.output_dict_per_obj[i] for i in obj_idxs]
        cond_keys, near = self.memory_signature(state, obj_idxs[0], frame_idx)
        m = self.model
        stride = m.memory_temporal_stride_for_eval
        spatial = set(cond_keys) | {t for _, t in memory_frame_indices(frame_idx, m.num_maskmem, stride, reverse)}

        def merge(outs: list[dict], with_memory: bool) -> dict:
            entry = {"obj_ptr": torch.cat([o["obj_ptr"] for o in outs], dim=0),
                     "object_score_logits": torch.cat([o["object_score_logits"] for o in outs], dim=0),
                     "maskmem_features": None, "maskmem_pos_enc": None}
            if with_memory:
                entry["maskmem_features"] = torch.cat([o["maskmem_features"] for o in outs], dim=0)
                entry["maskmem_pos_enc"] = [torch.cat([o["maskmem_pos_enc"][-1] for o in outs], dim=0)]
            return entry

        return {COND: {t: merge([b[COND][t] for b in banks], True) for t in cond_keys},
                NON_COND: {t: merge([b[NON_COND][t] for b in banks], t in spatial) for t in near}}

    def track_objects_step(self, inference_state: InferenceState, obj_idxs: Sequence[int], frame_idx: int,
                           reverse: bool) -> list[tuple[dict, torch.Tensor]]:
        """`track_object_step` for B objects of equal `memory_signature` as one batch: one memory
        attention, mask decoder and memory encoder call; each object keeps its own memory bank.

        Returns one ``(compact_out, pred_masks)`` per object, as :meth:`pack_output`.
        """
        state = inference_state
        b = len(obj_idxs)
        features = self.frame_features(state, frame_idx, batch_size=b)
        memory = self.batched_memory(state, obj_idxs, frame_idx, reverse)
        with self.autocast_context():
            out = self.model.track_frame(features, frame_idx, memory, state.num_frames, is_init_cond_frame=False,
                                         point_inputs=None, mask_inputs=None, reverse=reverse, run_mem_encoder=True)
        return [self.pack_output(state, split_step_output(out, i)) for i in range(b)]

    # ------------------------------------------------------------------ bounded per-frame state
    def _bounding_active(self) -> bool:
        # a memory policy may read any output of the bank (it decides the memory itself)
        return not self.keep_all_outputs and self.memory_policy is None

    def release_unreachable_outputs(self, inference_state: InferenceState, obj_idx: int, frame_idx: int,
                                    reverse: bool) -> list[int]:
        """After frame `frame_idx` was stored: drop the object's tracked outputs that no later step
        of this pass can read (more than `memory_window` frames behind the direction of travel),
        except those within W of one of its conditioning frames (a pass in the other direction
        from that frame reads them, as in the official predictor). Dropped outputs are written to
        the spill folder when one is configured. Returns the dropped frames."""
        state = inference_state
        bank = state.output_dict_per_obj[obj_idx]
        non_cond = bank[NON_COND]
        w = self.memory_window()
        cond = bank[COND]
        if reverse:
            behind = [t for t in non_cond if t > frame_idx + w]
        else:
            behind = [t for t in non_cond if t < frame_idx - w]
        dropped = []
        for t in behind:
            if any(abs(t - c) <= w for c in cond):
                continue
            out = non_cond.pop(t)
            if self.spill_dir is not None:
                self._spill(state, obj_idx, t, out)
            dropped.append(t)
        return dropped

    def _spill_folder(self, state: InferenceState) -> Path:
        if state.spill_folder is None:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix="session-", dir=self.spill_dir))
            state.spill_folder = folder
            # the folder goes with the session
            weakref.finalize(state, shutil.rmtree, str(folder), True)
        return state.spill_folder

    def _spill(self, state: InferenceState, obj_idx: int, frame_idx: int, out: dict) -> None:
        obj_id = state.obj_idx_to_id[obj_idx]
        path = self._spill_folder(state) / f"obj{obj_id}_f{frame_idx}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save({k: out[k].detach().to("cpu") for k in _SPILL_KEYS if out.get(k) is not None}, tmp)
        os.replace(tmp, path)
        state.spilled.setdefault(obj_id, {})[frame_idx] = path

    def _restore_spilled(self, state: InferenceState, obj_idx: int, center: int) -> int:
        """Read the object's spilled outputs within `memory_window` of `center` back into its bank;
        returns how many were restored."""
        obj_id = state.obj_idx_to_id.get(obj_idx)
        files = state.spilled.get(obj_id)
        if not files:
            return 0
        w = self.memory_window()
        non_cond = state.output_dict_per_obj[obj_idx][NON_COND]
        restored = 0
        for t in range(center - w, center + w + 1):
            path = files.pop(t, None)
            if path is None:
                continue
            if t not in non_cond and t not in state.output_dict_per_obj[obj_idx][COND]:
                data = torch.load(path, map_location="cpu", weights_only=True)
                entry = {"maskmem_features": data["maskmem_features"].to(state.storage_device),
                         "pred_masks": data["pred_masks"].to(state.storage_device),
                         "obj_ptr": data["obj_ptr"].to(state.device),
                         "object_score_logits": data["object_score_logits"].to(state.device)}
                shared = state.maskmem_pos_enc
                entry["maskmem_pos_enc"] = None if shared is None else [x.expand(1, -1, -1, -1) for x in shared]
                non_cond[t] = entry
                restored += 1
            Path(path).unlink(missing_ok=True)
        return restored

    def _drop_spilled(self, state: InferenceState, obj_id: int | None = None) -> None:
        """Forget spilled outputs (of one object, or all)."""
        ids = list(state.spilled) if obj_id is None else [obj_id]
        for i in ids:
            for path in state.spilled.pop(i, {}).values():
                Path(path).unlink(missing_ok=True)

    def _run_memory_encoder(self, inference_state: InferenceState, frame_idx: int, batch_size: int,
                            high_res_masks: torch.Tensor, object_score_logits: torch.Tensor,
                            is_mask_from_pts: bool):
        """Encode (B, 1, S, S) mask logits on a frame into memory: (bfloat16 features, [pos_enc])."""
        state = inference_state
        features = self.frame_features(state, frame_idx, batch_size)
        with self.autocast_context():
            maskmem_features, maskmem_pos_enc = self.model.encode_new_memory(
                current_vision_feats=features.vision_feats, feat_sizes=features.feat_sizes,
                pred_masks_high_res=high_res_masks, object_score_logits=object_score_logits,
                is_mask_from_pts=is_mask_from_pts)
        maskmem_features = maskmem_features.to(torch.bfloat16).to(state.storage_device, non_blocking=True)
        maskmem_pos_enc = self._get_maskmem_pos_enc(state, {"maskmem_pos_enc": maskmem_pos_enc})
        return maskmem_features, maskmem_pos_enc

    def _get_maskmem_pos_enc(self, state: InferenceState, current_out: dict):
        """The memory positional encoding is the same for every frame and object: keep one copy."""
        out_enc = current_out["maskmem_pos_enc"]
        if out_enc is None:
            return None
        if state.maskmem_pos_enc is None:
            state.maskmem_pos_enc = [x[0:1].clone() for x in out_enc]
        cached = state.maskmem_pos_enc
        b = out_enc[0].size(0)
        return [x.expand(b, -1, -1, -1) for x in cached]


def split_step_output(out: TrackStepOutput, i: int) -> TrackStepOutput:
    """Object `i` of a batched `TrackStepOutput` (every batched field sliced ``[i:i+1]``; what a
    bank stores is copied so that it does not keep the whole batch alive)."""
    def take(x, keep=False):
        if x is None:
            return None
        x = x[i:i + 1]
        return x.clone() if keep else x

    return out.replace(
        multimask_logits=take(out.multimask_logits), multimask_logits_high_res=take(out.multimask_logits_high_res),
        ungated_multimask_logits=take(out.ungated_multimask_logits), ious=take(out.ious),
        candidate_obj_ptrs=take(out.candidate_obj_ptrs), chosen=take(out.chosen),
        pred_masks=take(out.pred_masks, True), pred_masks_high_res=take(out.pred_masks_high_res),
        obj_ptr=take(out.obj_ptr, True), object_score_logits=take(out.object_score_logits, True),
        maskmem_features=take(out.maskmem_features),
        maskmem_pos_enc=None if out.maskmem_pos_enc is None else [take(p) for p in out.maskmem_pos_enc])


# the official class name
SAM2VideoPredictor = VideoPredictor

__all__ = ["VideoPredictor", "SAM2VideoPredictor", "NO_OBJ_SCORE", "InferenceState"]
