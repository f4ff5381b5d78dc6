"""The 3AM video predictor: the SAM 2 session API with geometry-aware frame features.

It is `VideoPredictor` with one hook replaced (`compute_backbone_features`): each frame's stride-16
SAM 2 feature is fused with MUSt3R's features of the same frame by the Feature Merger. Prompts,
multi-object tracking, forward/reverse propagation and every other call are SAM 2's.

MUSt3R rule (see docs/3am.md):
* MUSt3R runs **once per frame per session**, never per object: the merged feature of a frame is
  cached in the session (``(1, C, S/16, S/16)`` float32 on the state's storage device) the first
  time the frame is visited, so every object, the reverse pass and re-propagations after a
  correction reuse it. A frame's geometry therefore never changes within a session.
* MUSt3R's streaming memory grows in **first-visit order**: the first frame the session processes
  after `init_state` (normally the prompted frame) is MUSt3R's reference frame. Tracking from a
  middle frame forward and then backward thus renders the backward frames against the memory the
  forward pass built (keyframes bounded by ``stream.max_keyframes``), all in the conditioning
  frame's coordinates. `reset_state` keeps the cache (same frames, same geometry); a new
  `init_state` starts a new MUSt3R memory.
* Sequence-level fallback (paper Sec. 3.4): ``set_use_geometry(state, False)`` (or a
  ``motion_detector`` that returns True) makes the session plain SAM 2, reusing SAM 2's frozen
  encoder features. The switch is only allowed before anything was tracked in the session, since
  switching mid-sequence corrupts the memory bank (the paper's observation).
"""
from __future__ import annotations

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
    ratio). A frames folder is read lazily file by file; arrays are kept as given; a video file is
    decoded once more (the SAM 2 side only keeps the square, normalised frames)."""

    def __init__(self, source: Any):
        self._files: list[Path] | None = None
        self._array: np.ndarray | None = None
        if isinstance(source, (str, Path)) and Path(source).is_dir():
            self._files = list_frame_files(source)
        else:
            self._array = read_video(source)

    def __len__(self) -> int:
        return len(self._files) if self._files is not None else len(self._array)

    def __getitem__(self, index: int) -> np.ndarray:
        if self._files is not None:
            return read_image_file(self._files[index])
        return self._array[index]


@dataclass
class GeometryState:
    """Per-session 3AM state (kept in ``inference_state.constants["threeam"]``)."""

    frames: RawFrames
    session: Must3rStreamingSession
    use_geometry: bool = True
    decided: bool = False
    merged: dict[int, torch.Tensor] = field(default_factory=dict)
    must3r_calls: int = 0
    visit_order: list[int] = field(default_factory=list)


class ThreeAMVideoPredictor(VideoPredictor):
    """`VideoPredictor` over a `ThreeAM` model (``self.model`` is its SAM 2 part)."""

    def __init__(self, threeam: ThreeAM, config=None, *, motion_detector: Optional[MotionDetector] = None,
                 progress: bool = True, **options: Any):
        super().__init__(threeam.sam2, config, progress=progress, **options)
        self.threeam = threeam
        self.motion_detector = motion_detector
        self._warming_up = False

    # ------------------------------------------------------------------ session
    def init_state(self, video, offload_video_to_cpu: bool = False, offload_state_to_cpu: bool = False,
                   async_loading_frames: bool = False, video_size: tuple[int, int] | None = None) -> InferenceState:
        """As `VideoPredictor.init_state`; also opens the session's MUSt3R stream (empty memory)."""
        raw = RawFrames(video)
        self._warming_up = True  # frame 0's warm-up must not make frame 0 MUSt3R's reference
        try:
            state = super().init_state(video, offload_video_to_cpu=offload_video_to_cpu,
                                       offload_state_to_cpu=offload_state_to_cpu,
                                       async_loading_frames=async_loading_frames, video_size=video_size)
        finally:
            self._warming_up = False
        state.cached_features = {}
        if len(raw) != state.num_frames:
            raise InputError(f"MUSt3R sees {len(raw)} frames but SAM 2 sees {state.num_frames}")
        session = Must3rStreamingSession(self.threeam.must3r, self.threeam.stream_config)
        state.constants["threeam"] = GeometryState(frames=raw, session=session)
        return state

    def geometry(self, inference_state: InferenceState) -> GeometryState:
        geo = inference_state.constants.get("threeam")
        if geo is None:
            raise InputError("this inference state was not made by a ThreeAMVideoPredictor (call its init_state)")
        return geo

    def set_use_geometry(self, inference_state: InferenceState, enabled: bool) -> None:
        """Switch the session between 3AM (True) and plain SAM 2 (False, the paper's fallback)."""
        geo = self.geometry(inference_state)
        if bool(enabled) == geo.use_geometry:
            geo.decided = True
            return
        if any(bank[COND] or bank[NON_COND]
               for bank in inference_state.output_dict_per_obj.values()) or geo.merged:
            raise InputError("the 3AM/SAM 2 switch must be made before anything is tracked in the session "
                             "(switching mid-sequence corrupts the memory bank); call reset_state and "
                             "init_state again to change it")
        geo.use_geometry = bool(enabled)
        geo.decided = True

    def _decide(self, state: InferenceState) -> None:
        geo = self.geometry(state)
        if geo.decided:
            return
        geo.decided = True
        if self.motion_detector is not None and bool(self.motion_detector(geo.frames)):
            geo.use_geometry = False

    # ------------------------------------------------------------------ the feature hook
    def compute_backbone_features(self, inference_state: InferenceState, frame_idx: int,
                                  image: torch.Tensor) -> dict:
        """SAM 2's backbone output with ``backbone_fpn[-1]`` replaced by F_merged (3AM)."""
        out = self.model.forward_image(image)
        if self._warming_up:
            return out
        self._decide(inference_state)
        geo = self.geometry(inference_state)
        if not geo.use_geometry:
            return out
        merged = geo.merged.get(frame_idx)
        if merged is None:
            merged = self._merge_frame(inference_state, geo, frame_idx, out["backbone_fpn"][-1])
            geo.merged[frame_idx] = merged.to(inference_state.storage_device)
        merged = merged.to(out["backbone_fpn"][-1].device)
        fpn = list(out["backbone_fpn"])
        fpn[-1] = merged
        return {**out, "backbone_fpn": fpn, "vision_features": merged}

    def _merge_frame(self, state: InferenceState, geo: GeometryState, frame_idx: int,
                     f2d: torch.Tensor) -> torch.Tensor:
        frame = geo.frames[frame_idx]
        must3r_out = geo.session.add_frame(frame)
        geo.must3r_calls += 1
        geo.visit_order.append(frame_idx)
        feats = self.threeam.merger_inputs(must3r_out, frame.shape[:2])
        return self.threeam.merge(f2d, feats)


def build_threeam_predictor(config: Any = "3am_hiera_l", checkpoint: Any = None, device: str = "cpu",
                            random_weights: bool = False, seed: int = 0, **options: Any) -> ThreeAMVideoPredictor:
    """A 3AM predictor from a preset/config and (optionally) a 3AM checkpoint folder or hub id.

    ``random_weights=True`` fills every weight deterministically from ``seed`` (smoke tests; the
    merger keeps its zero-initialised last layer, so outputs equal SAM 2 with the same weights).
    """
    from threeam.models.sam2.config import VideoPredictorConfig

    if checkpoint is not None:
        from threeam.models.three_am_weights import load_threeam

        model = load_threeam(checkpoint, device=device)
    else:
        if not random_weights:
            raise InputError("a 3AM model needs weights: give a 3AM checkpoint folder or hub id, or "
                             "random_weights=True for a smoke test")
        model = ThreeAM(config, device="cpu")
        randomize_weights(model, seed)
        model = model.to(device)
    model.eval()
    vcfg = options.pop("config", None) or VideoPredictorConfig()
    return ThreeAMVideoPredictor(model, vcfg, **options)


def randomize_weights(model: ThreeAM, seed: int = 0) -> None:
    """Deterministic random weights for SAM 2 and MUSt3R (merger untouched: fresh 3AM == SAM 2)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in list(model.sam2.named_parameters()) + list(model.must3r.named_parameters()):
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / max(1.0, p[0].numel()) ** 0.5)
            elif name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))


def build_3am_predictor(ctx: Any) -> ThreeAMVideoPredictor:
    """The evaluation runner's 3AM factory (``threeam eval --methods 3am``).

    ``ctx`` is a `threeam.eval.runner.EvalContext`. With ``ctx.extra["3am_checkpoint"]`` (a 3AM
    checkpoint folder or hub id) that model is used. Otherwise (only with ``random_weights``) the
    3AM model shares the SAM 2 weights of the ``sam2`` method and gets random MUSt3R weights and a
    fresh (zero-initialised) merger, so its scores equal plain SAM 2's: a check of the wiring. The
    3AM configuration is ``ctx.extra["3am_preset"]`` if given, else SAM 2's preset with MUSt3R 512
    and the paper's merger (a custom SAM 2 config, e.g. the debug model, gets the tiny MUSt3R and
    merger).
    """
    from threeam.models.sam2.config import VideoPredictorConfig
    from threeam.models.three_am import ThreeAMConfig, get_threeam_config, tiny_must3r_config

    ckpt = ctx.extra.get("3am_checkpoint")
    if ckpt is not None:
        from threeam.models.three_am_weights import load_threeam

        model = load_threeam(ckpt, device=ctx.device)
    else:
        if not ctx.random_weights:
            raise InputError("3AM needs its weights: pass a 3AM checkpoint folder or hub id (--3am-checkpoint), "
                             "or --random-weights for a smoke test")
        preset = ctx.extra.get("3am_preset")
        if preset is not None:
            config = get_threeam_config(preset)
        elif isinstance(ctx.model_preset, str):
            config = ThreeAMConfig(ctx.model_preset, "must3r_512", "paper")
        else:
            tiny = get_threeam_config("3am_tiny")
            config = ThreeAMConfig(ctx.model_preset, tiny_must3r_config(), "tiny", must3r_res=64, stream=tiny.stream)
        model = ThreeAM(config)
        randomize_weights(model, ctx.seed)
        sam2 = ctx.sam2_model()
        own = model.sam2.state_dict()
        if all(k in own and own[k].shape == v.shape for k, v in sam2.state_dict().items()):
            model.sam2.load_state_dict(sam2.state_dict())
        model = model.to(ctx.device)
    return ThreeAMVideoPredictor(model.eval(), VideoPredictorConfig(), progress=False)
