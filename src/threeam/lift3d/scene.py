"""What the lifting pipeline reads: processed frames at one working resolution, and the mesh.

`LiftScene` hides the dataset: a generated scene (`from_synthetic`), a ScanNet scene
(`from_scannet`, over the ScanNet reader) or any object with the same few attributes.

Working resolution: masks, depth and intrinsics must describe the same pixels. When a scene has
depth, everything is processed at the depth map's size (ScanNet: colour 1296x968 is resized to
the 640x480 depth, with the depth intrinsics, as is common practice for ScanNet lifting); without
depth (RGB-only mode), at ``work_long_side`` pixels on the long side.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

from threeam.errors import InputError

__all__ = ["LiftFrame", "LiftMesh", "LiftScene", "from_synthetic", "from_scannet", "render_gt_ids", "resize_rgb", "resize_nearest", "scale_K"]


@dataclass
class LiftFrame:
    """One processed frame.

    Attributes:
        index: the frame's index in the raw stream.
        rgb: ``(H, W, 3)`` uint8 at working resolution.
        depth: ``(H, W)`` float32 z-depth in metres (0 = invalid), or None.
        K: ``(3, 3)`` float64 intrinsics of the working resolution.
        cam_to_world: ``(4, 4)`` float64, or None (unknown pose).
        gt_ids: ``(H, W)`` int32 GT instance id per pixel (0 = none), or None; only the GT seams
            (`threeam.lift3d.proposals.GTProposals`, `threeam.lift3d.propagate.GTTracker`) read it.
    """

    index: int
    rgb: np.ndarray
    depth: Optional[np.ndarray]
    K: np.ndarray
    cam_to_world: Optional[np.ndarray]
    gt_ids: Optional[np.ndarray] = None

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


@dataclass
class LiftMesh:
    """The evaluation mesh.

    Attributes:
        vertices: ``(V, 3)`` float32.
        faces: ``(F, 3)`` int64 or None.
        colors: ``(V, 3)`` uint8 or None.
        superpoints: ``(V,)`` int64 segment id per vertex, or None (then every vertex is its own).
        gt_ids: ``(V,)`` int64 ``label_id * 1000 + instance`` per vertex, or None.
    """

    vertices: np.ndarray
    faces: Optional[np.ndarray] = None
    colors: Optional[np.ndarray] = None
    superpoints: Optional[np.ndarray] = None
    gt_ids: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(len(self.vertices))


def resize_rgb(rgb: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased) resize of ``(H, W, 3)`` uint8 to ``hw``."""
    if rgb.shape[:2] == tuple(hw):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((hw[1], hw[0]), Image.BILINEAR))


def resize_nearest(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D array (masks, ids, depth) to ``hw`` (pixel centres)."""
    h, w = a.shape[:2]
    if (h, w) == tuple(hw):
        return a
    rows = np.minimum(((np.arange(hw[0]) + 0.5) * h / hw[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(hw[1]) + 0.5) * w / hw[1]).astype(np.int64), w - 1)
    return a[rows[:, None], cols[None, :]]


def scale_K(K: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Intrinsics of a resized image (pixel centres at integer coordinates)."""
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    K2 = np.array(K, dtype=np.float64).copy()
    K2[0, 0] *= sx
    K2[0, 1] *= sx
    K2[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K2[1, 1] *= sy
    K2[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K2


class LiftScene:
    """Processed frames of one scene (every ``frame_skip``-th raw frame) plus its mesh.

    Args:
        name: scene id.
        n_raw: number of raw frames.
        load: ``load(raw_index) -> LiftFrame`` at working resolution.
        mesh: the evaluation mesh (None: no 3D output possible).
        frame_skip / max_frames: which raw frames are processed.
        cache: how many loaded frames to keep (LRU).
        meta: free-form information (dataset, sizes) for the outputs.
    """

    def __init__(self, name: str, n_raw: int, load: Callable[[int], LiftFrame], mesh: Optional[LiftMesh],
                 frame_skip: int = 1, max_frames: Optional[int] = None, cache: int = 32,
                 meta: Optional[dict] = None) -> None:
        if n_raw < 1:
            raise InputError(f"scene {name!r} has no frames")
        self.name = name
        self.raw_indices = list(range(0, n_raw, frame_skip))
        if max_frames is not None:
            self.raw_indices = self.raw_indices[:max_frames]
        self._load = load
        self.mesh = mesh
        self.meta = dict(meta or {})
        self._cache: OrderedDict[int, LiftFrame] = OrderedDict()
        self._cache_size = max(1, cache)

    def __len__(self) -> int:
        return len(self.raw_indices)

    def frame(self, i: int) -> LiftFrame:
        """Processed frame ``i`` (0 .. len-1)."""
        if not 0 <= i < len(self):
            raise InputError(f"frame {i} out of range for scene {self.name!r} with {len(self)} processed frames")
        hit = self._cache.get(i)
        if hit is not None:
            self._cache.move_to_end(i)
            return hit
        fr = self._load(self.raw_indices[i])
        self._cache[i] = fr
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return fr

    def with_frames(self, load: Callable[[int], LiftFrame]) -> "LiftScene":
        """The same scene with another frame loader (e.g. MUSt3R depth and poses)."""
        out = LiftScene.__new__(LiftScene)
        out.__dict__.update(self.__dict__)
        out._load = load
        out._cache = OrderedDict()
        return out


def _synthetic_loader(scene: Any) -> Callable[[int], LiftFrame]:
    def load(i: int) -> LiftFrame:
        f = scene.frame(i)
        return LiftFrame(index=i, rgb=f.rgb, depth=f.depth, K=np.asarray(f.K, dtype=np.float64),
                         cam_to_world=None if f.cam_to_world is None else np.asarray(f.cam_to_world, np.float64),
                         gt_ids=f.instance_ids)
    return load


def from_synthetic(scene: Any, frame_skip: int = 1, max_frames: Optional[int] = None, mesh: Any = None,
                   **mesh_options: Any) -> LiftScene:
    """A generated scene (`threeam.data.synth.generate_scene`) with its ScanNet-style mesh.

    ``mesh`` may be a precomputed `threeam.data.synth_scannet.SynthScanNetMesh`; otherwise it is made
    with `threeam.data.synth_scannet.synth_scannet_mesh` (``mesh_options`` go there).
    """
    from threeam.data.synth_scannet import synth_scannet_mesh

    m = mesh if mesh is not None else synth_scannet_mesh(scene, **mesh_options)
    lm = LiftMesh(vertices=m.vertices, faces=m.faces, colors=m.colors, superpoints=m.superpoints, gt_ids=m.gt_ids)
    return LiftScene(scene.name, len(scene), _synthetic_loader(scene), lm, frame_skip=frame_skip,
                     max_frames=max_frames, meta={"dataset": "synthetic"})


def render_gt_ids(mesh: LiftMesh, K: np.ndarray, cam_to_world: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` int32 GT id per pixel, rasterised from the mesh's per-vertex GT (0 = none).

    Each pixel takes the GT id of the first vertex of the nearest face (z-buffer of
    `threeam.data.mesh.rasterize`); ids are ``label * 1000 + instance`` as on the mesh."""
    from threeam.data.geometry import invert_rigid
    from threeam.data.mesh import rasterize

    if mesh.gt_ids is None or mesh.faces is None:
        raise InputError("rendering GT masks needs a mesh with faces and per-vertex GT ids")
    _, face = rasterize(mesh.vertices, mesh.faces, K, invert_rigid(cam_to_world), hw[0], hw[1], near=0.02)
    out = np.zeros(hw, dtype=np.int32)
    hit = face >= 0
    out[hit] = mesh.gt_ids[mesh.faces[face[hit], 0]].astype(np.int32)
    return out


def from_scannet(scan: Any, use_depth: bool = True, work_long_side: int = 640, label_space: str = "scannet200",
                 max_frames: Optional[int] = None, gt_masks: bool = False) -> LiftScene:
    """A `threeam.data.scannet.ScanNetScene` (its ``frame_stride`` picks the raw frames).

    With ``use_depth`` the colour image is resized to the depth map's size and the depth
    intrinsics are used for both; without (RGB-only mode), only colour and pose are read, at
    ``work_long_side`` pixels on the long side (the pose is kept for aligning MUSt3R to the scan).
    GT ids per vertex are read when the scene has an aggregation file; ``gt_masks`` also renders
    them into every frame (`render_gt_ids`), for the GT-mask check of the pipeline.
    """
    gt = scan.gt_ids(label_space) if scan.has_gt else None
    mesh = LiftMesh(vertices=scan.vertices, faces=scan.faces, colors=scan.vertex_colors,
                    superpoints=scan.superpoints, gt_ids=gt)
    if gt_masks and gt is None:
        raise InputError(f"scene {scan.name} has no ground truth to render GT masks from")

    def load(i: int) -> LiftFrame:
        if use_depth:
            f = scan.rgbd(i)
            hw = f.depth.shape[:2]
            fr = LiftFrame(index=int(f.frame_id), rgb=resize_rgb(f.rgb, hw), depth=f.depth.astype(np.float32),
                           K=np.asarray(f.K_depth, dtype=np.float64), cam_to_world=np.asarray(f.cam_to_world))
        else:
            src = scan.source
            fid = scan.frame_ids[i]
            rgb = src.color(fid)
            h, w = rgb.shape[:2]
            s = min(1.0, work_long_side / max(h, w))
            hw = (max(8, int(round(h * s))), max(8, int(round(w * s))))
            fr = LiftFrame(index=int(fid), rgb=resize_rgb(rgb, hw), depth=None,
                           K=scale_K(np.asarray(src.K_color, dtype=np.float64), (h, w), hw),
                           cam_to_world=np.asarray(src.pose(fid), dtype=np.float64))
        if gt_masks:
            fr.gt_ids = render_gt_ids(mesh, fr.K, fr.cam_to_world, fr.size)
        return fr

    return LiftScene(scan.name, len(scan), load, mesh, frame_skip=1, max_frames=max_frames,
                     meta={"dataset": "scannet", "frame_stride": int(getattr(scan, "frame_stride", 1))})
