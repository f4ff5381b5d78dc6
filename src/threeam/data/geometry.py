"""Camera geometry helpers (numpy, float64). OpenCV camera axes: x right, y down, z forward."""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "intrinsics_from_hfov",
    "look_at",
    "quat_wxyz_to_matrix",
    "matrix_to_quat_wxyz",
    "invert_rigid",
    "project_into_view",
    "seen_by_depth_frame",
    "pixel_rays",
    "backproject",
    "transform_points",
    "project_points",
]


def intrinsics_from_hfov(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Pinhole K ``(3, 3)`` with square pixels, horizontal FoV ``hfov_deg`` and centred principal point
    ``((W - 1) / 2, (H - 1) / 2)`` (pixel centres at integer coordinates)."""
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """Camera-to-world ``(4, 4)`` for a camera at ``eye`` looking at ``target`` with world ``up`` (z-up).

    The camera's z axis points at the target, x to the right and y down (OpenCV)."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    n = np.linalg.norm(right)
    if n < 1e-9:  # looking straight up/down: pick any right vector
        right = np.cross(forward, np.array([1.0, 0.0, 0.0]))
        n = np.linalg.norm(right)
    right /= n
    down = np.cross(forward, right)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = right, down, forward, eye
    return T


def quat_wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` -> rotation ``(3, 3)`` (normalises first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat_wxyz(R: np.ndarray) -> np.ndarray:
    """Rotation ``(3, 3)`` -> unit quaternion ``(w, x, y, z)`` with ``w >= 0``."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2
        q = [(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif R[1, 1] > R[2, 2]:
        s = math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def invert_rigid(T: np.ndarray) -> np.ndarray:
    """Inverse of a ``(4, 4)`` rigid transform."""
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def pixel_rays(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """Camera-frame ray per pixel with z = 1: ``(H, W, 3)`` float64 = ``K^-1 [u, v, 1]``."""
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    x = (u - K[0, 2] - K[0, 1] * (v - K[1, 2]) / K[1, 1]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def backproject(depth: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray | None = None,
                pixels: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Lift pixels with z-depth to 3D.

    Args:
        depth: ``(H, W)`` z-depth in metres.
        K: ``(3, 3)`` intrinsics.
        cam_to_world: optional ``(4, 4)``; when given, points are returned in world coordinates.
        pixels: optional ``(rows, cols)`` integer index arrays; default all pixels.
    Returns:
        ``(N, 3)`` float64 points (camera or world frame), in ``pixels`` order (row-major for all).
    """
    if pixels is None:
        rows, cols = np.indices(depth.shape)
        rows, cols = rows.reshape(-1), cols.reshape(-1)
    else:
        rows, cols = pixels
    z = depth[rows, cols].astype(np.float64)
    y = (rows - K[1, 2]) / K[1, 1] * z
    x = (cols - K[0, 2] - K[0, 1] * (rows - K[1, 2]) / K[1, 1]) / K[0, 0] * z
    pts = np.stack([x, y, z], axis=-1)
    if cam_to_world is not None:
        pts = transform_points(cam_to_world, pts)
    return pts


def transform_points(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply ``(4, 4)`` transform to ``(N, 3)`` points."""
    return pts @ T[:3, :3].T + T[:3, 3]


def project_points(K: np.ndarray, pts_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project camera-frame points ``(N, 3)``; returns ``(uv (N, 2) float64, z (N,))``.

    Points with ``z <= 0`` get ``uv = nan``."""
    z = pts_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = pts_cam @ K.T
        uv = uvw[:, :2] / uvw[:, 2:3]
    uv[z <= 0] = np.nan
    return uv, z


def project_into_view(points_world: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray,
                      hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points ``(N, 3)`` in a camera of image size ``hw`` = (H, W).

    Returns ``(uv (N, 2), z (N,), inside (N,) bool)``: pixel coordinates, depth along the camera's
    axis, and whether the point is in front of the camera with its pixel inside the image (pixel
    centres at integers, so ``-0.5 <= u < W - 0.5``)."""
    uv, z = project_points(K, transform_points(invert_rigid(cam_to_world), points_world))
    H, W = hw
    u, v = uv[:, 0], uv[:, 1]
    with np.errstate(invalid="ignore"):
        inside = (z > 1e-6) & np.isfinite(u) & np.isfinite(v) & (u >= -0.5) & (u < W - 0.5) \
            & (v >= -0.5) & (v < H - 0.5)
    return uv, z, inside


def seen_by_depth_frame(points_world: np.ndarray, depth: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray,
                        depth_tol: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which world points ``(N, 3)`` a posed depth frame sees: inside its image (`project_into_view`)
    and not hidden (the frame's depth at the rounded pixel is valid and agrees with the point's
    within ``depth_tol``, relative). Returns ``(seen (N,) bool, rows (N,), cols (N,))``, the pixel
    of each point (meaningful where seen)."""
    H, W = depth.shape
    uv, z, inside = project_into_view(points_world, K, cam_to_world, (H, W))
    cols = np.clip(np.round(np.where(inside, uv[:, 0], 0)).astype(np.int64), 0, W - 1)
    rows = np.clip(np.round(np.where(inside, uv[:, 1], 0)).astype(np.int64), 0, H - 1)
    d = depth[rows, cols]
    seen = inside & (d > 0) & (np.abs(z - d) <= depth_tol * np.maximum(d, 1e-6))
    return seen, rows, cols
