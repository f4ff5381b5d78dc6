"""One ScanNet v2 / ScanNet200 scene: frames (``.sens`` or exported), the annotation mesh,
superpoints and the per-vertex ground truth.

Scene folder (``scans/<id>/``, as distributed)::

    <id>.sens                              # RGB-D stream (sens.py)  - or color/ depth/ pose/ intrinsic/
    <id>_vh_clean_2.ply                    # annotation mesh; all 3D evaluation is per vertex of it
    <id>_vh_clean_2.0.010000.segs.json     # {"segIndices": [superpoint id per vertex], ...}
    <id>.aggregation.json                  # {"segGroups": [{"id", "objectId", "segments", "label"}, ...]}
    <id>.txt                               # "key = value" metadata (axisAlignment, fx_color, ...)

Ground truth per vertex (benchmark format, ScanNet ``BenchmarkScripts``): ``label * 1000 + instance``
with ``instance = objectId + 1`` and ``label`` from the label table (see labels.py); 0 = unannotated.
segGroups are applied in file order, so a vertex claimed by two groups keeps the later one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from threeam.data._io import read_json, write_json
from threeam.data.mesh import read_ply
from threeam.data.scannet.exported import ExportedFrames, is_exported_layout, write_exported_frames
from threeam.data.scannet.labels import LABEL_TABLE_NAME, LabelTable, check_label_space, read_label_table
from threeam.data.scannet.sens import SensFile, write_sens
from threeam.data.types import PosedFrame, SceneMesh
from threeam.errors import InputError, VideoError
from threeam.io.atomic import atomic_path, atomic_write_text

__all__ = ["ScanNetFrame", "ScanNetScene", "read_scene_meta", "read_segments", "read_aggregation",
           "vertex_gt_ids", "depth_in_color", "write_scannet_scene", "MESH_SUFFIX", "SEGS_SUFFIX",
           "AGG_SUFFIX"]

MESH_SUFFIX = "_vh_clean_2.ply"
SEGS_SUFFIX = "_vh_clean_2.0.010000.segs.json"
AGG_SUFFIX = ".aggregation.json"


@dataclass
class ScanNetFrame:
    """One RGB-D frame with both cameras, as the 3D lifting needs it.

    Attributes:
        frame_id: raw index in the ``.sens`` stream (= the exported file stem).
        rgb: ``(H, W, 3)`` uint8 colour.
        depth: ``(h, w)`` float32 z-depth in metres, 0 = invalid (may differ in size from ``rgb``).
        K_color: ``(3, 3)`` float64 intrinsics of ``rgb``.
        K_depth: ``(3, 3)`` float64 intrinsics of ``depth``.
        cam_to_world: ``(4, 4)`` float64 camera-to-world (OpenCV axes; colour and depth share it).
    """

    frame_id: int
    rgb: np.ndarray
    depth: np.ndarray
    K_color: np.ndarray
    K_depth: np.ndarray
    cam_to_world: np.ndarray

    @property
    def name(self) -> str:
        return str(self.frame_id)


def read_scene_meta(path: str | os.PathLike) -> dict[str, str]:
    """Read ``<id>.txt`` (``key = value`` lines) as a dict of strings; a missing file gives ``{}``."""
    path = Path(path)
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _meta_floats(meta: dict[str, str], key: str, n: int) -> np.ndarray | None:
    if key not in meta:
        return None
    try:
        vals = np.array(meta[key].split(), dtype=np.float64)
    except ValueError:
        return None
    return vals if vals.size == n else None


def read_segments(path: str | os.PathLike) -> np.ndarray:
    """``(N,)`` int64 superpoint id per mesh vertex from a ``*.segs.json`` (ids are sparse ints)."""
    data = read_json(path, "ScanNet segments file")
    if not isinstance(data, dict) or "segIndices" not in data:
        raise InputError(f"{path}: segments file has no 'segIndices'")
    try:
        return np.asarray(data["segIndices"], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: 'segIndices' must be a list of integers ({e})") from e


def read_aggregation(path: str | os.PathLike) -> list[dict]:
    """The ``segGroups`` of an ``*.aggregation.json``: dicts with ``objectId``, ``label``, ``segments``."""
    data = read_json(path, "ScanNet aggregation file")
    groups = data.get("segGroups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        raise InputError(f"{path}: aggregation file has no 'segGroups' list")
    for g in groups:
        if not isinstance(g, dict) or not {"objectId", "label", "segments"} <= set(g):
            raise InputError(f"{path}: malformed segGroup (needs objectId, label, segments): {str(g)[:120]}")
    return groups


def vertex_gt_ids(seg_indices: np.ndarray, seg_groups: Sequence[dict], table: LabelTable,
                  space: str = "scannet200") -> np.ndarray:
    """Per-vertex benchmark GT ``label * 1000 + (objectId + 1)``; 0 = unannotated.

    Args:
        seg_indices: ``(N,)`` superpoint id per vertex.
        seg_groups: the aggregation's ``segGroups``, applied in order (later groups win).
        table: the label table; ``space`` picks ``"scannet200"`` (TSV ``id``, 0 outside the 200
            classes) or ``"nyu40"`` (TSV ``nyu40id``).
    Returns:
        ``(N,)`` int64. A vertex of a group whose label is 0 in ``space`` gets ``objectId + 1``
        (< 1000), which the evaluator treats as void, as the benchmark does.
    """
    check_label_space(space)
    seg_indices = np.asarray(seg_indices, dtype=np.int64)
    labels = np.zeros(len(seg_indices), dtype=np.int64)
    inst = np.zeros(len(seg_indices), dtype=np.int64)
    for g in seg_groups:
        member = np.isin(seg_indices, np.asarray(g["segments"], dtype=np.int64))
        labels[member] = table.label_id(str(g["label"]), space)
        inst[member] = int(g["objectId"]) + 1
    return labels * 1000 + inst


def depth_in_color(depth: np.ndarray, K_depth: np.ndarray, K_color: np.ndarray, height: int,
                   width: int) -> np.ndarray:
    """Sample a depth map at every colour pixel (nearest), assuming the two cameras share their
    pose (ScanNet's colour-to-depth extrinsic is treated as identity).

    The ray of colour pixel ``(u, v)`` is the ray of depth pixel ``K_depth K_color^-1 (u, v, 1)``
    and z is the same along a shared ray, so this inverse lookup is exact up to the rounding.

    Returns:
        ``(height, width)`` float32 (0 where the lookup falls outside the depth image).
    """
    Kd = np.asarray(K_depth, dtype=np.float64)
    Kc = np.asarray(K_color, dtype=np.float64)
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)
    ud = np.rint(Kd[0, 0] * (u - Kc[0, 2]) / Kc[0, 0] + Kd[0, 2]).astype(np.int64)
    vd = np.rint(Kd[1, 1] * (v - Kc[1, 2]) / Kc[1, 1] + Kd[1, 2]).astype(np.int64)
    h, w = depth.shape
    okx = (ud >= 0) & (ud < w)
    oky = (vd >= 0) & (vd < h)
    out = depth[np.clip(vd, 0, h - 1)][:, np.clip(ud, 0, w - 1)].astype(np.float32)
    out[~oky] = 0
    out[:, ~okx] = 0
    return out


class ScanNetScene:
    """A ScanNet scene folder, opened lazily (nothing large is read until asked for).

    Args:
        scene_dir: ``.../scans/<id>`` holding the mesh, segments, aggregation, ``<id>.txt`` and
            either ``<id>.sens`` or the exported ``color/ depth/ pose/ intrinsic/`` subfolders.
        frames: ``"auto"`` (exported folder if present, else ``.sens``), ``"sens"`` or ``"exported"``.
        frames_dir: where the exported frames live when they are not inside ``scene_dir``: either
            the folder with ``color/`` etc. or a root holding ``<id>/color/`` etc.
        label_table: path to ``scannetv2-labels.combined.tsv`` or a loaded :class:`LabelTable`;
            needed for :meth:`gt_ids` only. Default: ``<scene_dir>/../{,../}scannetv2-labels.combined.tsv``.
        frame_stride: keep raw frames whose index is a multiple of this (the SensReader
            ``frame_skip`` convention), before dropping invalid poses.
        align: what :meth:`frame` (the generic :class:`~threeam.data.types.Scene` view) returns:
            ``"color"`` (rgb at colour size, depth sampled into it) or ``"depth"`` (rgb resized to
            the depth size, K = K_depth).

    Attributes:
        name: scene id (folder name). ``frame_ids``: usable raw frame indices, in order.
    """

    def __init__(self, scene_dir: str | os.PathLike, frames: str = "auto",
                 frames_dir: str | os.PathLike | None = None, label_table: str | os.PathLike | LabelTable | None = None,
                 frame_stride: int = 1, align: str = "color") -> None:
        self.dir = Path(scene_dir)
        if not self.dir.is_dir():
            raise InputError(f"ScanNet scene folder not found: {self.dir}")
        self.name = self.dir.name
        if frames not in ("auto", "sens", "exported"):
            raise InputError(f"frames must be 'auto', 'sens' or 'exported', got {frames!r}")
        if align not in ("color", "depth"):
            raise InputError(f"align must be 'color' or 'depth', got {align!r}")
        if int(frame_stride) < 1:
            raise InputError(f"frame_stride must be >= 1, got {frame_stride}")
        self.frames_mode = frames
        self.frames_dir = Path(frames_dir) if frames_dir is not None else None
        self.frame_stride = int(frame_stride)
        self.align = align
        self._label_table = label_table

    # ------------------------------------------------------------------ files
    def _file(self, suffix: str) -> Path:
        return self.dir / f"{self.name}{suffix}"

    @property
    def mesh_path(self) -> Path:
        return self._file(MESH_SUFFIX)

    @property
    def segments_path(self) -> Path:
        return self._file(SEGS_SUFFIX)

    @property
    def aggregation_path(self) -> Path:
        return self._file(AGG_SUFFIX)

    @property
    def has_gt(self) -> bool:
        """True when the scene has an aggregation file (test scenes have none)."""
        return self.aggregation_path.is_file()

    @cached_property
    def meta(self) -> dict[str, str]:
        """``<id>.txt`` as ``{key: value}`` strings (``{}`` when absent)."""
        return read_scene_meta(self._file(".txt"))

    @cached_property
    def axis_alignment(self) -> np.ndarray:
        """``(4, 4)`` float64 ``axisAlignment`` from ``<id>.txt`` (row-major); identity when absent."""
        v = _meta_floats(self.meta, "axisAlignment", 16)
        return np.eye(4) if v is None else v.reshape(4, 4)

    # ------------------------------------------------------------------ mesh
    @cached_property
    def _ply(self) -> dict:
        return read_ply(self.mesh_path)

    @property
    def vertices(self) -> np.ndarray:
        """``(N, 3)`` float32 vertices of ``_vh_clean_2.ply`` (scan coordinates, not axis-aligned)."""
        return self._ply["vertices"]

    @property
    def faces(self) -> np.ndarray:
        """``(F, 3)`` int64 triangle indices."""
        f = self._ply["faces"]
        return np.zeros((0, 3), dtype=np.int64) if f is None else f

    @property
    def vertex_colors(self) -> np.ndarray:
        """``(N, 3)`` uint8 vertex colours (grey 128 when the PLY has none)."""
        p = self._ply
        if all(k in p for k in ("red", "green", "blue")):
            return np.stack([p["red"], p["green"], p["blue"]], -1).astype(np.uint8)
        return np.full((len(p["vertices"]), 3), 128, dtype=np.uint8)

    @property
    def num_vertices(self) -> int:
        return int(len(self.vertices))

    @cached_property
    def superpoints(self) -> np.ndarray:
        """``(N,)`` int64 superpoint (segment) id per vertex, from the ``segs.json`` (sparse ids)."""
        seg = read_segments(self.segments_path)
        if len(seg) != self.num_vertices:
            raise InputError(f"{self.segments_path}: {len(seg)} segIndices but the mesh has "
                             f"{self.num_vertices} vertices")
        return seg

    @cached_property
    def seg_groups(self) -> list[dict]:
        if not self.has_gt:
            raise InputError(f"scene {self.name} has no ground truth ({self.aggregation_path} not found)")
        return read_aggregation(self.aggregation_path)

    @property
    def label_table(self) -> LabelTable:
        t = self._label_table
        if isinstance(t, LabelTable):
            return t
        if t is None:
            cands = [self.dir.parent / LABEL_TABLE_NAME, self.dir.parent.parent / LABEL_TABLE_NAME]
            found = next((c for c in cands if c.is_file()), None)
            if found is None:
                raise InputError(f"scene {self.name}: no label table given and {LABEL_TABLE_NAME} not found "
                                 f"in {cands[0].parent} or {cands[1].parent}; pass label_table=...")
            t = found
        self._label_table = read_label_table(t)
        return self._label_table

    @cached_property
    def vertex_instance_ids(self) -> np.ndarray:
        """``(N,)`` int32 ``objectId + 1`` per vertex (0 = unannotated), whatever the class."""
        inst = np.zeros(self.num_vertices, dtype=np.int32)
        if not self.has_gt:
            return inst
        seg = self.superpoints
        for g in self.seg_groups:
            inst[np.isin(seg, np.asarray(g["segments"], dtype=np.int64))] = int(g["objectId"]) + 1
        return inst

    def gt_ids(self, space: str = "scannet200") -> np.ndarray:
        """``(N,)`` int64 benchmark GT per vertex: ``label * 1000 + instance`` (0 = unannotated).

        ``space``: ``"scannet200"`` (for the ScanNet200 / ESAM evaluation) or ``"nyu40"`` (ScanNet v2
        / SAI3D). See :func:`vertex_gt_ids`.
        """
        check_label_space(space)
        cache = self.__dict__.setdefault("_gt_cache", {})
        if space not in cache:
            cache[space] = vertex_gt_ids(self.superpoints, self.seg_groups, self.label_table, space)
        return cache[space].copy()

    def mesh(self) -> SceneMesh:
        """The mesh as a :class:`~threeam.data.types.SceneMesh` (labels = :attr:`vertex_instance_ids`)."""
        return SceneMesh(self.vertices, self.faces, self.vertex_instance_ids, self.vertex_colors)

    def object_ids(self) -> list[int]:
        return sorted(int(i) for i in np.unique(self.vertex_instance_ids) if i != 0)

    # ------------------------------------------------------------------ frames
    @cached_property
    def source(self) -> SensFile | ExportedFrames:
        """The frame source: a :class:`SensFile` or :class:`ExportedFrames`."""
        mode = self.frames_mode
        exported = self._exported_dir()
        sens_path = self._file(".sens")
        if mode == "exported" or (mode == "auto" and exported is not None):
            if exported is None:
                where = self.frames_dir or self.dir
                raise VideoError(f"scene {self.name}: no exported frames (color/ depth/ pose/) in {where}")
            return ExportedFrames(exported, K_color=self._meta_K("color"), K_depth=self._meta_K("depth"))
        if not sens_path.is_file():
            raise VideoError(f"scene {self.name}: neither {sens_path.name} nor exported color/ depth/ pose/ "
                             f"folders found in {self.dir}")
        return SensFile(sens_path)

    def _exported_dir(self) -> Path | None:
        roots = [self.frames_dir / self.name, self.frames_dir] if self.frames_dir is not None else [self.dir]
        return next((r for r in roots if is_exported_layout(r)), None)

    def _meta_K(self, cam: str) -> np.ndarray | None:
        vals = [_meta_floats(self.meta, f"{k}_{cam}", 1) for k in ("fx", "fy", "mx", "my")]
        if any(v is None for v in vals):
            return None
        fx, fy, cx, cy = (float(v[0]) for v in vals)
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)

    @cached_property
    def frame_ids(self) -> list[int]:
        """Usable raw frame indices: multiples of ``frame_stride`` with a finite pose, in order."""
        src = self.source
        ids = src.valid_indices() if isinstance(src, SensFile) else list(src.frame_ids)
        return [i for i in ids if i % self.frame_stride == 0]

    @property
    def K_color(self) -> np.ndarray:
        return self.source.K_color

    @property
    def K_depth(self) -> np.ndarray:
        return self.source.K_depth

    def __len__(self) -> int:
        return len(self.frame_ids)

    def _raw(self, index: int) -> int:
        n = len(self.frame_ids)
        if not isinstance(index, (int, np.integer)) or not -n <= index < n:
            raise InputError(f"frame position {index} out of range for scene {self.name} with {n} usable frames")
        return self.frame_ids[int(index)]

    def rgbd(self, index: int) -> ScanNetFrame:
        """The frame at position ``index`` of :attr:`frame_ids` with both cameras (no resampling)."""
        fid = self._raw(index)
        src = self.source
        if isinstance(src, SensFile):
            rgb, depth, pose = src.read(fid)
        else:
            rgb, depth, pose = src.color(fid), src.depth(fid), src.pose(fid)
        return ScanNetFrame(fid, rgb, depth, src.K_color.copy(), src.K_depth.copy(), pose)

    def frame(self, index: int) -> PosedFrame:
        """The :class:`~threeam.data.types.Scene` view of position ``index`` (see ``align``)."""
        f = self.rgbd(index)
        if self.align == "color":
            h, w = f.rgb.shape[:2]
            depth = depth_in_color(f.depth, f.K_depth, f.K_color, h, w)
            return PosedFrame(f.rgb, depth, f.K_color, f.cam_to_world, None, f.name)
        from PIL import Image

        h, w = f.depth.shape
        rgb = np.asarray(Image.fromarray(f.rgb).resize((w, h), Image.BILINEAR), dtype=np.uint8)
        return PosedFrame(rgb, f.depth, f.K_depth, f.cam_to_world, None, f.name)

    def instance_ids(self, index: int) -> None:
        """2D instance ids of a frame: not available (the ``*_2d-instance`` zips are not read)."""
        self._raw(index)
        return None

    def __repr__(self) -> str:
        return f"ScanNetScene({str(self.dir)!r})"


# ---------------------------------------------------------------------------------- writer
def _write_scannet_ply(path: Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> None:
    """Binary PLY as ScanNet ships ``_vh_clean_2.ply``: x y z float, red green blue alpha uchar,
    faces ``list uchar int vertex_indices``."""
    n = len(vertices)
    v = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                           ("blue", "u1"), ("alpha", "u1")])
    v["x"], v["y"], v["z"] = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    v["red"], v["green"], v["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    v["alpha"] = 255
    f = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    f["n"] = 3
    f["i"] = faces
    header = ("ply\nformat binary_little_endian 1.0\ncomment VCGLIB generated\n"
              f"element vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    with atomic_path(path) as tmp:
        tmp.write_bytes(header.encode("ascii") + v.tobytes() + f.tobytes())


def write_scannet_scene(scene_dir: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
                        colors: np.ndarray, seg_indices: np.ndarray, seg_groups: Sequence[dict] | None,
                        frames: dict | None = None, frames_layout: str = "sens",
                        axis_alignment: np.ndarray | None = None) -> Path:
    """Write a scene folder in ScanNet's layout (for tests and synthetic data).

    Args:
        scene_dir: ``.../<scene id>``; the folder name is the scene id.
        vertices / faces / colors: ``(N, 3)`` float, ``(F, 3)`` int, ``(N, 3)`` uint8.
        seg_indices: ``(N,)`` superpoint id per vertex.
        seg_groups: ``[{"objectId", "label", "segments"}]`` (``id`` defaults to objectId); None
            writes no aggregation (a test scene).
        frames: optional ``{"colors", "depths_mm", "poses", "K_color", "K_depth"}`` (lists of
            ``(H, W, 3)`` uint8, ``(h, w)`` uint16 mm, ``(4, 4)``; and ``(3, 3)``), written as
            ``<id>.sens`` (``frames_layout="sens"``) or exported folders (``"exported"``).
        axis_alignment: ``(4, 4)`` written to ``<id>.txt`` with the intrinsics.
    Returns:
        the scene folder.
    """
    d = Path(scene_dir)
    sid = d.name
    d.mkdir(parents=True, exist_ok=True)
    vertices = np.asarray(vertices, dtype=np.float32)
    _write_scannet_ply(d / f"{sid}{MESH_SUFFIX}", vertices, np.asarray(faces, dtype=np.int64),
                       np.asarray(colors, dtype=np.uint8))
    write_json(d / f"{sid}{SEGS_SUFFIX}", {
        "params": {"kThresh": "0.0001", "segMinVerts": "20", "minPoints": "750", "maxPoints": "30000",
                   "thinThresh": "0.05", "flatThresh": "0.001", "minLength": "0.02", "maxLength": "1"},
        "sceneId": sid, "segIndices": [int(s) for s in np.asarray(seg_indices).reshape(-1)]})
    if seg_groups is not None:
        groups = [{"id": int(g.get("id", g["objectId"])), "objectId": int(g["objectId"]),
                   "segments": [int(s) for s in g["segments"]], "label": str(g["label"])} for g in seg_groups]
        write_json(d / f"{sid}{AGG_SUFFIX}", {"sceneId": f"scannet.{sid}", "appId": "Aggregator.v2",
                                              "segGroups": groups, "segmentsFile": f"scannet.{sid}{SEGS_SUFFIX[:-5]}"})
    lines = []
    if axis_alignment is not None:
        lines.append("axisAlignment = " + " ".join(f"{v:f}" for v in np.asarray(axis_alignment).reshape(-1)))
    if frames is not None:
        c0, d0 = np.asarray(frames["colors"][0]), np.asarray(frames["depths_mm"][0])
        Kc, Kd = np.asarray(frames["K_color"]), np.asarray(frames["K_depth"])
        lines += [f"colorHeight = {c0.shape[0]}", f"colorWidth = {c0.shape[1]}",
                  f"depthHeight = {d0.shape[0]}", f"depthWidth = {d0.shape[1]}",
                  f"fx_color = {Kc[0, 0]:f}", f"fx_depth = {Kd[0, 0]:f}", f"fy_color = {Kc[1, 1]:f}",
                  f"fy_depth = {Kd[1, 1]:f}", f"mx_color = {Kc[0, 2]:f}", f"mx_depth = {Kd[0, 2]:f}",
                  f"my_color = {Kc[1, 2]:f}", f"my_depth = {Kd[1, 2]:f}",
                  f"numColorFrames = {len(frames['colors'])}", f"numDepthFrames = {len(frames['colors'])}",
                  "numIMUmeasurements = 0"]
        if frames_layout == "sens":
            write_sens(d / f"{sid}.sens", frames["colors"], frames["depths_mm"], frames["poses"], Kc, Kd)
        elif frames_layout == "exported":
            write_exported_frames(d, list(range(len(frames["colors"]))), frames["colors"], frames["depths_mm"],
                                  frames["poses"], Kc, Kd)
        else:
            raise InputError(f"frames_layout must be 'sens' or 'exported', got {frames_layout!r}")
    if lines:
        atomic_write_text(d / f"{sid}.txt", "\n".join(lines) + "\n")
    return d
