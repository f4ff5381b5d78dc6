"""Oracle geometry (a diagnostic, never a method): MUSt3R's features with the ground-truth pointmap.

The 3AM merger reads two kinds of MUSt3R output: token features (encoder and decoder levels) and, through
PE3D, the reference-frame pointmap ``pts_ref`` and the viewing rays. Here the second kind is replaced by
the ground truth computed from the scene's depth, intrinsics and poses (the same rule as MUSt3R's training
targets, `threeam.train.must3r_task.gt_frame_points`); the features stay MUSt3R's. A 3AM trained and
evaluated this way answers "can the merger and SAM 2 use correct geometry at all at this scale?", apart
from "does the tiny MUSt3R predict it?". It needs GT depth and poses at inference, so users never get it.

* training: ``model.geometry_input=gt_points`` (the ``3am`` task; frame 0 of the clip is the reference);
* evaluation: `use_gt_points` on a `ThreeAMVideoPredictor`, then the ``set_scene`` it returns per scene
  (the reference is the first frame MUSt3R's stream sees after a reset: the prompted frame).

`PoseNoise` degrades the oracle towards a real MUSt3R's registration errors: every non-reference frame's
reference-frame pointmap is moved rigidly, as if its pose had been estimated with an error (its camera centre
shifted by a Gaussian translation, its orientation rotated about the centre by a Gaussian angle). The error of
a frame is a fixed function of its and the reference camera's poses (seeded by their bytes), so a frame gets the
same error in every clip and in evaluation, like a deterministic network's. ``model.gt_points_trans_noise`` /
``model.gt_points_rot_noise`` set it in training; the toy ablation's evaluation reads them from the arm's config.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Sequence

import numpy as np
import torch

from threeam.errors import InputError
from threeam.models.must3r.postprocess import rays_from_pointmap
from threeam.models.must3r.session import Must3rFrameOutput

__all__ = ["PoseNoise", "network_res", "with_gt_points", "gt_clip_geometry", "GroundTruthPoints", "use_gt_points"]


@dataclasses.dataclass(frozen=True)
class PoseNoise:
    """Per-frame rigid registration error of the GT reference-frame pointmap.

    Attributes:
        trans: standard deviation of the camera-centre shift per axis, as a fraction of the frame's median
            valid depth (so it is scale-free).
        rot_deg: standard deviation of the rotation angle in degrees (about a uniformly random axis through
            the frame's camera centre).
    """

    trans: float = 0.0
    rot_deg: float = 0.0

    def __post_init__(self) -> None:
        if not (self.trans >= 0 and self.rot_deg >= 0):
            raise InputError(f"pose noise must be >= 0, got trans={self.trans!r}, rot_deg={self.rot_deg!r}")

    @property
    def active(self) -> bool:
        return self.trans > 0 or self.rot_deg > 0

    def draw(self, cam_to_world: np.ndarray, ref_cam_to_world: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """The frame's error: rotation (3, 3) and translation (3,) (``scale``: the frame's median depth)."""
        seed = zlib.crc32(np.ascontiguousarray(cam_to_world, np.float64).tobytes()
                          + np.ascontiguousarray(ref_cam_to_world, np.float64).tobytes())
        rng = np.random.default_rng(seed)
        axis = rng.normal(size=3)
        axis /= max(float(np.linalg.norm(axis)), 1e-12)
        angle = np.deg2rad(self.rot_deg) * rng.normal()
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        R = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)  # Rodrigues
        return R, self.trans * scale * rng.normal(size=3)

    def apply(self, p_ref: np.ndarray, rel: np.ndarray, valid: np.ndarray, cam_to_world: np.ndarray,
              ref_cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``p_ref`` (h, w, 3) and ``rel`` (4, 4, camera-to-reference) with the frame's error; the reference
        frame itself (``rel`` = identity) is exact, as MUSt3R's reference is by definition."""
        if not self.active or np.allclose(rel, np.eye(4)):
            return p_ref, rel
        depth = np.linalg.norm(p_ref - rel[:3, 3], axis=-1)[valid]
        R, t = self.draw(cam_to_world, ref_cam_to_world, float(np.median(depth)) if depth.size else 1.0)
        c = rel[:3, 3]
        moved = (p_ref - c) @ R.T + c + t
        out = np.eye(4)
        out[:3, :3], out[:3, 3] = R @ rel[:3, :3], c + t
        return moved, out


def with_gt_points(out: Must3rFrameOutput, rgb: np.ndarray, depth: np.ndarray, K: np.ndarray,
                   cam_to_world: np.ndarray, ref_cam_to_world: np.ndarray, res: int,
                   noise: PoseNoise | None = None) -> Must3rFrameOutput:
    """``out`` with ``pts_ref``, ``pts_self`` and ``rays`` (each (1, h, w, 3) at network resolution) from
    the GT of the frame (rgb (H, W, 3), depth (H, W) metres, K (3, 3), poses (4, 4)); ``c2w`` becomes the
    GT camera-to-reference pose. Invalid depth gives zero points (PE3D's "no point"). ``noise``: the
    frame's registration error applied to ``pts_ref`` and ``c2w`` (`PoseNoise`)."""
    from threeam.train.must3r_task import gt_frame_points

    if depth is None or cam_to_world is None or ref_cam_to_world is None:
        raise InputError("GT geometry needs depth and camera poses for every frame")
    _, p_self, p_ref, valid, _, _ = gt_frame_points(rgb, depth, K, cam_to_world, ref_cam_to_world, res)
    if tuple(p_ref.shape[:2]) != tuple(out.true_shape):
        raise InputError(f"GT pointmap {p_ref.shape[:2]} does not match MUSt3R's network frame {out.true_shape}")
    like = out.pts_ref
    rel = np.linalg.inv(ref_cam_to_world) @ cam_to_world
    if noise is not None:
        p_ref, rel = noise.apply(p_ref, rel, valid, cam_to_world, ref_cam_to_world)
    p_self = np.where(valid[..., None], p_self, 0.0)
    p_ref = np.where(valid[..., None], p_ref, 0.0)
    pts_self = torch.from_numpy(p_self).to(like.device, like.dtype)[None]
    pts_ref = torch.from_numpy(p_ref).to(like.device, like.dtype)[None]
    c2w = torch.from_numpy(rel).to(like.device, torch.float32)[None]
    return dataclasses.replace(out, pts_ref=pts_ref, pts_self=pts_self, rays=rays_from_pointmap(pts_self), c2w=c2w)


def network_res(three_am) -> int:
    """The long side MUSt3R's stream resizes frames to in a `ThreeAM` model."""
    return three_am.stream_config.input_res(three_am.must3r)


def gt_clip_geometry(outputs: Sequence[Must3rFrameOutput], rgb: np.ndarray, depth: np.ndarray | None,
                     K: np.ndarray, cam_to_world: np.ndarray | None, res: int,
                     noise: PoseNoise | None = None) -> list[Must3rFrameOutput]:
    """`with_gt_points` for every frame of a clip (rgb (T, H, W, 3), depth (T, H, W), K (T, 3, 3),
    cam_to_world (T, 4, 4)); frame 0 is the reference camera."""
    if depth is None or cam_to_world is None:
        raise InputError("model.geometry_input=gt_points needs clips with depth and camera poses")
    if len(outputs) != len(rgb):
        raise InputError(f"got MUSt3R outputs for {len(outputs)} frames but the clip has {len(rgb)}")
    return [with_gt_points(o, rgb[t], depth[t], K[t], cam_to_world[t], cam_to_world[0], res, noise)
            for t, o in enumerate(outputs)]


class GroundTruthPoints:
    """A MUSt3R streaming session whose outputs carry the GT pointmap of the current scene.

    Wraps the session a `ThreeAMVideoPredictor` made (``stream``); ``index`` must be set to the frame
    being processed before each `add_frame` / `render_frame` (`use_gt_points` does it). The reference camera
    is the frame of the first `add_frame` after construction or `reset`, as in MUSt3R's stream.
    """

    def __init__(self, stream, scene: Any, res: int, noise: PoseNoise | None = None):
        self.stream, self.scene, self.res, self.noise = stream, scene, int(res), noise
        self.index: int | None = None
        self.reference: int | None = None

    def __getattr__(self, name: str):  # everything else is the wrapped session's
        return getattr(self.__dict__["stream"], name)

    def _gt(self, out: Must3rFrameOutput) -> Must3rFrameOutput:
        if self.index is None or self.reference is None:
            raise InputError("GroundTruthPoints needs the frame index of every frame it processes")
        f, ref = self.scene.frame(self.index), self.scene.frame(self.reference)
        return with_gt_points(out, f.rgb, f.depth, f.K, f.cam_to_world, ref.cam_to_world, self.res, self.noise)

    def add_frame(self, frame) -> Must3rFrameOutput:
        if self.reference is None:
            self.reference = self.index
        return self._gt(self.stream.add_frame(frame))

    def render_frame(self, frame) -> Must3rFrameOutput:
        return self._gt(self.stream.render_frame(frame))

    def reset(self) -> None:
        self.stream.reset()
        self.reference = None


def use_gt_points(predictor, noise: PoseNoise | None = None) -> "callable":
    """Make a `ThreeAMVideoPredictor` feed its merger the GT pointmap of a scene (its MUSt3R features
    unchanged), with ``noise``'s registration errors if given. Returns ``set_scene(scene)``: call it with
    the posed scene whose frames the next ``init_state`` gets (frame ``t`` of the video must be
    ``scene.frame(t)``)."""
    current: dict[str, Any] = {}
    warm_up, compute = predictor.warm_up, predictor.compute_backbone_features
    res = network_res(predictor.three_am)

    def gt_warm_up(state) -> None:
        warm_up(state)
        if "scene" not in current:
            raise InputError("use_gt_points: call set_scene(scene) before init_state")
        geo = state.three_am
        if len(current["scene"]) != len(geo.frames):
            raise InputError(f"the scene has {len(current['scene'])} frames, the video {len(geo.frames)}")
        geo.stream = GroundTruthPoints(geo.stream, current["scene"], res, noise)

    def gt_compute(state, frame_idx: int, image):
        stream = state.three_am.stream
        if isinstance(stream, GroundTruthPoints):
            stream.index = int(frame_idx)
        return compute(state, frame_idx, image)

    predictor.warm_up, predictor.compute_backbone_features = gt_warm_up, gt_compute

    def set_scene(scene) -> None:
        current["scene"] = scene

    return set_scene
