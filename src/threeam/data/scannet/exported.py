"""The exported-frames layout of ScanNet (what ``SensReader/python/reader.py`` writes), read lazily.

Layout (``{i}`` = the raw frame index in the ``.sens`` stream, unpadded, from 0)::

    <frames>/color/{i}.jpg          # colour, usually 1296x968
    <frames>/depth/{i}.png          # uint16 depth in mm (depth_shift 1000), usually 640x480
    <frames>/pose/{i}.txt           # 4x4 camera-to-world, 4 text rows (may be -inf for invalid frames)
    <frames>/intrinsic/intrinsic_color.txt, extrinsic_color.txt, intrinsic_depth.txt, extrinsic_depth.txt

A frame is listed when its colour, depth and pose files all exist and its pose is finite.
A ``frame_skip`` export (0, s, 2s, ...) is read as is: the raw indices keep their gaps.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from threeam.data._io import read_png16, read_rgb, write_jpg, write_png16
from threeam.errors import InputError, VideoError
from threeam.io.atomic import atomic_write_text

__all__ = ["ExportedFrames", "write_exported_frames", "export_sens", "read_matrix_txt", "write_matrix_txt",
           "is_exported_layout"]

_STEM = re.compile(r"^(\d+)$")
_COLOR_EXT = (".jpg", ".jpeg", ".png")


def read_matrix_txt(path: str | os.PathLike, shape: tuple[int, int] = (4, 4)) -> np.ndarray:
    """Read a whitespace-separated text matrix (e.g. a pose or intrinsic file) as float64 ``shape``.

    Non-finite entries (``-inf``, ``nan``) are kept. Raises InputError naming the file when it is
    missing or does not hold ``shape[0] * shape[1]`` numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"matrix file not found: {path}")
    try:
        vals = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as e:
        raise InputError(f"{path}: not a text matrix of numbers ({e})") from e
    if vals.size != shape[0] * shape[1]:
        raise InputError(f"{path}: expected {shape[0]}x{shape[1]} numbers, found {vals.size}")
    return vals.reshape(shape)


def write_matrix_txt(path: str | os.PathLike, M: np.ndarray) -> None:
    """Write a matrix as text rows (``%f``, as the SensReader export does), atomically."""
    M = np.atleast_2d(np.asarray(M, dtype=np.float64))
    atomic_write_text(path, "".join(" ".join(f"{v:f}" for v in row) + "\n" for row in M))


def is_exported_layout(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds ``color/``, ``depth/`` and ``pose/`` subfolders."""
    folder = Path(folder)
    return all((folder / d).is_dir() for d in ("color", "depth", "pose"))


def _index(folder: Path, exts: tuple[str, ...]) -> dict[int, Path]:
    out: dict[int, Path] = {}
    if not folder.is_dir():
        return out
    for p in folder.iterdir():
        m = _STEM.match(p.stem)
        if m and p.suffix.lower() in exts:
            out.setdefault(int(m.group(1)), p)
    return out


class ExportedFrames:
    """Frames of one scene in the exported layout.

    Args:
        folder: the folder holding ``color/``, ``depth/``, ``pose/`` (and ``intrinsic/``).
        depth_shift: stored depth units per metre (1000 = millimetres).
        K_color / K_depth: ``(3, 3)`` intrinsics to use when ``intrinsic/`` is absent (e.g. from the
            scene's ``<id>.txt``); ``intrinsic/`` files win when present.

    Attributes:
        frame_ids: sorted raw indices of the usable frames (all files present, finite pose).
        K_color / K_depth: ``(3, 3)`` float64.
    """

    def __init__(self, folder: str | os.PathLike, depth_shift: float = 1000.0,
                 K_color: np.ndarray | None = None, K_depth: np.ndarray | None = None) -> None:
        self.folder = Path(folder)
        if not is_exported_layout(self.folder):
            raise VideoError(f"{self.folder} is not an exported ScanNet frame folder "
                             f"(needs color/, depth/ and pose/)")
        if not depth_shift > 0:
            raise InputError(f"depth_shift must be > 0, got {depth_shift}")
        self.depth_shift = float(depth_shift)
        self._color = _index(self.folder / "color", _COLOR_EXT)
        self._depth = _index(self.folder / "depth", (".png",))
        self._pose = _index(self.folder / "pose", (".txt",))
        if not self._color:
            raise VideoError(f"no color/<i>.jpg frames in {self.folder}")
        intr = self.folder / "intrinsic"
        self.K_color = self._intrinsic(intr / "intrinsic_color.txt", K_color, "colour")
        self.K_depth = self._intrinsic(intr / "intrinsic_depth.txt", K_depth, "depth")
        ids, poses = [], {}
        for i in sorted(self._color):
            if i not in self._depth or i not in self._pose:
                continue
            T = read_matrix_txt(self._pose[i])
            if np.isfinite(T).all():
                ids.append(i)
                poses[i] = T
        self.frame_ids: list[int] = ids
        self._poses = poses
        self.skipped: list[int] = sorted(set(self._color) - set(ids))

    def _intrinsic(self, path: Path, fallback: np.ndarray | None, what: str) -> np.ndarray:
        if path.is_file():
            return read_matrix_txt(path)[:3, :3].copy()
        if fallback is not None:
            return np.asarray(fallback, dtype=np.float64)[:3, :3].copy()
        raise InputError(f"{what} intrinsics not found: {path} (and no scene <id>.txt to fall back on)")

    def __len__(self) -> int:
        return len(self.frame_ids)

    def _check(self, frame_id: int) -> int:
        if frame_id not in self._poses:
            raise InputError(f"frame {frame_id} is not a usable frame of {self.folder} "
                             f"({len(self.frame_ids)} frames, ids {self.frame_ids[:3]}...)")
        return int(frame_id)

    def color(self, frame_id: int) -> np.ndarray:
        """``(H, W, 3)`` uint8 colour of raw frame ``frame_id``."""
        return read_rgb(self._color[self._check(frame_id)])

    def depth(self, frame_id: int) -> np.ndarray:
        """``(h, w)`` float32 depth in metres (0 = invalid) of raw frame ``frame_id``."""
        d = read_png16(self._depth[self._check(frame_id)], "depth")
        return (d.astype(np.float32) / np.float32(self.depth_shift)).astype(np.float32)

    def pose(self, frame_id: int) -> np.ndarray:
        """``(4, 4)`` float64 camera-to-world of raw frame ``frame_id``."""
        return self._poses[self._check(frame_id)].copy()


def write_exported_frames(folder: str | os.PathLike, frame_ids: Sequence[int], colors: Sequence[np.ndarray],
                          depths_mm: Sequence[np.ndarray], poses: Sequence[np.ndarray], K_color: np.ndarray,
                          K_depth: np.ndarray) -> None:
    """Write frames in the exported layout (JPEG colour, 16-bit PNG depth, text poses/intrinsics).

    Args:
        frame_ids: raw frame indices used as file names.
        colors / depths_mm / poses: per frame ``(H, W, 3)`` uint8, ``(h, w)`` uint16, ``(4, 4)``.
        K_color / K_depth: ``(3, 3)`` or ``(4, 4)``; extrinsics are written as identity.
    """
    folder = Path(folder)
    if not (len(frame_ids) == len(colors) == len(depths_mm) == len(poses)):
        raise InputError("write_exported_frames: frame_ids, colors, depths_mm and poses differ in length")
    for name, K in (("intrinsic_color", K_color), ("intrinsic_depth", K_depth)):
        M = np.eye(4)
        K = np.asarray(K, dtype=np.float64)
        M[:K.shape[0], :K.shape[1]] = K
        write_matrix_txt(folder / "intrinsic" / f"{name}.txt", M)
    for name in ("extrinsic_color", "extrinsic_depth"):
        write_matrix_txt(folder / "intrinsic" / f"{name}.txt", np.eye(4))
    for i, c, d, T in zip(frame_ids, colors, depths_mm, poses):
        write_jpg(folder / "color" / f"{int(i)}.jpg", c)
        write_png16(folder / "depth" / f"{int(i)}.png", d)
        write_matrix_txt(folder / "pose" / f"{int(i)}.txt", T)


def export_sens(sens, folder: str | os.PathLike, frame_skip: int = 1) -> list[int]:
    """Export a :class:`~threeam.data.scannet.sens.SensFile` to the exported layout, like
    ``reader.py --export_color_images --export_depth_images --export_poses --export_intrinsics``:
    raw frames ``0, s, 2s, ...`` (invalid poses included, written as they are). Returns the ids written."""
    if frame_skip < 1:
        raise InputError(f"frame_skip must be >= 1, got {frame_skip}")
    ids = list(range(0, len(sens), frame_skip))
    colors, depths, poses = [], [], []
    for i in ids:
        colors.append(sens.color(i))
        depths.append(sens.depth_raw(i))
        poses.append(sens.pose(i))
    write_exported_frames(folder, ids, colors, depths, poses, sens.header.intrinsic_color,
                          sens.header.intrinsic_depth)
    return ids
