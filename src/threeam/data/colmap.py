"""COLMAP text model (cameras.txt / images.txt / points3D.txt) read/write.

COLMAP's image coordinates put the *corner* of the top-left pixel at (0, 0), so its principal
point is OpenCV's + 0.5. :func:`colmap_camera_to_K` and :func:`K_to_colmap_params` convert.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from threeam.data.geometry import invert_rigid, matrix_to_quat_wxyz, quat_wxyz_to_matrix
from threeam.errors import InputError
from threeam.io.atomic import atomic_write_text

__all__ = ["ColmapCamera", "ColmapImage", "read_cameras_txt", "read_images_txt", "write_colmap_model",
           "colmap_camera_to_K"]

# model name -> number of params
_MODELS = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8,
           "OPENCV_FISHEYE": 8, "FULL_OPENCV": 12, "SIMPLE_RADIAL_FISHEYE": 4, "RADIAL_FISHEYE": 5,
           "THIN_PRISM_FISHEYE": 12, "FOV": 5}


@dataclass
class ColmapCamera:
    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass
class ColmapImage:
    image_id: int
    world_to_cam: np.ndarray  # (4, 4)
    camera_id: int
    name: str


def _data_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise InputError(f"COLMAP {what} not found: {path}")
    try:
        text = path.read_text()
    except Exception as e:
        raise InputError(f"cannot read {path}: {e}") from e
    return text.splitlines()


def read_cameras_txt(path: str | os.PathLike) -> dict[int, ColmapCamera]:
    path = Path(path)
    cams = {}
    for ln, line in enumerate(_data_lines(path, "cameras.txt"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        try:
            cid, model, w, h = int(tok[0]), tok[1], int(tok[2]), int(tok[3])
            params = np.array([float(x) for x in tok[4:]])
        except (IndexError, ValueError) as e:
            raise InputError(f"{path}:{ln}: malformed camera line: {line!r}") from e
        if model in _MODELS and len(params) != _MODELS[model]:
            raise InputError(f"{path}:{ln}: {model} needs {_MODELS[model]} params, got {len(params)}")
        cams[cid] = ColmapCamera(cid, model, w, h, params)
    if not cams:
        raise InputError(f"{path} lists no camera")
    return cams


def read_images_txt(path: str | os.PathLike) -> dict[str, ColmapImage]:
    """Images by NAME. Each image has two lines; the second (2D points) may be empty."""
    path = Path(path)
    lines = [l for l in _data_lines(path, "images.txt") if not l.startswith("#")]
    out = {}
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
            continue
        tok = line.split()
        try:
            iid = int(tok[0])
            q = np.array([float(x) for x in tok[1:5]])
            t = np.array([float(x) for x in tok[5:8]])
            cid = int(tok[8])
            name = " ".join(tok[9:])
        except (IndexError, ValueError) as e:
            raise InputError(f"{path}: malformed image line: {line!r}") from e
        T = np.eye(4)
        T[:3, :3] = quat_wxyz_to_matrix(q)
        T[:3, 3] = t
        out[name] = ColmapImage(iid, T, cid, name)
        i += 2  # skip the POINTS2D line
    return out


def colmap_camera_to_K(cam: ColmapCamera) -> np.ndarray:
    """Pinhole part of a COLMAP camera as an OpenCV K (principal point shifted by -0.5).

    Distortion parameters are ignored (ScanNet++ iPhone frames are used as undistorted, as the
    ScanNet++ toolkit does; fisheye DSLR frames must be read from the undistorted images)."""
    p = cam.params
    if cam.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "FOV"):
        fx = fy = p[0]
        cx, cy = p[1], p[2]
    elif cam.model in ("PINHOLE", "OPENCV", "OPENCV_FISHEYE", "FULL_OPENCV", "THIN_PRISM_FISHEYE"):
        fx, fy, cx, cy = p[:4]
    else:
        raise InputError(f"unsupported COLMAP camera model {cam.model!r}")
    return np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1.0]])


def K_to_colmap_params(K: np.ndarray, model: str) -> list[float]:
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5
    extra = {"PINHOLE": 0, "OPENCV": 4, "OPENCV_FISHEYE": 4}[model]
    return [fx, fy, cx, cy] + [0.0] * extra


def write_colmap_model(folder: str | os.PathLike, K: np.ndarray, width: int, height: int,
                       names: list[str], cam_to_worlds: list[np.ndarray | None], model: str = "OPENCV") -> None:
    """Write cameras.txt (one shared camera), images.txt (frames whose pose is None are left out,
    as COLMAP does for unregistered frames) and an empty points3D.txt, atomically."""
    folder = Path(folder)
    params = " ".join(f"{x:.17g}" for x in K_to_colmap_params(K, model))
    atomic_write_text(folder / "cameras.txt",
                      "# Camera list with one line of data per camera:\n"
                      "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                      f"# Number of cameras: 1\n1 {model} {width} {height} {params}\n")
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
             "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
    posed = [(n, T) for n, T in zip(names, cam_to_worlds) if T is not None]
    lines.append(f"# Number of images: {len(posed)}, mean observations per image: 0")
    for i, (name, c2w) in enumerate(posed, 1):
        w2c = invert_rigid(c2w)
        q = matrix_to_quat_wxyz(w2c[:3, :3])
        t = w2c[:3, 3]
        lines.append(f"{i} " + " ".join(f"{x:.17g}" for x in (*q, *t)) + f" 1 {name}")
        lines.append("")
    atomic_write_text(folder / "images.txt", "\n".join(lines) + "\n")
    atomic_write_text(folder / "points3D.txt",
                      "# 3D point list with one line of data per point:\n"
                      "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
                      "# Number of points: 0, mean track length: 0\n")
