"""A ScanNet-style mesh for generated scenes: dense vertices, superpoints and per-vertex GT ids.

`synth_scannet_mesh` turns a generated scene (`threeam.data.synth.generate_scene`) into what a
ScanNet scene provides for 3D instance segmentation:

* a dense triangle mesh of the primitives (boxes, cylinders, spheres; vertices about
  ``object_spacing`` apart on objects and ``room_spacing`` on walls, floor and ceiling), with vertex
  colours; vertices that no frame of the capture sees (with agreeing depth) are removed, as a
  reconstructed mesh only holds what the sensor saw;
* superpoints: planar patches of at most ``patch_size`` metres per box face, cylinder
  side/cap sectors and sphere latitude/longitude cells; a superpoint never crosses a primitive, so
  never crosses an instance (ScanNet's normal/colour graph segmentation rarely does);
* GT ids per vertex in the benchmark's form ``label_id * 1000 + instance`` with ScanNet200 label
  ids (floor 3, walls 1, the ceiling unannotated 0, objects by shape, e.g. table 4, couch 6,
  box 26); instance numbers are the generator's object ids (walls and floor follow them).
  An object with fewer than ``min_gt_vertices`` observed vertices is unannotated (0).

`write_scannet_scene` writes the result (and the posed RGB-D frames) in the ScanNet layout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from threeam.data.render import BOX, CYLINDER, SPHERE, Primitives
from threeam.errors import InputError

__all__ = ["SynthScanNetMesh", "SHAPE_LABELS", "dense_primitive_mesh", "observed_vertices", "synth_scannet_mesh",
           "synth_scene_id", "write_label_table", "write_synth_scannet"]

# generator shape -> (ScanNet200 category, label id); ids from the ScanNet200 benchmark constants
SHAPE_LABELS: dict[str, tuple[str, int]] = {
    "box": ("box", 26), "cylinder": ("bucket", 102), "sphere": ("ball", 168), "table": ("table", 4),
    "lamp": ("lamp", 28), "snowman": ("ball", 168), "bed": ("bed", 11), "sofa": ("couch", 6),
    "shelf": ("shelf", 8),
}
WALL, FLOOR = ("wall", 1), ("floor", 3)
N_ROOM_PRIMS = 6  # floor, ceiling, 4 walls (the generator's first primitives)


@dataclass
class SynthScanNetMesh:
    """A generated scene's mesh in ScanNet's terms.

    Attributes:
        vertices: ``(V, 3)`` float32 world coordinates (z up).
        faces: ``(F, 3)`` int64.
        colors: ``(V, 3)`` uint8.
        superpoints: ``(V,)`` int64 segment id per vertex (sparse, as ScanNet's ``segIndices``).
        gt_ids: ``(V,)`` int64 ``label_id * 1000 + instance`` (0 = unannotated).
        instances: ``(V,)`` int64 generator instance id per vertex (0 = room structure).
        categories: label id -> category name of the ids used.
        objects: one dict per annotated instance: ``instance``, ``label_id``, ``category``, ``segments``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    superpoints: np.ndarray
    gt_ids: np.ndarray
    instances: np.ndarray
    categories: dict
    objects: list


def _grid_faces(n1: int, n2: int, base: int, wrap2: bool = False) -> np.ndarray:
    """Triangles of an ``(n1 + 1) x m`` vertex grid (m = n2 + 1, or n2 with wrap-around)."""
    m = n2 if wrap2 else n2 + 1
    i = np.arange(n1)[:, None]
    j = np.arange(n2)[None, :]
    a = i * m + j
    b = i * m + (j + 1) % m
    c = (i + 1) * m + j
    d = (i + 1) * m + (j + 1) % m
    q = np.stack([a, c, d, b], -1).reshape(-1, 4) + base
    return np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])


def _cells(x: np.ndarray, extent: float, patch: float) -> np.ndarray:
    n = max(1, int(math.ceil(extent / patch)))
    return np.clip((x / max(extent, 1e-9) * n).astype(np.int64), 0, n - 1)


def _box(h: np.ndarray, spacing: float, patch: float):
    verts, faces, seg = [], [], []
    base = 0
    for axis in range(3):
        a1, a2 = (axis + 1) % 3, (axis + 2) % 3
        n1 = max(1, int(math.ceil(2 * h[a1] / spacing)))
        n2 = max(1, int(math.ceil(2 * h[a2] / spacing)))
        G1, G2 = np.meshgrid(np.linspace(-h[a1], h[a1], n1 + 1), np.linspace(-h[a2], h[a2], n2 + 1), indexing="ij")
        for s, sign in enumerate((-1.0, 1.0)):
            v = np.zeros((G1.size, 3))
            v[:, axis] = sign * h[axis]
            v[:, a1], v[:, a2] = G1.reshape(-1), G2.reshape(-1)
            c1 = _cells(v[:, a1] + h[a1], 2 * h[a1], patch)
            c2 = _cells(v[:, a2] + h[a2], 2 * h[a2], patch)
            seg.append(((axis * 2 + s) * 1000 + c1) * 1000 + c2)
            verts.append(v)
            f = _grid_faces(n1, n2, base)
            faces.append(f if sign > 0 else f[:, ::-1])  # outward normals
            base += len(v)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(seg)


def _cylinder(r: float, hh: float, spacing: float, patch: float):
    n_seg = max(12, int(math.ceil(2 * math.pi * r / spacing)))
    n_h = max(1, int(math.ceil(2 * hh / spacing)))
    n_r = max(1, int(math.ceil(r / spacing)))
    ang = np.linspace(0, 2 * math.pi, n_seg, endpoint=False)
    n_sector = max(1, int(round(2 * math.pi * r / patch)))
    sector = np.minimum((ang / (2 * math.pi) * n_sector).astype(np.int64), n_sector - 1)
    z = np.linspace(-hh, hh, n_h + 1)
    Z, A = np.meshgrid(z, ang, indexing="ij")
    side = np.stack([r * np.cos(A), r * np.sin(A), Z], -1).reshape(-1, 3)
    side_seg = (0 * 1000 + np.tile(sector, n_h + 1)) * 1000 + _cells(side[:, 2] + hh, 2 * hh, patch)
    verts, faces, seg = [side], [_grid_faces(n_h, n_seg, 0, wrap2=True)[:, ::-1]], [side_seg]  # outward normals
    base = len(side)
    cap_sectors = max(1, int(round(2 * math.pi * r / (2 * patch))))
    cap_sector = np.minimum((ang / (2 * math.pi) * cap_sectors).astype(np.int64), cap_sectors - 1)
    for k, zc in enumerate((-hh, hh)):
        rings = [np.zeros((1, 3)) + [0, 0, zc]]
        segs = [np.array([0])]
        for q in range(1, n_r + 1):
            rq = r * q / n_r
            rings.append(np.stack([rq * np.cos(ang), rq * np.sin(ang), np.full(n_seg, zc)], -1))
            segs.append(cap_sector)
        v = np.concatenate(rings)
        f = [np.stack([np.zeros(n_seg, dtype=np.int64), 1 + (np.arange(n_seg) + 1) % n_seg, 1 + np.arange(n_seg)], -1)]
        if n_r > 1:
            f.append(_grid_faces(n_r - 1, n_seg, 1, wrap2=True)[:, ::-1])
        f = np.concatenate(f)  # normals -z; the top cap is flipped to +z
        if k == 1:
            f = f[:, ::-1]
        verts.append(v)
        faces.append(f + base)
        seg.append((1 + k) * 1000000 + np.concatenate(segs))
        base += len(v)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(seg)


def _sphere(r: float, spacing: float, patch: float):
    rings = max(6, int(math.ceil(math.pi * r / spacing)))
    segs = max(12, int(math.ceil(2 * math.pi * r / spacing)))
    th = np.linspace(0, math.pi, rings + 1)
    ph = np.linspace(0, 2 * math.pi, segs, endpoint=False)
    T, P = np.meshgrid(th, ph, indexing="ij")
    v = np.stack([r * np.sin(T) * np.cos(P), r * np.sin(T) * np.sin(P), r * np.cos(T)], -1).reshape(-1, 3)
    n_band = max(1, int(round(math.pi * r / patch)))
    n_sector = max(1, int(round(2 * math.pi * r / patch)))
    band = np.minimum((T / math.pi * n_band).astype(np.int64), n_band - 1).reshape(-1)
    sector = np.minimum((P / (2 * math.pi) * n_sector).astype(np.int64), n_sector - 1).reshape(-1)
    return v, _grid_faces(rings, segs, 0, wrap2=True), band * 1000 + sector


def dense_primitive_mesh(prims: Primitives, object_spacing: float = 0.04, room_spacing: float = 0.12,
                         patch_size: float = 0.3, n_room: int = N_ROOM_PRIMS):
    """Tessellate primitives densely, with superpoints.

    Args:
        prims: the scene's primitives (the first ``n_room`` are room structure).
        object_spacing / room_spacing: vertex spacing in metres on objects / on the room.
        patch_size: superpoint patch size in metres.
    Returns:
        ``vertices (V, 3) float32, faces (F, 3) int64 (counter-clockwise seen from outside: normals
        point out of each primitive), prim (V,) int64 primitive index, superpoints (V,) int64,
        colors (V, 3) uint8``.
    """
    if object_spacing <= 0 or room_spacing <= 0 or patch_size <= 0:
        raise InputError("object_spacing, room_spacing and patch_size must be > 0")
    V, F, P, S, C = [], [], [], [], []
    base = 0
    next_seg = 0
    for p in range(len(prims)):
        k, s = int(prims.kind[p]), prims.size[p]
        spacing = room_spacing if p < n_room else object_spacing
        patch = max(patch_size, 2 * spacing) if p < n_room else patch_size
        if k == BOX:
            v, f, sg = _box(s, spacing, patch * (4 if p < n_room else 1))
        elif k == CYLINDER:
            v, f, sg = _cylinder(float(s[0]), float(s[2]), spacing, patch)
        elif k == SPHERE:
            v, f, sg = _sphere(float(s[0]), spacing, patch)
        else:  # pragma: no cover - kinds are validated by the generator
            raise InputError(f"unknown primitive kind {k}")
        v = v @ prims.rotation[p].T + prims.center[p]
        _, sg = np.unique(sg, return_inverse=True)
        V.append(v)
        F.append(f + base)
        P.append(np.full(len(v), p, dtype=np.int64))
        S.append(sg.reshape(-1) + next_seg)
        next_seg += int(sg.max()) + 1
        col = 0.5 * (prims.color_a[p] + prims.color_b[p])
        C.append(np.tile(np.round(col * 255).astype(np.uint8), (len(v), 1)))
        base += len(v)
    return (np.concatenate(V).astype(np.float32), np.concatenate(F).astype(np.int64), np.concatenate(P),
            np.concatenate(S), np.concatenate(C))


def observed_vertices(vertices: np.ndarray, frames, tol_abs: float = 0.05, tol_rel: float = 0.02) -> np.ndarray:
    """``(V,)`` int64: in how many frames each vertex is seen (in view, depth within tolerance).

    Args:
        frames: objects with ``depth (H, W)``, ``K (3, 3)`` and ``cam_to_world (4, 4)`` (frames
            without depth or pose are skipped).
        tol_abs / tol_rel: a vertex at depth z is seen when ``|z - D| <= max(tol_abs, tol_rel * D)``.
    """
    counts = np.zeros(len(vertices), dtype=np.int64)
    pts = np.asarray(vertices, dtype=np.float32)
    px, py, pz = pts[:, 0], pts[:, 1], pts[:, 2]
    for fr in frames:
        if fr.depth is None or fr.cam_to_world is None:
            continue
        R, t = fr.cam_to_world[:3, :3], fr.cam_to_world[:3, 3]
        off = -(t @ R)
        # camera coordinates column by column (much faster than an (N, 3) @ (3, 3) product)
        xc, yc, z = ((px * np.float32(R[0, j]) + py * np.float32(R[1, j]) + pz * np.float32(R[2, j])
                      + np.float32(off[j])) for j in range(3))
        ok = z > 1e-6
        inv = np.float32(1.0) / np.where(ok, z, np.float32(1.0))
        K = fr.K
        ui = np.rint(np.float32(K[0, 0]) * xc * inv + np.float32(K[0, 1]) * yc * inv + np.float32(K[0, 2]))
        vi = np.rint(np.float32(K[1, 1]) * yc * inv + np.float32(K[1, 2]))
        H, W = fr.depth.shape
        ok &= (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H)
        idx = np.nonzero(ok)[0]
        d = fr.depth[vi[idx].astype(np.int64), ui[idx].astype(np.int64)]
        good = (d > 0) & (np.abs(z[idx] - d) <= np.maximum(tol_abs, tol_rel * d))
        counts[idx[good]] += 1
    return counts


def _compact(vertices, faces, keep: np.ndarray):
    """Keep vertices where ``keep``; drop faces touching removed vertices; renumber."""
    new = np.full(len(vertices), -1, dtype=np.int64)
    new[keep] = np.arange(int(keep.sum()))
    f = new[faces]
    return new, f[(f >= 0).all(1)]


def synth_scannet_mesh(scene, object_spacing: float = 0.04, room_spacing: float = 0.12, patch_size: float = 0.3,
                       drop_unobserved: bool = True, min_gt_vertices: int = 100) -> SynthScanNetMesh:
    """The ScanNet-style mesh of a generated scene (see the module docstring).

    Args:
        scene: an `InMemoryScene` from `threeam.data.synth.generate_scene` (its ``meta`` holds the
            primitives and the object list).
        drop_unobserved: remove vertices no frame sees.
        min_gt_vertices: objects with fewer (observed) vertices are left unannotated.
    """
    prims = scene.meta.get("primitives") if hasattr(scene, "meta") else None
    if prims is None:
        raise InputError(f"scene {getattr(scene, 'name', '?')!r} has no primitives in its meta "
                         "(only generated scenes can be exported with synth_scannet_mesh)")
    v, f, prim, seg, col = dense_primitive_mesh(prims, object_spacing, room_spacing, patch_size)
    inst = prims.instance[prim].astype(np.int64)
    if drop_unobserved:
        seen = observed_vertices(v, [scene.frame(i) for i in range(len(scene))]) > 0
        new, f = _compact(v, f, seen)
        v, prim, seg, col, inst = v[seen], prim[seen], seg[seen], col[seen], inst[seen]
    _, seg = np.unique(seg, return_inverse=True)
    seg = seg.reshape(-1).astype(np.int64)
    shapes = {int(o["id"]): o["shape"] for o in scene.meta.get("objects", [])}
    gt = np.zeros(len(v), dtype=np.int64)
    categories: dict[int, str] = {}
    objects: list[dict] = []
    next_inst = max(shapes, default=0) + 1
    room_groups = [(0, FLOOR)] + [(p, WALL) for p in range(2, N_ROOM_PRIMS)]
    for p, (name, label) in room_groups:
        m = prim == p
        if m.sum() >= min_gt_vertices:
            gt[m] = label * 1000 + next_inst
            categories[label] = name
            objects.append({"instance": next_inst, "label_id": label, "category": name,
                            "segments": sorted(int(s) for s in np.unique(seg[m]))})
        next_inst += 1
    for oid, shape in sorted(shapes.items()):
        m = inst == oid
        if m.sum() < min_gt_vertices:
            continue
        name, label = SHAPE_LABELS.get(shape, SHAPE_LABELS["box"])
        gt[m] = label * 1000 + oid
        categories[label] = name
        objects.append({"instance": oid, "label_id": label, "category": name,
                        "segments": sorted(int(s) for s in np.unique(seg[m]))})
    return SynthScanNetMesh(vertices=v, faces=f, colors=col, superpoints=seg, gt_ids=gt, instances=inst,
                            categories=categories, objects=objects)


# nyu40 ids of the categories used (ScanNet v2 label space), for the label table written beside the scenes
_NYU40 = {"wall": 1, "floor": 2, "ceiling": 22, "box": 29, "bucket": 40, "ball": 40, "table": 7, "lamp": 35,
          "bed": 4, "couch": 6, "shelf": 15}
_SCANNET200 = {"wall": 1, "floor": 3, "ceiling": 41, **{name: label for name, label in SHAPE_LABELS.values()}}


def synth_scene_id(seed: int) -> str:
    """The ScanNet-style id of generated scene ``seed``: ``scene9SSS_00`` (a range real ScanNet does not use)."""
    if not 0 <= seed <= 999:
        raise InputError(f"ScanNet-style ids cover seeds 0..999, got {seed}")
    return f"scene{9000 + seed:04d}_00"


def write_label_table(root) -> "Path":
    """Write ``root/scannetv2-labels.combined.tsv`` with the categories generated scenes use."""
    from pathlib import Path

    from threeam.data.scannet.labels import LABEL_TABLE_NAME
    from threeam.data.scannet.labels import write_label_table as write_table

    path = Path(root) / LABEL_TABLE_NAME
    write_table(path, {name: (_SCANNET200[name], _NYU40[name]) for name in sorted(_SCANNET200)})
    return path


def write_synth_scannet(scene, root, scene_id: str | None = None, frames_layout: str = "exported",
                        mesh: SynthScanNetMesh | None = None, **mesh_options):
    """Write a generated scene in the ScanNet layout, readable by `threeam.data.scannet.ScanNetScene`.

    Writes ``root/scans/<id>/`` (mesh ``_vh_clean_2.ply``, superpoints ``segs.json``, objects
    ``aggregation.json``, ``<id>.txt``, and the frames as ``.sens`` or exported folders, colour and
    depth at the same size) and ``root/scannetv2-labels.combined.tsv``.

    Args:
        scene: a generated `InMemoryScene`.
        scene_id: default `synth_scene_id` of its seed.
        frames_layout: ``"exported"`` (color/ depth/ pose/ intrinsic/) or ``"sens"``.
        mesh: a precomputed `SynthScanNetMesh` (else made with ``mesh_options``).
    Returns:
        the scene folder.
    """
    from pathlib import Path

    from threeam.data.scannet.scene import write_scannet_scene

    m = mesh if mesh is not None else synth_scannet_mesh(scene, **mesh_options)
    sid = scene_id or synth_scene_id(int(scene.meta.get("seed", 0)))
    groups = [{"objectId": o["instance"] - 1, "label": o["category"], "segments": o["segments"]} for o in m.objects]
    colors, depths, poses = [], [], []
    for i in range(len(scene)):
        f = scene.frame(i)
        colors.append(f.rgb)
        depths.append(np.clip(np.rint(np.nan_to_num(f.depth) * 1000.0), 0, 65535).astype(np.uint16))
        poses.append(f.cam_to_world)
    K = scene.frame(0).K
    root = Path(root)
    d = write_scannet_scene(root / "scans" / sid, m.vertices, m.faces, m.colors, m.superpoints, groups,
                            frames={"colors": colors, "depths_mm": depths, "poses": poses, "K_color": K, "K_depth": K},
                            frames_layout=frames_layout, axis_alignment=np.eye(4))
    write_label_table(root)
    return d
