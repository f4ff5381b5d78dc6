"""ScanNet++ (v1/v2) scenes: reader and a writer of the same on-disk layout (for synthetic scenes).

Layout read (paths as in the official ScanNet++ toolkit)::

    <root>/data/<scene_id>/
      scans/mesh_aligned_0.05.ply        # mesh; vertices carry the 3D instance labels
      scans/segments.json                # {"segIndices": [segment id per mesh vertex]}
      scans/segments_anno.json           # {"segGroups": [{"objectId", "label", "segments": [...]}, ...]}
      iphone/rgb/frame_%06d.jpg          # extracted iPhone frames
      iphone/depth/frame_%06d.png        # uint16 millimetres (LiDAR, usually 256x192; resized to RGB)
      iphone/colmap/{cameras,images,points3D}.txt   # world-to-camera poses; unregistered frames absent
      dslr/resized_undistorted_images/*.JPG         # undistorted DSLR frames (toolkit dslr/undistort.py)
      dslr/nerfstudio/transforms_undistorted.json   # PINHOLE fl_x fl_y cx cy w h of those frames
      dslr/colmap/{cameras,images,points3D}.txt     # DSLR poses

Instance ids: a vertex belongs to a segGroup when its segment id is in the group's ``segments``;
a vertex in several groups keeps the smallest group (toolkit rule). ``instance id = objectId + 1``
so that 0 stays "no object". 2D instance masks are made by rasterising the labelled mesh on the
CPU (:func:`threeam.data.mesh.rasterize`) with the frame's K and COLMAP pose; a pixel takes the
label of the first vertex of the visible face. Frames without a COLMAP pose get
``cam_to_world=None`` and ``instance_ids=None``. DSLR frames (no depth on disk) get depth from the
same rasterisation.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from threeam.data._io import (depth_to_mm, read_json, read_png16, read_rgb, resize_nearest, write_jpg,
                              write_json, write_png16)
from threeam.data.colmap import colmap_camera_to_K, read_cameras_txt, read_images_txt, write_colmap_model
from threeam.data.geometry import invert_rigid
from threeam.data.mesh import rasterize, read_ply, write_ply
from threeam.data.types import PosedFrame, Scene, SceneMesh, frame_index
from threeam.errors import InputError, VideoError
from threeam.io.atomic import atomic_write_bytes

__all__ = ["ScanNetPPScene", "write_scannetpp_scene", "vertex_instance_labels", "list_scannetpp_scenes",
           "read_iphone_depth_bin", "write_iphone_depth_bin"]

MESH = "scans/mesh_aligned_0.05.ply"
SEGMENTS = "scans/segments.json"
SEG_ANNO = "scans/segments_anno.json"


def vertex_instance_labels(seg_indices: np.ndarray, seg_groups: list[dict]) -> np.ndarray:
    """Per-vertex instance id (objectId + 1; 0 = none). Overlaps keep the smallest group.

    Args:
        seg_indices: ``(V,)`` segment id per vertex.
        seg_groups: the ``segGroups`` list of ``segments_anno.json``.
    Returns:
        ``(V,)`` int32.
    """
    seg_indices = np.asarray(seg_indices, dtype=np.int64)
    labels = np.zeros(len(seg_indices), dtype=np.int32)
    best_size = np.full(len(seg_indices), np.iinfo(np.int64).max)
    for g in seg_groups:
        try:
            oid = int(g["objectId"])
            segs = np.asarray(g["segments"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"malformed segGroup entry (needs objectId and segments): {str(g)[:120]}") from e
        member = np.isin(seg_indices, segs)
        size = int(member.sum())
        take = member & (size < best_size)
        labels[take] = oid + 1
        best_size[take] = size
    return labels


def read_iphone_depth_bin(path: str | os.PathLike, height: int = 192, width: int = 256) -> np.ndarray:
    """Decode ScanNet++ ``iphone/depth.bin`` into ``(N, H, W)`` float32 metres.

    Two encodings exist (as the toolkit's decoder handles): the whole file is one raw-deflate
    stream of float32 metres; or a sequence of records ``[uint32 LE size][payload]`` whose payload
    is an lz4 block of uint16 millimetres (needs the ``lz4`` package) or raw-deflate float32 metres.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"depth file not found: {path}")
    data = path.read_bytes()
    n_px = height * width
    try:
        raw = zlib.decompress(data, wbits=-15)
        if len(raw) % (4 * n_px) == 0 and raw:
            return np.frombuffer(raw, dtype="<f4").reshape(-1, height, width).copy()
    except zlib.error:
        pass
    frames, off = [], 0
    try:
        while off < len(data):
            (size,) = struct.unpack_from("<I", data, off)
            payload = data[off + 4: off + 4 + size]
            if len(payload) != size:
                raise InputError(f"{path}: truncated record at byte {off}")
            off += 4 + size
            try:
                raw = zlib.decompress(payload, wbits=-15)
                frames.append(np.frombuffer(raw, dtype="<f4").reshape(height, width))
                continue
            except zlib.error:
                pass
            try:
                import lz4.block
            except ImportError:
                raise InputError(f"{path} holds lz4-compressed depth records; install the 'lz4' package") from None
            raw = lz4.block.decompress(payload, uncompressed_size=2 * n_px)
            frames.append(np.frombuffer(raw, dtype="<u2").reshape(height, width).astype(np.float32) / 1000.0)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"cannot decode iPhone depth {path}: {e}") from e
    if not frames:
        raise InputError(f"{path} holds no depth frame")
    return np.stack(frames).astype(np.float32)


def write_iphone_depth_bin(path: str | os.PathLike, depth: np.ndarray) -> None:
    """Write ``(N, H, W)`` float32 metres as a raw-deflate ``depth.bin`` (the first encoding above)."""
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = comp.compress(np.ascontiguousarray(depth, dtype="<f4").tobytes()) + comp.flush()
    atomic_write_bytes(path, data)


def list_scannetpp_scenes(root: str | os.PathLike, split: str | None = None) -> list[str]:
    """Scene ids under ``root/data`` (or listed in ``root/splits/<split>.txt``)."""
    root = Path(root)
    if split is not None:
        p = root / "splits" / f"{split}.txt"
        if not p.is_file():
            raise InputError(f"split file not found: {p}")
        return [l.strip() for l in p.read_text().splitlines() if l.strip()]
    d = root / "data"
    if not d.is_dir():
        raise InputError(f"not a ScanNet++ root (no data/ folder): {root}")
    return sorted(p.name for p in d.iterdir() if p.is_dir())


class ScanNetPPScene(Scene):
    """One ScanNet++ scene as a :class:`~threeam.data.types.Scene`.

    Args:
        path: either the scene folder (``.../data/<scene_id>``) or the dataset root with ``scene_id``.
        scene_id: scene id when ``path`` is the root.
        capture: ``"iphone"`` or ``"dslr"`` (undistorted DSLR images).
        stride: keep every ``stride``-th frame.
        depth: ``"auto"`` (disk depth when present, else rasterised mesh depth), ``"disk"``,
            ``"mesh"`` or ``"none"``.
        device: torch device for the rasteriser.
        mask_cache: optional folder; projected instance-id maps are stored there as uint16 PNGs
            (``<mask_cache>/<scene>/<capture>/<frame>.png``) and reused.
        depth_bin_size: ``(H, W)`` of the frames in ``iphone/depth.bin`` (read when ``iphone/depth/``
            has no PNGs; real iPhone LiDAR depth is 192x256).
    """

    def __init__(self, path: str | os.PathLike, scene_id: str | None = None, capture: str = "iphone",
                 stride: int = 1, depth: str = "auto", device: str = "cpu",
                 mask_cache: str | os.PathLike | None = None, depth_bin_size: tuple[int, int] = (192, 256)) -> None:
        path = Path(path)
        self.scene_dir = path / "data" / scene_id if scene_id is not None else path
        self.name = self.scene_dir.name
        if not self.scene_dir.is_dir():
            raise InputError(f"ScanNet++ scene folder not found: {self.scene_dir}")
        if capture not in ("iphone", "dslr"):
            raise InputError(f"capture must be 'iphone' or 'dslr', got {capture!r}")
        if depth not in ("auto", "disk", "mesh", "none"):
            raise InputError(f"depth must be one of auto/disk/mesh/none, got {depth!r}")
        if stride < 1:
            raise InputError(f"stride must be >= 1, got {stride}")
        self.capture, self.depth_mode, self.device = capture, depth, device
        cap = self.scene_dir / capture
        if capture == "iphone":
            self.image_dir = cap / "rgb"
            if not self.image_dir.is_dir():
                hint = " (run the ScanNet++ toolkit's iphone/prepare_iphone_data.py to extract rgb.mkv)" \
                    if (cap / "rgb.mkv").exists() else ""
                raise VideoError(f"iPhone frames folder not found: {self.image_dir}{hint}")
        else:
            self.image_dir = cap / "resized_undistorted_images"
            if not self.image_dir.is_dir():
                raise VideoError(f"undistorted DSLR images not found: {self.image_dir} (run the ScanNet++ "
                                 "toolkit's dslr/undistort.py; fisheye images are not read directly)")
        files = sorted(p for p in self.image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not files:
            raise VideoError(f"no frames in {self.image_dir}")
        self.files = files[::stride]
        cams = read_cameras_txt(cap / "colmap" / "cameras.txt")
        self.images = read_images_txt(cap / "colmap" / "images.txt")
        if capture == "iphone":
            cam = cams[min(cams)]
            self.K = colmap_camera_to_K(cam)
            self.cam_size = (cam.height, cam.width)
        else:
            tj = read_json(cap / "nerfstudio" / "transforms_undistorted.json", "DSLR transforms_undistorted.json")
            try:
                self.K = np.array([[tj["fl_x"], 0, tj["cx"] - 0.5], [0, tj["fl_y"], tj["cy"] - 0.5], [0, 0, 1.0]])
                self.cam_size = (int(tj["h"]), int(tj["w"]))
            except KeyError as e:
                raise InputError(f"{cap / 'nerfstudio' / 'transforms_undistorted.json'} lacks {e}") from e
        self._mesh: SceneMesh | None = None
        self.mask_cache = None if mask_cache is None else Path(mask_cache) / self.name / capture
        self.depth_bin_size = depth_bin_size
        self._depth_bin: np.ndarray | None = None

    # ---------------------------------------------------------------- scene protocol
    def __len__(self) -> int:
        return len(self.files)

    def _idx(self, i: int) -> int:
        return frame_index(i, len(self.files), self.name)

    def mesh(self) -> SceneMesh:
        if self._mesh is None:
            ply = read_ply(self.scene_dir / MESH)
            segs = read_json(self.scene_dir / SEGMENTS, "segments.json")
            anno = read_json(self.scene_dir / SEG_ANNO, "segments_anno.json")
            try:
                seg_idx = np.asarray(segs["segIndices"], dtype=np.int64)
                groups = anno["segGroups"]
            except (KeyError, TypeError) as e:
                raise InputError(f"{self.scene_dir / 'scans'}: missing {e} in segments/segments_anno JSON") from e
            if len(seg_idx) != len(ply["vertices"]):
                raise InputError(f"{self.scene_dir / SEGMENTS}: {len(seg_idx)} segIndices for "
                                 f"{len(ply['vertices'])} mesh vertices")
            colors = None
            if "red" in ply:
                colors = np.stack([ply["red"], ply["green"], ply["blue"]], -1).astype(np.uint8)
            self._mesh = SceneMesh(ply["vertices"], ply["faces"], vertex_instance_labels(seg_idx, groups), colors)
        return self._mesh

    def object_ids(self) -> list[int]:
        labels = self.mesh().labels
        return sorted(int(i) for i in np.unique(labels) if i != 0)

    def pose(self, i: int) -> np.ndarray | None:
        """Camera-to-world ``(4, 4)`` of frame i, or None when COLMAP did not register it."""
        img = self.images.get(self.files[self._idx(i)].name)
        return None if img is None else invert_rigid(img.world_to_cam)

    def _frame_K(self, h: int, w: int) -> np.ndarray:
        ch, cw = self.cam_size
        if (ch, cw) == (h, w):
            return self.K.copy()
        sx, sy = w / cw, h / ch  # frames resized relative to the calibration
        K = self.K.copy()
        K[0, 0] *= sx
        K[1, 1] *= sy
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return K

    def _raster(self, K: np.ndarray, c2w: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        m = self.mesh()
        if m.faces is None:
            raise InputError(f"{self.scene_dir / MESH} has no faces; cannot project labels")
        depth, face = rasterize(m.vertices, m.faces, K, invert_rigid(c2w), h, w, device=self.device)
        ids = np.zeros((h, w), dtype=np.int32)
        hit = face >= 0
        ids[hit] = m.labels[m.faces[face[hit], 0]]
        return depth, ids

    def _image_size(self, path: Path) -> tuple[int, int]:
        from PIL import Image

        try:
            with Image.open(path) as im:
                return im.height, im.width
        except Exception as e:
            raise VideoError(f"cannot read frame {path}: {e}") from e

    def _cached_ids(self, i: int, h: int, w: int) -> np.ndarray | None:
        if self.mask_cache is None:
            return None
        p = self.mask_cache / (self.files[self._idx(i)].stem + ".png")
        if not p.is_file():
            return None
        ids = read_png16(p, "cached instance").astype(np.int32)
        return ids if ids.shape == (h, w) else None

    def _store_ids(self, i: int, ids: np.ndarray) -> None:
        if self.mask_cache is not None and ids.max(initial=0) <= 65535:
            write_png16(self.mask_cache / (self.files[self._idx(i)].stem + ".png"), ids.astype(np.uint16))

    def instance_ids(self, i: int) -> np.ndarray | None:
        c2w = self.pose(i)
        if c2w is None:
            return None
        h, w = self._image_size(self.files[self._idx(i)])
        ids = self._cached_ids(i, h, w)
        if ids is None:
            ids = self._raster(self._frame_K(h, w), c2w, h, w)[1]
            self._store_ids(i, ids)
        return ids

    def _disk_depth(self, i: int, h: int, w: int) -> np.ndarray | None:
        f = self.files[self._idx(i)]
        png = self.scene_dir / self.capture / "depth" / (f.stem + ".png")
        if png.is_file():
            return resize_nearest(read_png16(png, "depth"), h, w).astype(np.float32) / 1000.0
        binf = self.scene_dir / self.capture / "depth.bin"
        if self.capture == "iphone" and binf.is_file():
            if self._depth_bin is None:
                self._depth_bin = read_iphone_depth_bin(binf, *self.depth_bin_size)
            try:
                k = int(f.stem.split("_")[-1])
            except ValueError:
                raise InputError(f"cannot match frame {f.name} to a depth.bin index") from None
            if k >= len(self._depth_bin):
                raise InputError(f"{binf} has {len(self._depth_bin)} frames; frame {f.name} has none")
            return resize_nearest(self._depth_bin[k], h, w).astype(np.float32)
        return None

    def frame(self, i: int) -> PosedFrame:
        f = self.files[self._idx(i)]
        rgb = read_rgb(f)
        h, w = rgb.shape[:2]
        K = self._frame_K(h, w)
        c2w = self.pose(i)
        ids = depth = None
        mesh_depth = None
        disk = self._disk_depth(i, h, w) if self.depth_mode in ("auto", "disk") else None
        if self.depth_mode == "disk" and disk is None:
            raise InputError(f"no depth on disk for frame {f.name} (neither "
                             f"{self.scene_dir / self.capture / 'depth' / (f.stem + '.png')} nor depth.bin)")
        if c2w is not None:
            ids = self._cached_ids(i, h, w)
            if ids is None or (disk is None and self.depth_mode in ("auto", "mesh")):
                mesh_depth, ids = self._raster(K, c2w, h, w)
                self._store_ids(i, ids)
        if disk is not None:
            depth = disk
        elif self.depth_mode in ("auto", "mesh") and mesh_depth is not None:
            depth = mesh_depth
        return PosedFrame(rgb=rgb, depth=depth, K=K, cam_to_world=c2w, instance_ids=ids, name=f.stem)


def write_scannetpp_scene(scene: Scene, root: str | os.PathLike, scene_id: str | None = None,
                          unposed: set[int] | frozenset = frozenset(), depth_scale: int = 1,
                          dslr_every: int = 0, labels: dict[int, str] | None = None,
                          depth_format: str = "png") -> Path:
    """Write a posed scene (e.g. a synthetic one) in the ScanNet++ layout read by :class:`ScanNetPPScene`.

    Args:
        scene: any Scene with depth, poses and a labelled mesh with faces.
        root: dataset root; the scene goes to ``root/data/<scene_id>``.
        unposed: frame indices left out of ``colmap/images.txt`` (frames without a pose).
        depth_scale: iPhone depth PNGs are written at ``1/depth_scale`` resolution (real iPhone depth
            is 256x192 against 1920x1440 RGB); 1 = full resolution.
        dslr_every: if > 0, every n-th frame is also written as an undistorted DSLR image (no depth).
        labels: optional instance id -> label string for ``segments_anno.json``.
        depth_format: ``"png"`` (``iphone/depth/frame_%06d.png``, as extracted by the toolkit) or
            ``"bin"`` (``iphone/depth.bin``, raw-deflate float32, as released).
    Returns:
        the scene folder.
    """
    sid = scene_id or scene.name
    sdir = Path(root) / "data" / sid
    mesh = scene.mesh()
    if mesh is None or mesh.faces is None:
        raise InputError(f"scene {scene.name!r} has no mesh with faces; ScanNet++ needs scans/mesh_aligned_0.05.ply")
    write_ply(sdir / MESH, mesh.vertices, mesh.faces, colors=mesh.colors)
    n_v = len(mesh.vertices)
    write_json(sdir / SEGMENTS, {"sceneId": sid, "segIndices": list(range(n_v))})
    groups = []
    for gid, oid in enumerate(sorted(int(i) for i in np.unique(mesh.labels) if i != 0)):
        verts = np.nonzero(mesh.labels == oid)[0]
        v = mesh.vertices[verts]
        lo, hi = v.min(0), v.max(0)
        groups.append({"id": gid, "objectId": oid - 1, "label": (labels or {}).get(oid, "object"),
                       "segments": verts.tolist(),
                       "obb": {"centroid": ((lo + hi) / 2).tolist(), "axesLengths": (hi - lo).tolist(),
                               "normalizedAxes": [1, 0, 0, 0, 1, 0, 0, 0, 1]}})
    write_json(sdir / SEG_ANNO, {"sceneId": sid, "segGroups": groups})
    if depth_format not in ("png", "bin"):
        raise InputError(f"depth_format must be 'png' or 'bin', got {depth_format!r}")
    names, poses, K, size = [], [], None, None
    depth_frames = []
    dnames, dposes = [], []
    for i in range(len(scene)):
        fr = scene.frame(i)
        if fr.depth is None:
            raise InputError(f"frame {i} of {scene.name!r} has no depth")
        name = f"frame_{i:06d}.jpg"
        write_jpg(sdir / "iphone" / "rgb" / name, fr.rgb)
        d = fr.depth
        if depth_scale > 1:
            d = d[depth_scale // 2::depth_scale, depth_scale // 2::depth_scale]
        if depth_format == "png":
            write_png16(sdir / "iphone" / "depth" / f"frame_{i:06d}.png", depth_to_mm(d))
        else:
            depth_frames.append(d)
        names.append(name)
        poses.append(None if i in unposed else fr.cam_to_world)
        K, size = fr.K, fr.size
        if dslr_every > 0 and i % dslr_every == 0:
            dn = f"DSC{i:05d}.JPG"
            write_jpg(sdir / "dslr" / "resized_undistorted_images" / dn, fr.rgb)
            dnames.append(dn)
            dposes.append(None if i in unposed else fr.cam_to_world)
    if depth_frames:
        write_iphone_depth_bin(sdir / "iphone" / "depth.bin", np.stack(depth_frames))
    h, w = size
    write_colmap_model(sdir / "iphone" / "colmap", K, w, h, names, poses, model="OPENCV")
    if dnames:
        write_colmap_model(sdir / "dslr" / "colmap", K, w, h, dnames, dposes, model="OPENCV_FISHEYE")
        frames = []
        for n, T in zip(dnames, dposes):
            if T is None:
                continue
            # nerfstudio convention: OpenGL camera axes, world rows permuted [1, 0, 2] and z negated
            M = T @ np.diag([1.0, -1.0, -1.0, 1.0])
            M = M[[1, 0, 2, 3]]
            M[2] *= -1
            frames.append({"file_path": n, "transform_matrix": M.tolist()})
        write_json(sdir / "dslr" / "nerfstudio" / "transforms_undistorted.json",
                   {"camera_model": "PINHOLE", "fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2] + 0.5,
                    "cy": K[1, 2] + 0.5, "w": w, "h": h, "k1": 0.0, "k2": 0.0, "k3": 0.0, "k4": 0.0,
                    "frames": frames, "test_frames": []})
    return sdir
