"""Pictures of a 3D segmentation: the mesh coloured by instance, as a PLY and as PNG views.

Views are rendered with the z-buffer rasteriser of `threeam.data.mesh.rasterize` (CPU torch, no
GL): a top-down view and oblique "dollhouse" views from around the scene, looking down at
``elevation_deg``. Faces turned away from the camera are culled, so walls between the camera and
the room (seen from behind) disappear; surfaces are shaded by their normal. The mesh is assumed
z-up (ScanNet and generated scenes are).

Colours: each instance gets a distinct colour (by rank: instance 1 is the most confident);
vertices of no instance keep a faded version of the mesh's own colour.
"""
from __future__ import annotations

import colorsys
import math
import os
from pathlib import Path
from typing import Optional

import numpy as np

from threeam.data.geometry import invert_rigid, look_at
from threeam.io.atomic import atomic_path

__all__ = ["instance_palette", "instance_vertex_colors", "view_cameras", "render_mesh_view", "write_instance_ply",
           "write_views"]


def instance_palette(n: int) -> np.ndarray:
    """``(n + 1, 3)`` uint8: row 0 grey, then n well-separated saturated colours (golden-ratio hues)."""
    out = np.zeros((n + 1, 3), dtype=np.uint8)
    out[0] = (160, 160, 160)
    for k in range(n):
        h = (0.1 + k * 0.618033988749895) % 1.0
        s = 0.65 + 0.3 * ((k // 7) % 2)
        v = 0.95 - 0.25 * ((k // 3) % 2)
        out[k + 1] = np.round(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    return out


def instance_vertex_colors(labels: np.ndarray, base_colors: Optional[np.ndarray] = None,
                           fade: float = 0.65) -> np.ndarray:
    """``(V, 3)`` uint8: instance colour where ``labels > 0`` (1..K), else the base colour faded to grey."""
    labels = np.asarray(labels, dtype=np.int64)
    pal = instance_palette(int(labels.max(initial=0)))
    if base_colors is None:
        bg = np.full((len(labels), 3), 150.0)
    else:
        bg = (1 - fade) * np.asarray(base_colors, dtype=np.float64) + fade * 150.0
    out = np.round(bg).astype(np.uint8)
    m = labels > 0
    out[m] = pal[labels[m]]
    return out


def view_cameras(vertices: np.ndarray, height: int = 480, width: int = 640, n_oblique: int = 3,
                 elevation_deg: float = 55.0, hfov_deg: float = 60.0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(name, K (3, 3), cam_to_world (4, 4))]``: ``top`` and ``n_oblique`` views around the scene."""
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = np.percentile(v, 1, axis=0), np.percentile(v, 99, axis=0)
    center = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-3)
    f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
    vfov = 2 * math.atan((height / 2) / f)
    dist = 1.05 * radius / math.sin(min(vfov, math.radians(hfov_deg)) / 2)
    cams = [("top", K, look_at(center + np.array([0, 0, dist]), center, up=np.array([0.0, 1.0, 0.0])))]
    el = math.radians(elevation_deg)
    for k in range(n_oblique):
        az = math.radians(45.0 + 360.0 * k / max(n_oblique, 1))
        eye = center + dist * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        cams.append((f"view{k + 1}", K, look_at(eye, center)))
    return cams


def render_mesh_view(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray, K: np.ndarray,
                     cam_to_world: np.ndarray, height: int, width: int, cull_backfaces: bool = True,
                     background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """``(H, W, 3)`` uint8 image of a vertex-coloured mesh (flat face colours, normal shading)."""
    from threeam.data.mesh import rasterize

    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    n = np.cross(b - a, c - a)
    norm = np.linalg.norm(n, axis=1)
    keep = norm > 0
    if cull_backfaces:
        eye = cam_to_world[:3, 3]
        keep &= ((eye - (a + b + c) / 3) * n).sum(1) > 0
    idx = np.nonzero(keep)[0]
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = background
    if idx.size == 0:
        return img
    _, face = rasterize(v, f[idx], K, invert_rigid(cam_to_world), height, width, near=1e-3, far=1e4)
    hit = face >= 0
    fi = idx[face[hit]]
    col = np.asarray(colors, dtype=np.float64)[f[fi]].mean(1)
    nn = n[fi] / norm[fi, None]
    view_dir = cam_to_world[:3, 2]
    light = np.array([0.3, 0.4, 0.87])
    shade = 0.35 + 0.4 * np.abs(nn @ view_dir) + 0.25 * np.abs(nn @ light)
    img[hit] = np.clip(col * shade[:, None], 0, 255).astype(np.uint8)
    return img


def write_instance_ply(path: str | os.PathLike, vertices: np.ndarray, faces: Optional[np.ndarray],
                       labels: np.ndarray, base_colors: Optional[np.ndarray] = None) -> Path:
    """Binary PLY of the mesh with instance colours and an ``instance`` property (0 = none), atomically."""
    from threeam.data.mesh import write_ply

    write_ply(path, np.asarray(vertices, dtype=np.float32), faces,
              colors=instance_vertex_colors(labels, base_colors), labels=np.asarray(labels, dtype=np.int32),
              label_name="instance")
    return Path(path)


def write_views(folder: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray,
                base_colors: Optional[np.ndarray] = None, height: int = 480, width: int = 640,
                n_oblique: int = 3) -> list[Path]:
    """Render the instance-coloured mesh from `view_cameras` and write ``<name>.png`` files atomically."""
    from PIL import Image

    colors = instance_vertex_colors(labels, base_colors)
    paths = []
    for name, K, c2w in view_cameras(vertices, height, width, n_oblique):
        img = render_mesh_view(vertices, faces, colors, K, c2w, height, width)
        p = Path(folder) / f"{name}.png"
        with atomic_path(p) as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
        paths.append(p)
    return paths
