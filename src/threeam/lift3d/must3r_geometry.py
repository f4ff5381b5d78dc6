"""RGB-only lifting: depth, intrinsics and poses from MUSt3R's pointmaps instead of the sensor.

MUSt3R streams over the processed frames in order (`threeam.models.must3r.Must3rStreamingSession`,
frame 0 is its reference camera); per frame it gives a pointmap in the frame's own camera
(depth = its z), a confidence, a focal length (principal point at the image centre) and the
camera-to-reference pose. They are mapped back to the working resolution (the crop MUSt3R takes
leaves a border without depth) and pixels with confidence below ``min_conf`` get no depth.

MUSt3R's reconstruction lives in its own frame with its own scale. The benchmark scores the
vertices of the scan's mesh, so the result has to be expressed in the mesh's frame: a similarity
(scale s, rotation R, translation t) is fitted between MUSt3R's camera trajectory and the scan's
recorded one (``align="poses"``: R from the camera orientations, s and t from the camera centres by
least squares) - the usual trajectory alignment of monocular reconstruction. Only the recorded
poses are used for it, never the sensor depth. The aligned depth is ``s * z``. A trajectory that
hardly moves cannot fix the scale and is refused.

This goes beyond the paper, whose lifting uses the sensor depth (docs/lift3d.md).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from threeam.errors import InputError
from threeam.lift3d.scene import LiftFrame, LiftScene, resize_rgb, scale_K

__all__ = ["Must3rGeometry", "similarity_from_trajectories", "must3r_scene", "must3r_from_predictor"]


@dataclass
class Must3rGeometry:
    """MUSt3R's per-frame geometry at working resolution (in MUSt3R's frame, before alignment).

    Attributes:
        depth: ``(T, H, W)`` float32 z-depth (0 = none or low confidence).
        K: ``(T, 3, 3)`` float64 intrinsics.
        c2w: ``(T, 4, 4)`` float64 camera-to-reference poses.
    """

    depth: np.ndarray
    K: np.ndarray
    c2w: np.ndarray


def _rigid_rotation(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    d = np.sign(np.linalg.det(U @ Vt)) or 1.0
    return U @ np.diag([1.0, 1.0, d]) @ Vt


def similarity_from_trajectories(src_c2w: np.ndarray, dst_c2w: np.ndarray,
                                 min_spread: float = 1e-3) -> tuple[float, np.ndarray, np.ndarray]:
    """``(s, R, t)`` with ``dst ~= s R src + t`` from two camera trajectories ``(T, 4, 4)``.

    R is the rotation closest to ``sum_i R_dst,i R_src,i^T`` (orientations, robust to straight-line
    motion); s and t minimise ``sum_i |s R c_src,i + t - c_dst,i|^2`` over the camera centres.

    Raises:
        InputError: fewer than two frames, or camera centres that barely move (the scale is undefined).
    """
    if len(src_c2w) < 2:
        raise InputError("aligning MUSt3R to the scan needs at least two posed frames")
    R = _rigid_rotation(np.einsum("tij,tkj->ik", dst_c2w[:, :3, :3], src_c2w[:, :3, :3]))
    cs, cd = src_c2w[:, :3, 3], dst_c2w[:, :3, 3]
    cs0, cd0 = cs - cs.mean(0), cd - cd.mean(0)
    spread_s = float((cs0 ** 2).sum(1).mean())
    spread_d = float((cd0 ** 2).sum(1).mean())
    if spread_s < min_spread ** 2 or spread_d < min_spread ** 2:
        raise InputError("the camera hardly moves in this scene, so MUSt3R's scale cannot be aligned to the scan "
                         "(RGB-only mode needs camera motion); use --depth sensor")
    rc = cs0 @ R.T
    s = float((rc * cd0).sum() / (rc ** 2).sum())
    if not np.isfinite(s) or s <= 0:
        raise InputError(f"MUSt3R's trajectory does not fit the scan's (scale {s:.3g}); use --depth sensor")
    t = cd.mean(0) - s * (cs.mean(0) @ R.T)
    return s, R, t


def _to_working(out: Any, hw: tuple[int, int], min_conf: float) -> tuple[np.ndarray, np.ndarray]:
    """One frame's MUSt3R depth and K at working resolution ``hw``."""
    H, W = hw
    z = out.pts_self[0, ..., 2].float().cpu().numpy()
    conf = out.conf[0].float().cpu().numpy()
    h, w = z.shape
    to_orig = np.eye(3) if out.to_orig is None else np.asarray(out.to_orig, dtype=np.float64)
    focal = float(out.focal[0]) if out.focal is not None else float(max(h, w))
    K_net = np.array([[focal, 0, w / 2], [0, focal, h / 2], [0, 0, 1.0]])
    K = to_orig @ K_net
    inv = np.linalg.inv(to_orig)
    v, u = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    un = np.rint(inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]).astype(np.int64)
    vn = np.rint(inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]).astype(np.int64)
    ok = (un >= 0) & (un < w) & (vn >= 0) & (vn < h)
    depth = np.zeros((H, W), dtype=np.float32)
    zz = z[np.clip(vn, 0, h - 1), np.clip(un, 0, w - 1)]
    cc = conf[np.clip(vn, 0, h - 1), np.clip(un, 0, w - 1)]
    good = ok & (zz > 0) & np.isfinite(zz) & (cc >= min_conf)
    depth[good] = zz[good]
    return depth, K


@torch.no_grad()
def run_must3r(scene: LiftScene, must3r: Any, stream_config: Any, min_conf: float = 1.5) -> Must3rGeometry:
    """Stream MUSt3R over the processed frames of ``scene`` (frame 0 first)."""
    from threeam.models.must3r.session import Must3rStreamingSession

    cfg = dataclasses.replace(stream_config, compute_camera=True, feature_levels=())
    session = Must3rStreamingSession(must3r, cfg)
    depths, Ks, poses = [], [], []
    for t in range(len(scene)):
        fr = scene.frame(t)
        out = session.add_frame(fr.rgb)
        d, K = _to_working(out, fr.size, min_conf)
        depths.append(d)
        Ks.append(K)
        poses.append(out.c2w[0].double().cpu().numpy())
    return Must3rGeometry(np.stack(depths), np.stack(Ks), np.stack(poses))


def must3r_scene(scene: LiftScene, must3r: Any, stream_config: Any, min_conf: float = 1.5,
                 align: str = "poses") -> tuple[LiftScene, dict]:
    """The scene with MUSt3R's depth, intrinsics and (aligned) poses in place of the sensor's.

    Args:
        scene: frames with RGB (and, for ``align="poses"``, the recorded poses).
        must3r: a `threeam.models.must3r.Must3r` model.
        stream_config: its `Must3rStreamConfig` (resolution, keyframe policy).
        min_conf: pixels below this MUSt3R confidence get no depth.
        align: ``"poses"`` (see the module docstring) or ``"none"`` (MUSt3R's own frame; the mesh
            must then be in that frame too).
    Returns:
        ``(scene, info)`` with info ``{"scale", "rotation", "translation", "valid_depth"}``.
    """
    if align not in ("poses", "none"):
        raise InputError(f"align must be 'poses' or 'none', got {align!r}")
    geo = run_must3r(scene, must3r, stream_config, min_conf)
    s, R, tr = 1.0, np.eye(3), np.zeros(3)
    if align == "poses":
        gt = [scene.frame(t).cam_to_world for t in range(len(scene))]
        ok = [i for i, g in enumerate(gt) if g is not None and np.all(np.isfinite(g))]
        if len(ok) < 2:
            raise InputError(f"scene {scene.name!r}: aligning MUSt3R to the scan needs recorded poses")
        s, R, tr = similarity_from_trajectories(geo.c2w[ok], np.stack([gt[i] for i in ok]))
    c2w = geo.c2w.copy()
    c2w[:, :3, :3] = np.einsum("ij,tjk->tik", R, geo.c2w[:, :3, :3])
    c2w[:, :3, 3] = s * geo.c2w[:, :3, 3] @ R.T + tr
    depth = geo.depth * np.float32(s)
    base = scene

    def load(raw_index: int) -> LiftFrame:
        t = base.raw_indices.index(raw_index)
        fr = base.frame(t)
        return LiftFrame(index=fr.index, rgb=fr.rgb, depth=depth[t], K=geo.K[t], cam_to_world=c2w[t],
                         gt_ids=fr.gt_ids)

    info = {"scale": s, "rotation": R.tolist(), "translation": tr.tolist(),
            "valid_depth": float((geo.depth > 0).mean())}
    return base.with_frames(load), info


def must3r_from_predictor(predictor: Any) -> tuple[Any, Any]:
    """``(must3r model, stream config)`` owned by a 3AM predictor, or ``(None, None)`` for SAM 2."""
    three_am = getattr(predictor, "three_am", None)
    if three_am is None:
        return None, None
    return three_am.must3r, three_am.stream_config


def build_must3r_model(checkpoint: Optional[str], random_weights: bool, seed: int = 0, device: str = "cpu"):
    """A MUSt3R for ``--model sam2 --depth must3r``: the official checkpoint, or (smoke tests) the tiny
    configuration with deterministic random weights. Returns ``(model, stream config)``."""
    from threeam.models.must3r.session import Must3rStreamConfig

    if checkpoint is not None:
        from threeam.models.must3r import load_must3r

        model = load_must3r(checkpoint, device=device)
        return model, Must3rStreamConfig()
    if not random_weights:
        raise InputError("--depth must3r with --model sam2 needs MUSt3R weights: pass --must3r-checkpoint, "
                         "or --random-weights for a smoke test")
    from threeam.models.must3r.model import Must3r
    from threeam.models.three_am import tiny_must3r_config

    torch.manual_seed(seed)
    model = Must3r(tiny_must3r_config()).to(device).eval()
    return model, Must3rStreamConfig(res=64, keyframe_interval=2, max_keyframes=8)
