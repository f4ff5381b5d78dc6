"""Training-clip sampling: field-of-view (FoV) aware sampling as defined by 3AM, continuous sampling,
and their mixture; plus the overlap measurement used to compare samplers.

FoV-aware sampling (3AM, Sec. 3.3): the first sampled frame is the **reference**. A candidate frame
whose GT mask contains the object is kept only if more than ``tau`` of its mask pixels,
back-projected with GT depth and pose and moved into the reference camera, fall inside the
reference camera's frustum (in front of it and within the image). Occlusion is deliberately not
tested (occluded views are kept); object-absent frames are also sampled (at most ``max_absent``
per clip, our choice - the paper gives no cap). A clip is the reference followed by the kept
frames in temporal order.

The :class:`ClipSampler` mixes FoV sampling (probability ``fov_prob``, default 0.8) with continuous
sampling (``n_frames`` consecutive frames starting at a frame where the object is visible), as 3AM
does for ScanNet++/ASE; scenes without depth/poses (DAVIS/MOSE) always use continuous sampling.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from threeam.data.geometry import (backproject, invert_rigid, project_into_view, seen_by_depth_frame,
                                   transform_points)
from threeam.data.types import PosedFrame, Scene
from threeam.data.visibility import VisibilityTable
from threeam.errors import InputError

__all__ = ["SamplerConfig", "Clip", "ClipData", "load_clip", "fov_ratio", "sample_fov_clip", "sample_continuous_clip",
           "sample_random_clip", "view_overlap", "sample_covisible_clip", "ClipSampler", "visible_surface_overlap", "measure_sampler_overlap"]


@dataclass(frozen=True)
class SamplerConfig:
    """Clip sampling parameters.

    Attributes:
        n_frames: frames per clip (reference included). Default 8 (SAM 2's memory size).
        fov_prob: probability of FoV-aware sampling (else continuous). 3AM: 0.8 on ScanNet++/ASE.
        tau: FoV threshold: keep a candidate if > tau of its object points fall in the reference frustum.
        min_ref_pixels: the reference frame (and a continuous clip's first frame) must show at
            least this many object pixels.
        max_absent: most object-absent frames per FoV clip (None = n_frames // 4).
        continuous_stride: frame step of continuous clips.
        max_points: back-projected points per candidate (random subset) for the FoV test.
    """

    n_frames: int = 8
    fov_prob: float = 0.8
    tau: float = 0.25
    min_ref_pixels: int = 100
    max_absent: int | None = None
    continuous_stride: int = 1
    max_points: int = 2048

    def __post_init__(self) -> None:
        if self.n_frames < 1:
            raise InputError(f"n_frames must be >= 1, got {self.n_frames}")
        if not 0.0 <= self.fov_prob <= 1.0:
            raise InputError(f"fov_prob must be in [0, 1], got {self.fov_prob}")
        if not 0.0 <= self.tau < 1.0:
            raise InputError(f"tau must be in [0, 1), got {self.tau}")
        if self.continuous_stride < 1 or self.max_points < 1 or self.min_ref_pixels < 1:
            raise InputError("continuous_stride, max_points and min_ref_pixels must be >= 1")

    @property
    def absent_cap(self) -> int:
        return self.n_frames // 4 if self.max_absent is None else self.max_absent


@dataclass
class Clip:
    """A sampled training clip: ``frames[0]`` is the reference / prompt frame."""

    scene_index: int
    scene_name: str
    object_id: int
    frames: list[int]
    mode: str  # "fov" | "continuous" | "random" | "covisible"
    fov_ratios: dict[int, float] = field(default_factory=dict)  # candidate frame -> ratio (FoV mode)


@dataclass
class ClipData:
    """The arrays of a sampled clip, in clip order (``[0]`` = reference / prompt frame).

    Attributes:
        rgb: ``(N, H, W, 3)`` uint8. masks: ``(N, H, W)`` bool GT masks of ``object_id`` (all False
        where the frame's ids are unknown; see ``annotated``). annotated: ``(N,)`` bool.
        depth: ``(N, H, W)`` float32 or None. K: ``(N, 3, 3)``. cam_to_world: ``(N, 4, 4)`` or None
        (None when any frame lacks a pose). frames: frame indices. object_id, scene_name, mode.
    """

    rgb: np.ndarray
    masks: np.ndarray
    annotated: np.ndarray
    depth: np.ndarray | None
    K: np.ndarray
    cam_to_world: np.ndarray | None
    frames: list[int]
    object_id: int
    scene_name: str
    mode: str


def load_clip(scene: Scene, clip: Clip) -> ClipData:
    """Load a clip's frames; every frame must have the reference frame's size."""
    frames = [scene.frame(t) for t in clip.frames]
    size = frames[0].size
    for f in frames:
        if f.size != size:
            raise InputError(f"clip frames differ in size: {f.name} is {f.size}, reference is {size}")
    masks = np.stack([np.zeros(size, bool) if f.instance_ids is None else f.instance_ids == clip.object_id
                      for f in frames])
    depth = None if any(f.depth is None for f in frames) else np.stack([f.depth for f in frames])
    poses = None if any(f.cam_to_world is None for f in frames) else np.stack([f.cam_to_world for f in frames])
    return ClipData(rgb=np.stack([f.rgb for f in frames]), masks=masks,
                    annotated=np.array([f.instance_ids is not None for f in frames]), depth=depth,
                    K=np.stack([f.K for f in frames]), cam_to_world=poses, frames=list(clip.frames),
                    object_id=clip.object_id, scene_name=clip.scene_name, mode=clip.mode)


def fov_ratio(candidate: PosedFrame, reference: PosedFrame, object_id: int, max_points: int = 2048,
              rng: np.random.Generator | None = None) -> float:
    """Share of the candidate's object mask points (with valid depth) inside the reference frustum.

    Args:
        candidate / reference: frames with depth, K and cam_to_world (the reference needs K, pose, size).
        object_id: the object.
        max_points: random subset size of mask pixels (all when fewer).
    Returns:
        ratio in [0, 1]; 0 when the candidate has no valid object point.
    """
    if candidate.depth is None or candidate.cam_to_world is None or reference.cam_to_world is None:
        raise InputError(f"FoV sampling needs depth and poses (frame {candidate.name or '?'} / "
                         f"reference {reference.name or '?'})")
    pts = _sample_world_points(candidate, (candidate.instance_ids == object_id) & (candidate.depth > 0),
                               max_points, rng)
    if pts is None:
        return 0.0
    return float(project_into_view(pts, reference.K, reference.cam_to_world, reference.size)[2].mean())


def _sample_world_points(frame: PosedFrame, mask: np.ndarray, max_points: int,
                         rng: np.random.Generator | None) -> np.ndarray | None:
    """World points ``(N, 3)`` of the frame's ``mask`` pixels (a random subset of ``max_points``),
    back-projected with its depth and pose; None when the mask is empty."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    if rows.size > max_points:
        sel = (rng or np.random.default_rng(0)).choice(rows.size, max_points, replace=False)
        rows, cols = rows[sel], cols[sel]
    return backproject(frame.depth, frame.K, frame.cam_to_world, (rows, cols))


def _pick_reference(vis: VisibilityTable, object_id: int, cfg: SamplerConfig, rng: np.random.Generator) -> int:
    area = vis.area(object_id)
    cand = np.nonzero(area >= cfg.min_ref_pixels)[0]
    if cand.size == 0:
        raise InputError(f"object {object_id} never shows {cfg.min_ref_pixels} pixels; cannot pick a reference")
    return int(cand[rng.integers(cand.size)])


def sample_fov_clip(scene: Scene, object_id: int, cfg: SamplerConfig, rng: np.random.Generator,
                    vis: VisibilityTable | None = None, scene_index: int = 0, reference: int | None = None) -> Clip:
    """FoV-aware clip (see module docstring). Returns fewer than ``n_frames`` frames only when the
    scene has too few acceptable frames."""
    vis = vis or VisibilityTable(scene)
    ref_i = _pick_reference(vis, object_id, cfg, rng) if reference is None else reference
    ref = scene.frame(ref_i)
    area = vis.area(object_id)
    kept, absent, ratios = [], [], {}
    spare_absent = []
    for c in rng.permutation(len(scene)):
        c = int(c)
        if len(kept) + len(absent) >= cfg.n_frames - 1:
            break
        if c == ref_i or c in vis.unknown:
            continue
        if area[c] > 0:
            fr = scene.frame(c)
            if fr.cam_to_world is None or fr.depth is None:
                continue
            r = fov_ratio(fr, ref, object_id, cfg.max_points, rng)
            ratios[c] = r
            if r > cfg.tau:
                kept.append(c)
        elif len(absent) < cfg.absent_cap:
            absent.append(c)
        else:
            spare_absent.append(c)
    others = kept + absent
    if len(others) < cfg.n_frames - 1:  # scene too small: top up with absent frames beyond the cap
        others += spare_absent[: cfg.n_frames - 1 - len(others)]
    return Clip(scene_index, scene.name, object_id, [ref_i] + sorted(others), "fov", ratios)


def sample_random_clip(scene: Scene, object_id: int, cfg: SamplerConfig, rng: np.random.Generator,
                       vis: VisibilityTable | None = None, scene_index: int = 0, reference: int | None = None) -> Clip:
    """Baseline: reference as in FoV sampling, other frames uniformly at random (no filtering)."""
    vis = vis or VisibilityTable(scene)
    ref_i = _pick_reference(vis, object_id, cfg, rng) if reference is None else reference
    pool = np.array([t for t in range(len(scene)) if t != ref_i and t not in vis.unknown])
    k = min(cfg.n_frames - 1, pool.size)
    others = sorted(int(x) for x in rng.choice(pool, k, replace=False)) if k else []
    return Clip(scene_index, scene.name, object_id, [ref_i] + others, "random")


def view_overlap(candidate: PosedFrame, reference: PosedFrame, max_points: int = 2048,
                 rng: np.random.Generator | None = None, depth_tol: float = 0.05) -> float:
    """Share of the candidate's valid-depth pixels that the reference camera also sees: inside its
    image, in front of it, and not hidden (the reference's depth there agrees within ``depth_tol``,
    relative). Whole views, not one object (compare `fov_ratio`); in [0, 1]."""
    if candidate.depth is None or candidate.cam_to_world is None or reference.cam_to_world is None \
            or reference.depth is None:
        raise InputError(f"covisible sampling needs depth and poses (frame {candidate.name or '?'} / "
                         f"reference {reference.name or '?'})")
    pts = _sample_world_points(candidate, candidate.depth > 0, max_points, rng)
    if pts is None:
        return 0.0
    return float(seen_by_depth_frame(pts, reference.depth, reference.K, reference.cam_to_world, depth_tol)[0].mean())


def sample_covisible_clip(scene: Scene, object_id: int, cfg: SamplerConfig, rng: np.random.Generator,
                          vis: VisibilityTable | None = None, scene_index: int = 0,
                          reference: int | None = None) -> Clip:
    """Multi-view clip for pointmap training: the reference as in FoV sampling, then up to
    ``n_frames - 1`` frames drawn at random among those whose view overlaps the reference view by more
    than ``tau`` (`view_overlap`), in temporal order. Returns fewer frames when the scene has fewer
    such frames. ``fov_ratios`` holds the overlap of every tested frame."""
    vis = vis or VisibilityTable(scene)
    ref_i = _pick_reference(vis, object_id, cfg, rng) if reference is None else reference
    ref = scene.frame(ref_i)
    kept, ratios = [], {}
    for c in rng.permutation(len(scene)):
        c = int(c)
        if len(kept) >= cfg.n_frames - 1:
            break
        if c == ref_i or c in vis.unknown:
            continue
        r = view_overlap(scene.frame(c), ref, cfg.max_points, rng)
        ratios[c] = r
        if r > cfg.tau:
            kept.append(c)
    return Clip(scene_index, scene.name, object_id, [ref_i] + sorted(kept), "covisible", ratios)


def sample_continuous_clip(scene: Scene, object_id: int, cfg: SamplerConfig, rng: np.random.Generator,
                           vis: VisibilityTable | None = None, scene_index: int = 0) -> Clip:
    """``n_frames`` consecutive frames (step ``continuous_stride``) starting where the object is visible.

    Where the object shows only so close to the end of the scene that no such clip fits, the clip
    runs backwards in time from a frame that shows it (a video played in reverse is still a video;
    a clip cut at the scene's end could be a single frame, which trains nothing). Only a scene
    shorter than the clip gives a shorter clip.
    """
    vis = vis or VisibilityTable(scene)
    area = vis.area(object_id)
    stride = cfg.continuous_stride
    span = stride * (cfg.n_frames - 1)
    starts = np.nonzero(area >= cfg.min_ref_pixels)[0]
    if starts.size == 0:
        raise InputError(f"object {object_id} never shows {cfg.min_ref_pixels} pixels")
    fit = starts[starts + span < len(scene)]
    back = starts[starts - span >= 0]
    if fit.size:
        start = int(fit[rng.integers(fit.size)])
        frames = list(range(start, start + span + 1, stride))
    elif back.size:
        start = int(back[rng.integers(back.size)])
        frames = list(range(start, start - span - 1, -stride))
    else:  # the scene is shorter than the clip: the longer direction from a visible frame
        start = int(starts[rng.integers(starts.size)])
        fwd = list(range(start, len(scene), stride))
        rev = list(range(start, -1, -stride))
        frames = fwd if len(fwd) >= len(rev) else rev
    return Clip(scene_index, scene.name, object_id, frames, "continuous")


def _has_geometry(scene: Scene) -> bool:
    f = scene.frame(0)
    return f.depth is not None and f.cam_to_world is not None


class ClipSampler:
    """Mixes FoV-aware (``fov_prob``) and continuous sampling over a list of scenes.

    Args:
        scenes: any Scenes (scenes without depth/poses get continuous clips only).
        config: :class:`SamplerConfig`.
        seed: RNG seed (same seed => same sequence of clips).
    """

    def __init__(self, scenes: Sequence[Scene], config: SamplerConfig = SamplerConfig(), seed: int = 0) -> None:
        if not scenes:
            raise InputError("ClipSampler needs at least one scene")
        self.scenes = list(scenes)
        self.config = config
        self.rng = np.random.default_rng(seed)
        self._vis: dict[int, VisibilityTable] = {}
        self._geo: dict[int, bool] = {}

    def visibility(self, i: int) -> VisibilityTable:
        if i not in self._vis:
            self._vis[i] = VisibilityTable(self.scenes[i])
        return self._vis[i]

    def sample(self) -> Clip:
        for _ in range(100):
            si = int(self.rng.integers(len(self.scenes)))
            vis = self.visibility(si)
            objs = vis.objects(self.config.min_ref_pixels)
            if objs:
                break
        else:
            raise InputError("no scene has an object with enough visible pixels to sample a clip")
        scene = self.scenes[si]
        oid = objs[int(self.rng.integers(len(objs)))]
        if si not in self._geo:
            self._geo[si] = _has_geometry(scene)
        if self._geo[si] and self.rng.random() < self.config.fov_prob:
            return sample_fov_clip(scene, oid, self.config, self.rng, vis, si)
        return sample_continuous_clip(scene, oid, self.config, self.rng, vis, si)

    def __iter__(self):
        while True:
            yield self.sample()


def visible_surface_overlap(frame: PosedFrame, reference: PosedFrame, object_id: int,
                            depth_tol: float = 0.05) -> float | None:
    """Share of the frame's visible object surface that the reference view also sees.

    A frame pixel of the object counts when its back-projected point lands inside the reference
    image on a reference pixel of the same object whose depth agrees within ``depth_tol`` metres
    (so it is the same, visible, surface patch). Returns None when the object is absent from ``frame``.
    """
    mask = (frame.instance_ids == object_id) & (frame.depth > 0)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    pts = backproject(frame.depth, frame.K, frame.cam_to_world, (rows, cols))
    pc = transform_points(invert_rigid(reference.cam_to_world), pts)
    z = pc[:, 2]
    K = reference.K
    h, w = reference.size
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.round(K[0, 0] * pc[:, 0] / z + K[0, 2])
        v = np.round(K[1, 1] * pc[:, 1] / z + K[1, 2])
    ok = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    ui, vi = u[ok].astype(np.int64), v[ok].astype(np.int64)
    same = (reference.instance_ids[vi, ui] == object_id) & (np.abs(reference.depth[vi, ui] - z[ok]) < depth_tol)
    return float(same.sum() / rows.size)


def measure_sampler_overlap(scenes: Sequence[Scene], n_clips: int = 200, cfg: SamplerConfig = SamplerConfig(),
                            min_overlap: float = 0.1, seed: int = 0) -> dict[str, dict[str, float]]:
    """Compare FoV / random / continuous sampling on posed scenes.

    For each of ``n_clips`` (scene, object, reference) draws - the same draws for FoV and random -
    every non-reference clip frame is scored with :func:`visible_surface_overlap`.

    Returns:
        ``{mode: {"overlap_share", "overlap_share_50", "mean_overlap", "absent_share", "frames"}}`` where
        ``overlap_share`` = share of clip frames (object present) whose visible object surface
        overlaps the reference view by at least ``min_overlap``; ``overlap_share_50`` the same
        with 0.5; ``mean_overlap`` = mean overlap
        fraction over those frames; ``absent_share`` = share of non-reference frames without the object.
    """
    rng = np.random.default_rng(seed)
    vis = [VisibilityTable(s) for s in scenes]
    stats = {m: {"present": 0, "overlapping": 0, "half": 0, "sum": 0.0, "absent": 0} for m in ("fov", "random", "continuous")}
    for _ in range(n_clips):
        si = int(rng.integers(len(scenes)))
        objs = vis[si].objects(cfg.min_ref_pixels)
        if not objs:
            continue
        oid = objs[int(rng.integers(len(objs)))]
        ref = _pick_reference(vis[si], oid, cfg, rng)
        clips = {
            "fov": sample_fov_clip(scenes[si], oid, cfg, np.random.default_rng(rng.integers(1 << 31)), vis[si], si, ref),
            "random": sample_random_clip(scenes[si], oid, cfg, np.random.default_rng(rng.integers(1 << 31)), vis[si], si, ref),
            "continuous": sample_continuous_clip(scenes[si], oid, cfg, np.random.default_rng(rng.integers(1 << 31)), vis[si], si),
        }
        for mode, clip in clips.items():
            r = scenes[si].frame(clip.frames[0])
            for t in clip.frames[1:]:
                ov = visible_surface_overlap(scenes[si].frame(t), r, oid)
                st = stats[mode]
                if ov is None:
                    st["absent"] += 1
                    continue
                st["present"] += 1
                st["sum"] += ov
                st["overlapping"] += int(ov >= min_overlap)
                st["half"] += int(ov >= 0.5)
    out = {}
    for mode, st in stats.items():
        n = st["present"]
        total = n + st["absent"]
        out[mode] = {"overlap_share": st["overlapping"] / n if n else float("nan"),
                     "overlap_share_50": st["half"] / n if n else float("nan"),
                     "mean_overlap": st["sum"] / n if n else float("nan"),
                     "absent_share": st["absent"] / total if total else float("nan"),
                     "frames": float(total)}
    return out
