"""Replica as rendered by Semantic-NeRF (Habitat-Sim): reader and a writer of the same layout.

Layout (one folder per sequence, e.g. ``room_0/Sequence_1``)::

    <seq>/rgb/rgb_{i}.png                              # 8-bit RGB, i = 0, 1, ... (no zero padding)
    <seq>/depth/depth_{i}.png                          # uint16 z-depth in millimetres
    <seq>/semantic_instance/semantic_instance_{i}.png  # uint16 Habitat object ids (0 = none)
    <seq>/semantic_class/semantic_class_{i}.png        # uint16 class ids (optional)
    <seq>/traj_w_c.txt                                 # one row-major flattened 4x4 T_wc per line

Camera: OpenCV axes (Semantic-NeRF's ``convention: opencv``), square pixels with a 90 degree
horizontal FoV: ``fx = fy = W / 2 / tan(45 deg)``, ``cx = (W - 1) / 2``, ``cy = (H - 1) / 2``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from threeam.data._io import depth_to_mm, read_png16, read_rgb, write_png16, write_png_rgb
from threeam.data.geometry import intrinsics_from_hfov
from threeam.data.types import PosedFrame, Scene, SceneMesh, frame_index
from threeam.errors import InputError, VideoError
from threeam.io.atomic import atomic_write_text

__all__ = ["ReplicaScene", "write_replica_sequence", "REPLICA_HFOV_DEG"]

REPLICA_HFOV_DEG = 90.0
_NUM = re.compile(r"_(\d+)\.png$")


class ReplicaScene(Scene):
    """A Semantic-NeRF Replica sequence as a :class:`~threeam.data.types.Scene`.

    Args:
        seq_dir: the sequence folder (holding ``rgb/``, ``depth/``, ``semantic_instance/``, ``traj_w_c.txt``).
        stride: keep every ``stride``-th frame.
        hfov_deg: horizontal FoV used to build K (Semantic-NeRF renders with 90 degrees).
    """

    def __init__(self, seq_dir: str | os.PathLike, stride: int = 1, hfov_deg: float = REPLICA_HFOV_DEG) -> None:
        self.dir = Path(seq_dir)
        self.name = f"{self.dir.parent.name}/{self.dir.name}" if self.dir.parent.name else self.dir.name
        rgb_dir = self.dir / "rgb"
        if not rgb_dir.is_dir():
            raise VideoError(f"Replica rgb folder not found: {rgb_dir}")
        idx = []
        for p in rgb_dir.iterdir():
            m = _NUM.search(p.name)
            if m and p.name.startswith("rgb_"):
                idx.append(int(m.group(1)))
        if not idx:
            raise VideoError(f"no rgb_<i>.png frames in {rgb_dir}")
        if stride < 1:
            raise InputError(f"stride must be >= 1, got {stride}")
        self.indices = sorted(idx)[::stride]
        traj = self.dir / "traj_w_c.txt"
        if not traj.is_file():
            raise InputError(f"Replica trajectory not found: {traj}")
        try:
            T = np.loadtxt(traj, ndmin=2)
        except Exception as e:
            raise InputError(f"cannot parse {traj}: {e}") from e
        if T.shape[1] != 16:
            raise InputError(f"{traj}: expected 16 numbers per line (flattened 4x4), got {T.shape[1]}")
        self.poses = T.reshape(-1, 4, 4)
        if max(self.indices) >= len(self.poses):
            raise InputError(f"{traj} has {len(self.poses)} poses but frame rgb_{max(self.indices)}.png exists")
        self.hfov_deg = hfov_deg

    def __len__(self) -> int:
        return len(self.indices)

    def _i(self, i: int) -> int:
        return self.indices[frame_index(i, len(self.indices), self.name)]

    def instance_ids(self, i: int) -> np.ndarray:
        k = self._i(i)
        return read_png16(self.dir / "semantic_instance" / f"semantic_instance_{k}.png", "instance").astype(np.int32)

    def frame(self, i: int) -> PosedFrame:
        k = self._i(i)
        rgb = read_rgb(self.dir / "rgb" / f"rgb_{k}.png")
        h, w = rgb.shape[:2]
        dpath = self.dir / "depth" / f"depth_{k}.png"
        depth = read_png16(dpath, "depth").astype(np.float32) / 1000.0 if dpath.is_file() else None
        ids = self.instance_ids(i)
        for arr, what in ((depth, "depth"), (ids, "instance")):
            if arr is not None and arr.shape != (h, w):
                raise InputError(f"{self.dir}: {what} of frame {k} is {arr.shape}, rgb is {(h, w)}")
        return PosedFrame(rgb=rgb, depth=depth, K=intrinsics_from_hfov(w, h, self.hfov_deg),
                          cam_to_world=self.poses[k].copy(), instance_ids=ids, name=f"rgb_{k}")

    def object_ids(self) -> list[int]:
        ids: set[int] = set()
        for i in range(len(self)):
            ids.update(int(x) for x in np.unique(self.instance_ids(i)))
        ids.discard(0)
        return sorted(ids)

    def mesh(self) -> SceneMesh | None:
        return None


def write_replica_sequence(scene: Scene, seq_dir: str | os.PathLike) -> Path:
    """Write a posed scene in the Semantic-NeRF Replica layout (frames must use the 90-degree K)."""
    seq_dir = Path(seq_dir)
    rows = []
    for i in range(len(scene)):
        f = scene.frame(i)
        h, w = f.size
        if not np.allclose(f.K, intrinsics_from_hfov(w, h, REPLICA_HFOV_DEG)):
            raise InputError(f"frame {i}: Replica (Semantic-NeRF) frames need the 90-degree K "
                             f"{intrinsics_from_hfov(w, h, REPLICA_HFOV_DEG).tolist()}, got {f.K.tolist()}")
        if f.cam_to_world is None or f.depth is None or f.instance_ids is None:
            raise InputError(f"frame {i}: Replica needs pose, depth and instance ids")
        if f.instance_ids.max(initial=0) > 65535 or f.instance_ids.min(initial=0) < 0:
            raise InputError(f"frame {i}: instance ids must fit in uint16")
        write_png_rgb(seq_dir / "rgb" / f"rgb_{i}.png", f.rgb)
        write_png16(seq_dir / "depth" / f"depth_{i}.png", depth_to_mm(f.depth))
        write_png16(seq_dir / "semantic_instance" / f"semantic_instance_{i}.png", f.instance_ids)
        write_png16(seq_dir / "semantic_class" / f"semantic_class_{i}.png", (f.instance_ids > 0).astype(np.uint16))
        rows.append(" ".join(f"{x:.17g}" for x in f.cam_to_world.reshape(-1)))
    atomic_write_text(seq_dir / "traj_w_c.txt", "\n".join(rows) + "\n")
    return seq_dir
