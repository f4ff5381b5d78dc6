"""`LiftConfig`: every knob of the 2D -> 3D lifting pipeline, with named presets.

Each default is documented in docs/lift3d.md together with where it comes from (the paper, a
published lifting method, or our own choice). Frame counts are in *processed* frames, i.e. after
``frame_skip`` (ScanNet streams run at 30 fps; the paper-like preset keeps every 5th raw frame).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from threeam.config_checks import check_ints, check_numbers
from threeam.errors import InputError
from threeam.presets import preset_functions, with_overrides

__all__ = ["LiftConfig", "LIFT_PRESETS", "get_lift_config", "lift_presets", "AMG_DEFAULTS", "AMG_TUNED"]

# The official SAM 2 automatic-mask-generator defaults, and the tuned set of the official notebook
# that SAM2Object and others use (64 points per side, one crop layer, mask-to-mask refinement).
AMG_DEFAULTS: dict[str, Any] = dict(points_per_side=32, points_per_batch=64, pred_iou_thresh=0.8,
                                    stability_score_thresh=0.95)
AMG_TUNED: dict[str, Any] = dict(points_per_side=64, points_per_batch=128, pred_iou_thresh=0.7,
                                 stability_score_thresh=0.92, stability_score_offset=0.7, crop_n_layers=1,
                                 box_nms_thresh=0.7, crop_n_points_downscale_factor=2, min_mask_region_area=25,
                                 use_m2m=True)

_KEYFRAME_MODES = ("stride", "coverage")
_SP_PRIORITIES = ("coverage", "smaller")
_CONF_TERMS = ("score", "stability", "consistency", "detection", "size")


@dataclass(frozen=True)
class LiftConfig:
    """Options of `threeam.lift3d.pipeline.lift_scene` (see docs/lift3d.md for every default).

    Frames:
        frame_skip: keep every n-th raw frame of the stream.
        max_frames: keep at most this many processed frames (None: all).
        work_long_side: frames, masks and depth are processed at the depth map's resolution; when the
            scene has no depth (RGB-only) at this long side (pixels).

    Keyframes:
        keyframe_mode: ``stride`` (every ``keyframe_stride`` frames) or ``coverage`` (a new keyframe
            when less than ``coverage_threshold`` of the current frame's back-projected points fall
            inside the last keyframe's view with agreeing depth, or after ``keyframe_max_gap`` frames).
        keyframe_stride, coverage_threshold, coverage_samples, keyframe_max_gap.

    Proposals (automatic mask generator on keyframes):
        amg: keyword arguments of the automatic mask generator.
        min_proposal_area: drop masks smaller than this fraction of the frame.
        min_proposal_depth: drop masks with less than this fraction of pixels with valid depth.
        max_proposals: keep at most this many masks per keyframe (highest predicted IoU first).

    Tracking:
        track_horizon: each keyframe's masks are propagated forward over this many frames after it.
        min_track_area: a tracked mask smaller than this fraction of the frame counts as lost.

    Lifting (mesh vertices seen inside a mask with agreeing depth):
        erode_px: masks are eroded by this many pixels (work resolution) before lifting.
        depth_tol_abs, depth_tol_rel: a vertex agrees with the frame's depth D when
            ``|z - D| <= min(depth_tol_abs, depth_tol_rel * D)`` (metres).
        min_depth, max_depth: valid sensor depth range (metres).
        min_hit_ratio: a fragment keeps the vertices that fall inside its (eroded) mask in at least
            this fraction of the fragment's frames in which they are visible.
        min_fragment_vertices: fragments with fewer vertices are dropped.
        band_radius: vertices only seen in the erosion band join a fragment when the un-eroded mask
            agrees and a chain of such vertices, each within this distance (metres) of the next,
            connects them to its core (0: pure erosion).

    Merging (union-find over fragment pairs):
        merge_iou: 3D IoU on the mutually visible vertices above which two fragments merge.
        merge_precision: inter-mask precision ``max(|A&B|/|A|, |A&B|/|B|)`` (mutually visible
            vertices) above which two fragments merge (only with a passing 2D test).
        merge_2d_iou: pairs tracked on common frames also need a mean 2D mask IoU above this.
        merge_iou_no_shared: pairs with no common frame merge on 3D IoU alone above this.
        cannot_link_2d_iou: fragments tracked on common frames with a mean 2D IoU below this are
            different objects; a merge joining them is refused (0 turns the constraint off).
        overlap_long_side: masks are compared in 2D at this long side (pixels).
        instance_vote: a merged instance keeps the vertices that are in at least this fraction of
            its fragments that see them.

    Superpoints and output:
        superpoint_vote: an instance keeps a superpoint when it covers more than this fraction of
            its vertices; a superpoint claimed by several instances goes to one of them
            (``superpoint_priority``: the highest coverage, ties to the higher confidence; or the
            smaller instance).
        min_kept_fraction: an instance that keeps less than this fraction of its vertices after the
            vote is a duplicate and is dropped.
        min_instance_vertices: smaller instances are dropped (the benchmark ignores < 100).
        max_instances: keep at most this many instances per scene (highest confidence).

    Confidence (`threeam.lift3d.scoring`):
        confidence_terms: the factors multiplied into an instance's ranking score, any of
            ``score`` (mean predicted IoU), ``stability`` (mean tracking stability), ``consistency``
            (mean multi-view agreement of its vertices), ``detection`` (share of the keyframes that
            saw it that also proposed it), ``size`` (``1 - exp(-vertices / size_scale)``).
        detection_visible_fraction: a keyframe *saw* an instance when it sees at least this fraction
            of the vertices that the instance's best keyframe sees.
        size_scale: vertex count of the ``size`` term.
    """

    frame_skip: int = 1
    max_frames: Optional[int] = None
    work_long_side: int = 640

    keyframe_mode: str = "stride"
    keyframe_stride: int = 4
    coverage_threshold: float = 0.7
    coverage_samples: int = 2000
    keyframe_max_gap: int = 12

    amg: dict = field(default_factory=lambda: dict(AMG_TUNED))
    min_proposal_area: float = 0.001
    min_proposal_depth: float = 0.5
    max_proposals: int = 100

    track_horizon: int = 8
    min_track_area: float = 0.0002

    erode_px: int = 2
    depth_tol_abs: float = 0.05
    depth_tol_rel: float = 0.15
    min_depth: float = 0.1
    max_depth: float = 10.0
    min_hit_ratio: float = 0.5
    min_fragment_vertices: int = 20
    band_radius: float = 0.05

    merge_iou: float = 0.5
    merge_precision: float = 0.8
    merge_2d_iou: float = 0.5
    merge_iou_no_shared: float = 0.5
    cannot_link_2d_iou: float = 0.1
    overlap_long_side: int = 160
    instance_vote: float = 0.3

    superpoint_vote: float = 0.5
    superpoint_priority: str = "coverage"
    min_kept_fraction: float = 0.5
    min_instance_vertices: int = 100
    max_instances: int = 300

    confidence_terms: tuple = ("score", "stability", "consistency", "detection")
    detection_visible_fraction: float = 0.5
    size_scale: float = 200.0

    def __post_init__(self) -> None:
        check_ints(self, dict(frame_skip=1, keyframe_stride=1, coverage_samples=1, keyframe_max_gap=1,
                              max_proposals=1, track_horizon=0, erode_px=0, min_fragment_vertices=1,
                              overlap_long_side=8, min_instance_vertices=1, max_instances=1, work_long_side=8),
                   "lift option")
        if self.max_frames is not None:
            check_ints(self, {"max_frames": 1}, "lift option")
        fracs = ("coverage_threshold", "min_proposal_area", "min_proposal_depth", "min_track_area", "min_hit_ratio",
                 "merge_iou", "merge_precision", "merge_2d_iou", "merge_iou_no_shared", "cannot_link_2d_iou",
                 "instance_vote", "superpoint_vote", "min_kept_fraction", "detection_visible_fraction")
        check_numbers(self, {**dict.fromkeys(fracs, (0.0, 1.0)),
                             **dict.fromkeys(("depth_tol_abs", "depth_tol_rel", "min_depth", "max_depth", "band_radius"),
                                             (0.0, None))}, "lift option")
        if self.max_depth <= self.min_depth:
            raise InputError(f"lift option max_depth ({self.max_depth}) must exceed min_depth ({self.min_depth})")
        if self.keyframe_mode not in _KEYFRAME_MODES:
            raise InputError(f"lift option keyframe_mode must be one of {_KEYFRAME_MODES}, got {self.keyframe_mode!r}")
        if self.superpoint_priority not in _SP_PRIORITIES:
            raise InputError(f"lift option superpoint_priority must be one of {_SP_PRIORITIES}, "
                             f"got {self.superpoint_priority!r}")
        unknown = sorted(set(self.confidence_terms) - set(_CONF_TERMS))
        if unknown or not isinstance(self.confidence_terms, (tuple, list)):
            raise InputError(f"lift option confidence_terms must be a subset of {_CONF_TERMS}, got "
                             f"{self.confidence_terms!r}")
        if float(self.size_scale) <= 0:
            raise InputError(f"lift option size_scale must be > 0, got {self.size_scale!r}")
        if not isinstance(self.amg, dict):
            raise InputError(f"lift option amg must be a dict of mask-generator options, got {self.amg!r}")

    def replace(self, **overrides: Any) -> "LiftConfig":
        """A copy with some fields changed (unknown names raise `InputError`)."""
        return with_overrides(self, overrides, what="lift")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "LiftConfig":
        d = dict(d)
        if "confidence_terms" in d:
            d["confidence_terms"] = tuple(d["confidence_terms"])
        return cls().replace(**d)


LIFT_PRESETS: dict[str, LiftConfig] = {
    # ScanNet at the paper's granularity: every 5th raw frame, a keyframe every 20 raw frames,
    # tracks over 40 raw frames, the tuned mask generator.
    "paper": LiftConfig(frame_skip=5, keyframe_stride=4, track_horizon=8, amg=dict(AMG_TUNED)),
    # a quicker ScanNet setting: every 10th raw frame, keyframes every 30 raw frames, default AMG.
    "fast": LiftConfig(frame_skip=10, keyframe_stride=3, track_horizon=5, amg=dict(AMG_DEFAULTS), max_proposals=60),
    # generated scenes (tests, demos): small frames (no erosion), every frame, coverage keyframes (the
    # generator's wide-baseline trajectories turn fast), a coarse mask-generator grid.
    "synthetic": LiftConfig(frame_skip=1, keyframe_mode="coverage", keyframe_max_gap=4, keyframe_stride=2,
                            track_horizon=6, erode_px=0, min_proposal_area=0.002, max_proposals=40,
                            min_track_area=0.0005,
                            amg=dict(points_per_side=8, points_per_batch=64, pred_iou_thresh=0.0,
                                     stability_score_thresh=0.0)),
}


get_lift_config, lift_presets = preset_functions(LIFT_PRESETS, "lift", default="paper", what="lift")
