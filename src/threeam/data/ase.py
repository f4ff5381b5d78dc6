"""Aria Synthetic Environments (ASE): reader (fisheye -> rectified pinhole) and a writer of the layout.

Documented per-scene layout (projectaria_tools ASE "Data Format" page)::

    <scene_id>/rgb/vignette%07d.jpg         # RGB fisheye frames (10 FPS)
    <scene_id>/depth/depth%07d.png          # uint16 millimetres, distance along each pixel's ray
    <scene_id>/instances/instance%07d.png   # uint16 object id per pixel
    <scene_id>/trajectory.csv (or .txt)     # MPS closed-loop trajectory CSV: T_world_device per frame
    <scene_id>/object_instances_to_classes.json, ase_scene_language.txt, semidense_*.csv.gz

Frame ``i`` uses trajectory row ``i``. The RGB camera is the ASE "camera-rgb" calibration: a
FisheyeRadTanThinPrism ("Fisheye624", single focal) model at 704x704 with a fixed
``T_Camera_Device``; images of another square size use the calibration scaled as projectaria's
``rescale`` does (``f *= s``, ``c = s (c + 0.5) - 0.5``). ``T_world_camera = T_world_device @
inverse(T_Camera_Device)``.

:meth:`AseScene.frame` returns a rectified **pinhole** view (size ``rectified_size``, horizontal
FoV ``rectified_hfov_deg``; same camera axes as the fisheye camera): RGB bilinear, ids and depth
nearest, ray distance converted to z-depth, pixels outside the fisheye's valid radius set to 0.
:meth:`AseScene.raw_frame` gives the stored fisheye arrays.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from threeam.data._io import depth_to_mm, read_json, read_png16, read_rgb, write_jpg, write_json, write_png16
from threeam.data.geometry import invert_rigid, matrix_to_quat_wxyz, quat_wxyz_to_matrix
from threeam.data.types import PosedFrame, Scene, SceneMesh, frame_index
from threeam.errors import InputError, VideoError
from threeam.io.atomic import atomic_write_text

__all__ = ["Fisheye624", "ase_rgb_calibration", "AseScene", "write_ase_scene", "read_ase_trajectory"]


@dataclass(frozen=True)
class Fisheye624:
    """Fisheye camera with radial (k0..k5), tangential (p0, p1) and thin-prism (s0..s3) distortion,
    single focal length. Pixel centres at integer coordinates.

    Attributes:
        params: ``(15,)`` = f, cx, cy, k0..k5, p0, p1, s0..s3.
        width, height: image size. valid_radius: pixels farther than this from (cx, cy) are invalid.
        T_camera_device: ``(4, 4)`` device-to-camera transform.
    """

    params: tuple
    width: int
    height: int
    valid_radius: float
    T_camera_device: tuple

    @property
    def p(self) -> np.ndarray:
        return np.asarray(self.params, dtype=np.float64)

    def scaled(self, s: float) -> "Fisheye624":
        p = self.p.copy()
        p[0] *= s
        p[1] = s * (p[1] + 0.5) - 0.5
        p[2] = s * (p[2] + 0.5) - 0.5
        return replace(self, params=tuple(p), width=int(round(self.width * s)), height=int(round(self.height * s)),
                       valid_radius=self.valid_radius * s)

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Camera points ``(N, 3)`` -> pixels ``(N, 2)`` and a validity mask (z > 0, inside valid radius)."""
        p = self.p
        f, cx, cy, k, tp, sp = p[0], p[1], p[2], p[3:9], p[9:11], p[11:15]
        z = pts[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            ab = pts[:, :2] / z[:, None]
        r = np.linalg.norm(ab, axis=1)
        th = np.arctan(r)
        th2 = th * th
        poly = np.ones_like(th)
        t2i = th2.copy()
        for i in range(6):
            poly += k[i] * t2i
            t2i *= th2
        with np.errstate(divide="ignore", invalid="ignore"):
            th_div_r = np.where(r < 1e-12, 1.0, th / r)
        xr = (poly * th_div_r)[:, None] * ab
        rr = (xr ** 2).sum(1)
        uvd = xr + 2 * (xr @ tp)[:, None] * xr + rr[:, None] * tp[None]
        uvd[:, 0] += sp[0] * rr + sp[1] * rr * rr
        uvd[:, 1] += sp[2] * rr + sp[3] * rr * rr
        uv = f * uvd + np.array([cx, cy])
        valid = (z > 1e-9) & (np.linalg.norm(uv - np.array([cx, cy]), axis=1) <= self.valid_radius)
        valid &= np.isfinite(uv).all(1)
        return uv, valid

    def unproject(self, uv: np.ndarray, iters: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """Pixels ``(N, 2)`` -> unit camera rays ``(N, 3)`` and a validity mask (inside valid radius)."""
        p = self.p
        f, cx, cy, k, tp, sp = p[0], p[1], p[2], p[3:9], p[9:11], p[11:15]
        target = (uv - np.array([cx, cy])) / f
        x = target.copy()
        for _ in range(iters):  # Newton on the tangential + thin-prism terms
            rr = (x ** 2).sum(1)
            xp = x @ tp
            est = x + 2 * xp[:, None] * x + rr[:, None] * tp[None]
            est[:, 0] += sp[0] * rr + sp[1] * rr * rr
            est[:, 1] += sp[2] * rr + sp[3] * rr * rr
            J = np.tile(np.eye(2), (len(x), 1, 1)) * (1 + 2 * xp)[:, None, None]
            J += 2 * x[:, :, None] * tp[None, None, :] + 2 * tp[None, :, None] * x[:, None, :]
            g0 = 2 * sp[0] + 4 * sp[1] * rr
            g1 = 2 * sp[2] + 4 * sp[3] * rr
            J[:, 0, :] += g0[:, None] * x
            J[:, 1, :] += g1[:, None] * x
            x = x + np.linalg.solve(J, (target - est)[:, :, None])[:, :, 0]
        thd = np.linalg.norm(x, axis=1)
        th = thd.copy()
        for _ in range(iters):  # Newton on theta_d = theta * poly(theta^2)
            th2 = th * th
            poly = np.ones_like(th)
            dpoly = np.ones_like(th)
            t2i = th2.copy()
            for i in range(6):
                poly += k[i] * t2i
                dpoly += (2 * i + 3) * k[i] * t2i
                t2i *= th2
            step = (thd - th * poly) / np.where(np.abs(dpoly) < 1e-12, 1e-12, dpoly)
            th = np.clip(th + step, 0.0, 0.999 * math.pi / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = np.where(thd[:, None] > 1e-12, x / thd[:, None], 0.0)
        rays = np.concatenate([np.sin(th)[:, None] * phi, np.cos(th)[:, None]], axis=1)
        valid = np.linalg.norm(uv - np.array([cx, cy]), axis=1) <= self.valid_radius
        return rays, valid


_ASE_704 = Fisheye624(
    params=(297.6375381033778, 357.6599197217746, 349.1922497127481, 0.3650890375644368, -0.1738082418112771,
            -0.7534945484033189, 2.434788882752295, -2.57786220300886, 0.8788483538598834, 0.0008005198595407136,
            -0.000294237814554143, 0.0, 0.0, 0.0, 0.0),
    width=704, height=704, valid_radius=1415.0 / 4.0,
    T_camera_device=tuple(map(tuple, np.vstack([
        np.hstack([quat_wxyz_to_matrix([0.9441858687689326, 0.32640934382849085, 0.029274992008313648,
                                        0.033361059956531547]),
                   np.array([[-0.007530096566173914], [-0.01090854984158026], [-0.003598063315542823]])]),
        [0, 0, 0, 1.0]]))),
)


def ase_rgb_calibration(size: int = 704) -> Fisheye624:
    """The ASE RGB camera calibration for square images of side ``size`` (704 native; others scaled)."""
    if size < 8:
        raise InputError(f"ASE image size must be >= 8, got {size}")
    return _ASE_704 if size == 704 else _ASE_704.scaled(size / 704.0)


_TRAJ_COLS = ["graph_uid", "tracking_timestamp_us", "utc_timestamp_ns", "tx_world_device", "ty_world_device",
              "tz_world_device", "qx_world_device", "qy_world_device", "qz_world_device", "qw_world_device",
              "device_linear_velocity_x_device", "device_linear_velocity_y_device", "device_linear_velocity_z_device",
              "angular_velocity_x_device", "angular_velocity_y_device", "angular_velocity_z_device",
              "gravity_x_world", "gravity_y_world", "gravity_z_world", "quality_score"]


def read_ase_trajectory(path: str | os.PathLike) -> np.ndarray:
    """``(T, 4, 4)`` T_world_device from an MPS-style trajectory CSV (columns by header name)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ASE trajectory not found: {path}")
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
        head = [h.strip() for h in rows[0]]
        cols = [head.index(c) for c in ("tx_world_device", "ty_world_device", "tz_world_device", "qw_world_device",
                                        "qx_world_device", "qy_world_device", "qz_world_device")]
        out = []
        for r in rows[1:]:
            if not r:
                continue
            v = [float(r[c]) for c in cols]
            T = np.eye(4)
            T[:3, :3] = quat_wxyz_to_matrix(v[3:7])
            T[:3, 3] = v[:3]
            out.append(T)
    except (ValueError, IndexError) as e:
        raise InputError(f"cannot parse ASE trajectory {path}: {e}") from e
    if not out:
        raise InputError(f"ASE trajectory {path} has no poses")
    return np.stack(out)


class AseScene(Scene):
    """An ASE scene folder as a :class:`~threeam.data.types.Scene` of rectified pinhole frames.

    Args:
        scene_dir: the ``<scene_id>`` folder.
        rectified_size: side of the square pinhole output (default: the fisheye image size).
        rectified_hfov_deg: its horizontal FoV (default 90).
        stride: keep every ``stride``-th frame.
        calibration: fisheye calibration (default: ASE camera-rgb scaled to the image size).
    """

    def __init__(self, scene_dir: str | os.PathLike, rectified_size: int | None = None,
                 rectified_hfov_deg: float = 90.0, stride: int = 1, calibration: Fisheye624 | None = None) -> None:
        self.dir = Path(scene_dir)
        self.name = self.dir.name
        rgb_dir = self.dir / "rgb"
        if not rgb_dir.is_dir():
            raise VideoError(f"ASE rgb folder not found: {rgb_dir}")
        files = sorted(p for p in rgb_dir.iterdir() if p.name.startswith("vignette") and p.suffix.lower() == ".jpg")
        if not files:
            raise VideoError(f"no vignette*.jpg frames in {rgb_dir}")
        if stride < 1:
            raise InputError(f"stride must be >= 1, got {stride}")
        self.numbers = [int(p.stem[len("vignette"):]) for p in files][::stride]
        traj = self.dir / "trajectory.csv"
        if not traj.is_file() and (self.dir / "trajectory.txt").is_file():
            traj = self.dir / "trajectory.txt"
        self.T_world_device = read_ase_trajectory(traj)
        if max(self.numbers) >= len(self.T_world_device):
            raise InputError(f"{traj} has {len(self.T_world_device)} poses, but frame vignette{max(self.numbers):07d}.jpg exists")
        self._calib = calibration
        self.rectified_size = rectified_size
        self.rectified_hfov_deg = rectified_hfov_deg
        self._maps: dict = {}

    def __len__(self) -> int:
        return len(self.numbers)

    def _n(self, i: int) -> int:
        return self.numbers[frame_index(i, len(self.numbers), self.name)]

    def calibration(self, size: int) -> Fisheye624:
        return self._calib if self._calib is not None else ase_rgb_calibration(size)

    def camera_to_world(self, i: int, size: int) -> np.ndarray:
        T_cd = np.asarray(self.calibration(size).T_camera_device)
        return self.T_world_device[self._n(i)] @ invert_rigid(T_cd)

    def raw_frame(self, i: int) -> dict:
        """Stored fisheye arrays: ``rgb (S, S, 3) uint8``, ``range (S, S) float32`` metres along the ray,
        ``ids (S, S) int32``, ``cam_to_world (4, 4)``, ``calibration``."""
        n = self._n(i)
        rgb = read_rgb(self.dir / "rgb" / f"vignette{n:07d}.jpg")
        h, w = rgb.shape[:2]
        if h != w and self._calib is None:
            raise InputError(f"ASE frames are square; vignette{n:07d}.jpg is {w}x{h}")
        rng = read_png16(self.dir / "depth" / f"depth{n:07d}.png", "depth").astype(np.float32) / 1000.0
        ids = read_png16(self.dir / "instances" / f"instance{n:07d}.png", "instance").astype(np.int32)
        for arr, what in ((rng, "depth"), (ids, "instance")):
            if arr.shape != (h, w):
                raise InputError(f"{self.dir}: {what} of frame {n} is {arr.shape}, rgb is {(h, w)}")
        return {"rgb": rgb, "range": rng, "ids": ids, "cam_to_world": self.camera_to_world(i, w),
                "calibration": self.calibration(w)}

    def _rect_map(self, size: int):
        key = size
        if key not in self._maps:
            S = self.rectified_size or size
            f = (S / 2.0) / math.tan(math.radians(self.rectified_hfov_deg) / 2.0)
            K = np.array([[f, 0, (S - 1) / 2.0], [0, f, (S - 1) / 2.0], [0, 0, 1.0]])
            v, u = np.meshgrid(np.arange(S, dtype=np.float64), np.arange(S, dtype=np.float64), indexing="ij")
            rays = np.stack([(u - K[0, 2]) / f, (v - K[1, 2]) / f, np.ones_like(u)], -1).reshape(-1, 3)
            uv, valid = self.calibration(size).project(rays)
            zfac = 1.0 / np.linalg.norm(rays, axis=1)  # z-depth = range * cos(angle to the optical axis)
            self._maps[key] = (K, S, uv, valid, zfac)
        return self._maps[key]

    def instance_ids(self, i: int) -> np.ndarray:
        return self.frame(i).instance_ids

    def frame(self, i: int) -> PosedFrame:
        raw = self.raw_frame(i)
        size = raw["rgb"].shape[1]
        K, S, uv, valid, zfac = self._rect_map(size)
        h, w = raw["rgb"].shape[:2]
        ui = np.clip(np.round(uv[:, 0]), 0, w - 1).astype(np.int64)
        vi = np.clip(np.round(uv[:, 1]), 0, h - 1).astype(np.int64)
        ok = valid & (uv[:, 0] >= -0.5) & (uv[:, 0] < w - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < h - 0.5)
        ids = np.where(ok, raw["ids"][vi, ui], 0).astype(np.int32).reshape(S, S)
        depth = np.where(ok, raw["range"][vi, ui] * zfac, 0).astype(np.float32).reshape(S, S)
        # bilinear RGB
        x = np.clip(np.nan_to_num(uv[:, 0]), 0, w - 1)
        y = np.clip(np.nan_to_num(uv[:, 1]), 0, h - 1)
        x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
        x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        im = raw["rgb"].astype(np.float32)
        col = (im[y0, x0] * (1 - fx) * (1 - fy) + im[y0, x1] * fx * (1 - fy)
               + im[y1, x0] * (1 - fx) * fy + im[y1, x1] * fx * fy)
        rgb = np.where(ok[:, None], np.round(col), 0).astype(np.uint8).reshape(S, S, 3)
        return PosedFrame(rgb=rgb, depth=depth, K=K, cam_to_world=raw["cam_to_world"], instance_ids=ids,
                          name=f"vignette{self._n(i):07d}")

    def object_ids(self) -> list[int]:
        p = self.dir / "object_instances_to_classes.json"
        if p.is_file():
            m = read_json(p, "object_instances_to_classes.json")
            return sorted(int(k) for k in m if int(k) != 0)
        ids: set[int] = set()
        for i in range(len(self)):
            ids.update(int(x) for x in np.unique(self.raw_frame(i)["ids"]))
        ids.discard(0)
        return sorted(ids)

    def mesh(self) -> SceneMesh | None:
        return None


def write_ase_scene(scene, scene_dir: str | os.PathLike, size: int = 704, device: str = "cpu") -> Path:
    """Render a synthetic scene's trajectory with the ASE fisheye camera and write the ASE layout.

    Args:
        scene: an :class:`~threeam.data.types.InMemoryScene` from :func:`threeam.data.synth.generate_scene`
            (uses ``meta["primitives"]`` and each frame's ``cam_to_world`` as the RGB camera pose).
        size: fisheye image side (704 = native ASE; other sizes use the scaled calibration).
    """
    from threeam.data.render import render_rays

    prims = scene.meta.get("primitives") if hasattr(scene, "meta") else None
    if prims is None:
        raise InputError("write_ase_scene needs a synthetic scene (meta['primitives']) to render fisheye views")
    scene_dir = Path(scene_dir)
    cal = ase_rgb_calibration(size)
    v, u = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    rays, valid = cal.unproject(np.stack([u.reshape(-1), v.reshape(-1)], -1))
    T_cd = np.asarray(cal.T_camera_device)
    rows = []
    for i in range(len(scene)):
        c2w = scene.frame(i).cam_to_world
        dirs = rays @ c2w[:3, :3].T
        col, t, ids, _ = render_rays(prims, c2w[:3, 3], dirs, device=device)
        col = (col.cpu().numpy() * 255 + 0.5).astype(np.uint8)
        t, ids = t.cpu().numpy(), ids.cpu().numpy()
        col[~valid] = 0
        t[~valid] = 0
        ids[~valid] = 0
        write_jpg(scene_dir / "rgb" / f"vignette{i:07d}.jpg", col.reshape(size, size, 3))
        write_png16(scene_dir / "depth" / f"depth{i:07d}.png", depth_to_mm(t.reshape(size, size)))
        write_png16(scene_dir / "instances" / f"instance{i:07d}.png", ids.reshape(size, size).astype(np.uint16))
        T_wd = c2w @ T_cd
        q = matrix_to_quat_wxyz(T_wd[:3, :3])
        vals = [0, i * 100000, i * 100000000, *T_wd[:3, 3], q[1], q[2], q[3], q[0], 0, 0, 0, 0, 0, 0, 0, 0, -9.81, 1.0]
        rows.append(",".join(f"{x:.17g}" if isinstance(x, float) else str(x) for x in vals))
    atomic_write_text(scene_dir / "trajectory.csv", ",".join(_TRAJ_COLS) + "\n" + "\n".join(rows) + "\n")
    objs = {str(o["id"]): o["shape"] for o in scene.meta.get("objects", [])}
    write_json(scene_dir / "object_instances_to_classes.json", objs)
    return scene_dir
