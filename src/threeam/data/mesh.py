"""Triangle meshes: tessellating analytic primitives, binary PLY read/write, and a vectorised CPU
(torch) z-buffer rasteriser used to project per-vertex 3D instance labels into 2D frames.

Rasteriser: triangles are bucketed by the size of their pixel bounding box (powers of two); each
bucket evaluates edge functions on an ``S x S`` pixel grid per triangle in one batched tensor
op, then a global ``scatter_reduce(amin)`` z-buffer keeps the nearest fragment per pixel.
Perspective-correct depth; pixel centres at integer coordinates (OpenCV K).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from threeam.data.render import BOX, CYLINDER, SPHERE, Primitives
from threeam.errors import InputError
from threeam.io.atomic import atomic_path

__all__ = ["primitives_to_mesh", "write_ply", "read_ply", "rasterize"]


def _box_mesh(h: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Box with half extents h, each face a grid of quads no larger than ``step`` metres."""
    verts, faces = [], []
    for axis in range(3):
        a1, a2 = (axis + 1) % 3, (axis + 2) % 3
        n1 = max(1, int(math.ceil(2 * h[a1] / step)))
        n2 = max(1, int(math.ceil(2 * h[a2] / step)))
        g1 = np.linspace(-h[a1], h[a1], n1 + 1)
        g2 = np.linspace(-h[a2], h[a2], n2 + 1)
        G1, G2 = np.meshgrid(g1, g2, indexing="ij")
        for sign in (-1.0, 1.0):
            base = sum(len(v) for v in verts)
            v = np.zeros((G1.size, 3))
            v[:, axis] = sign * h[axis]
            v[:, a1] = G1.reshape(-1)
            v[:, a2] = G2.reshape(-1)
            verts.append(v)
            i = np.arange(n1)[:, None] * (n2 + 1) + np.arange(n2)[None, :]
            i = i.reshape(-1)
            q = np.stack([i, i + n2 + 1, i + n2 + 2, i + 1], -1) + base
            faces.append(np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]]))
    return np.concatenate(verts), np.concatenate(faces)


def _cylinder_mesh(r: float, hh: float, segments: int) -> tuple[np.ndarray, np.ndarray]:
    ang = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring = np.stack([r * np.cos(ang), r * np.sin(ang)], -1)
    bottom = np.concatenate([ring, np.full((segments, 1), -hh)], 1)
    top = np.concatenate([ring, np.full((segments, 1), hh)], 1)
    verts = np.concatenate([bottom, top, [[0, 0, -hh], [0, 0, hh]]])
    i = np.arange(segments)
    j = (i + 1) % segments
    side = np.concatenate([np.stack([i, j, j + segments], -1), np.stack([i, j + segments, i + segments], -1)])
    cb = np.stack([np.full(segments, 2 * segments), j, i], -1)
    ct = np.stack([np.full(segments, 2 * segments + 1), i + segments, j + segments], -1)
    return verts, np.concatenate([side, cb, ct])


def _sphere_mesh(r: float, rings: int, segments: int) -> tuple[np.ndarray, np.ndarray]:
    th = np.linspace(0, np.pi, rings + 1)
    ph = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    T, Ph = np.meshgrid(th, ph, indexing="ij")
    verts = np.stack([r * np.sin(T) * np.cos(Ph), r * np.sin(T) * np.sin(Ph), r * np.cos(T)], -1).reshape(-1, 3)
    i = np.arange(rings)[:, None] * segments + np.arange(segments)[None, :]
    jn = np.arange(rings)[:, None] * segments + (np.arange(segments)[None, :] + 1) % segments
    a, b, c, d = i, jn, i + segments, jn + segments
    faces = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    return verts, faces


def primitives_to_mesh(prims: Primitives, step: float = 0.25, segments: int = 32,
                       rings: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tessellate primitives in world coordinates.

    Args:
        step: maximum quad size on box faces (metres); large faces (walls) are subdivided so that a
            rasteriser that drops triangles crossing the near plane loses nothing visible.
        segments / rings: tessellation of cylinders and spheres.
    Returns:
        ``vertices (V, 3) float32, faces (F, 3) int64, labels (V,) int32, colors (V, 3) uint8``.
    """
    V, F, L, C = [], [], [], []
    base = 0
    for p in range(len(prims)):
        k, s = int(prims.kind[p]), prims.size[p]
        if k == BOX:
            v, f = _box_mesh(s, step)
        elif k == CYLINDER:
            v, f = _cylinder_mesh(float(s[0]), float(s[2]), segments)
        elif k == SPHERE:
            v, f = _sphere_mesh(float(s[0]), rings, segments)
        else:  # pragma: no cover - kinds are validated at construction
            raise InputError(f"unknown primitive kind {k}")
        v = v @ prims.rotation[p].T + prims.center[p]
        V.append(v)
        F.append(f + base)
        L.append(np.full(len(v), prims.instance[p], dtype=np.int32))
        col = 0.5 * (prims.color_a[p] + prims.color_b[p])
        C.append(np.tile(np.round(col * 255).astype(np.uint8), (len(v), 1)))
        base += len(v)
    return (np.concatenate(V).astype(np.float32), np.concatenate(F).astype(np.int64),
            np.concatenate(L), np.concatenate(C))


def write_ply(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray | None = None,
              colors: np.ndarray | None = None, labels: np.ndarray | None = None,
              label_name: str = "label") -> None:
    """Write a binary little-endian PLY atomically: vertex x y z (float32) [red green blue uchar]
    [label int32], and faces as ``vertex_indices`` (uchar count, int32 indices)."""
    n = len(vertices)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if labels is not None:
        fields += [(label_name, "<i4")]
    arr = np.zeros(n, dtype=fields)
    arr["x"], arr["y"], arr["z"] = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    if colors is not None:
        arr["red"], arr["green"], arr["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    if labels is not None:
        arr[label_name] = labels
    ply_types = {"<f4": "float", "u1": "uchar", "<i4": "int"}
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property {ply_types[t]} {name}" for name, t in fields]
    body = arr.tobytes()
    if faces is not None:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
        fa = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
        fa["n"] = 3
        fa["i"] = faces
        body += fa.tobytes()
    header.append("end_header")
    data = ("\n".join(header) + "\n").encode("ascii") + body
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply(path: str | os.PathLike) -> dict:
    """Read a PLY (binary little/big endian or ASCII) with a vertex element and optional triangle faces.

    Returns:
        dict with ``vertices (V, 3) float32``, ``faces (F, 3) int64`` or None, and every vertex
        property by name (e.g. ``red``, ``label``) as a 1-D array.
    Raises:
        InputError: missing, truncated or unsupported file (message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"mesh file not found: {path}")
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise InputError(f"{path} is not a PLY file (no 'ply' magic / end_header)")
    header = data[:end].decode("ascii", "replace").splitlines()
    body_start = data.index(b"\n", end) + 1
    fmt, elements = None, []
    for line in header:
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            elements.append([tok[1], int(tok[2]), []])
        elif tok[0] == "property" and elements:
            elements[-1][2].append(tok[1:])
    if fmt not in ("binary_little_endian", "binary_big_endian", "ascii"):
        raise InputError(f"{path}: unsupported PLY format {fmt!r}")
    out: dict = {"faces": None}
    try:
        if fmt == "ascii":
            lines = data[body_start:].decode("ascii").split("\n")
            pos = 0
            for name, count, props in elements:
                rows = [lines[pos + i].split() for i in range(count)]
                pos += count
                if name == "vertex":
                    a = np.array(rows, dtype=np.float64).reshape(count, len(props))
                    for j, p in enumerate(props):
                        out[p[-1]] = a[:, j].astype(_PLY_TYPES.get(p[0], "f8"))
                elif name == "face":
                    out["faces"] = np.array([[int(x) for x in r[1:4]] for r in rows], dtype=np.int64).reshape(-1, 3)
        else:
            endian = "<" if fmt == "binary_little_endian" else ">"
            off = body_start
            for name, count, props in elements:
                if any(p[0] == "list" for p in props):
                    if len(props) != 1:
                        raise InputError(f"{path}: face element with extra properties is not supported")
                    _, ct, it, _ = props[0]
                    dt = np.dtype([("n", endian + _PLY_TYPES[ct]), ("i", endian + _PLY_TYPES[it], (3,))])
                    arr = np.frombuffer(data, dtype=dt, count=count, offset=off)
                    if count and not np.all(arr["n"] == 3):
                        raise InputError(f"{path}: only triangle faces are supported")
                    off += dt.itemsize * count
                    if name == "face":
                        out["faces"] = arr["i"].astype(np.int64)
                else:
                    dt = np.dtype([(p[1], endian + _PLY_TYPES[p[0]]) for p in props])
                    arr = np.frombuffer(data, dtype=dt, count=count, offset=off)
                    off += dt.itemsize * count
                    if name == "vertex":
                        for p in props:
                            out[p[1]] = arr[p[1]].copy()
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"cannot read PLY {path}: {e}") from e
    if "x" not in out:
        raise InputError(f"{path}: PLY has no vertex x/y/z")
    out["vertices"] = np.stack([out["x"], out["y"], out["z"]], -1).astype(np.float32)
    return out


def rasterize(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray,
              height: int, width: int, near: float = 0.05, far: float = 20.0,
              device: str | torch.device = "cpu", max_batch: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer rasterisation of a triangle mesh into a pinhole view.

    Args:
        vertices: ``(V, 3)`` world points; faces: ``(F, 3)`` indices.
        K: ``(3, 3)`` intrinsics; world_to_cam: ``(4, 4)``.
        near / far: triangles with a vertex nearer than ``near`` or all vertices beyond ``far`` are
            dropped (no clipping; meshes are expected to be finely tessellated).
    Returns:
        ``depth (H, W) float32`` z-depth (0 = empty) and ``face (H, W) int64`` (-1 = empty).
    """
    dev = torch.device(device)
    v = torch.as_tensor(np.asarray(vertices, dtype=np.float64), device=dev)
    Rt = torch.as_tensor(np.asarray(world_to_cam, dtype=np.float64), device=dev)
    vc = v @ Rt[:3, :3].T + Rt[:3, 3]
    z = vc[:, 2]
    Kt = torch.as_tensor(np.asarray(K, dtype=np.float64), device=dev)
    uv = (vc @ Kt.T)[:, :2] / z.clamp_min(1e-9)[:, None]
    f = torch.as_tensor(np.asarray(faces, dtype=np.int64), device=dev)
    fz = z[f]
    keep = (fz.amin(1) > near) & (fz.amin(1) < far)
    fidx = torch.nonzero(keep).squeeze(1)
    f = f[fidx]
    fuv = uv[f]  # (F, 3, 2)
    fz = z[f]
    xmin = torch.ceil(fuv[..., 0].amin(1)).clamp(0, width - 1)
    xmax = torch.floor(fuv[..., 0].amax(1)).clamp(-1, width - 1)
    ymin = torch.ceil(fuv[..., 1].amin(1)).clamp(0, height - 1)
    ymax = torch.floor(fuv[..., 1].amax(1)).clamp(-1, height - 1)
    on = (xmax >= xmin) & (ymax >= ymin) & (fuv[..., 0].amax(1) >= 0) & (fuv[..., 1].amax(1) >= 0)
    sel = torch.nonzero(on).squeeze(1)
    fidx, fuv, fz = fidx[sel], fuv[sel], fz[sel]
    xmin, xmax, ymin, ymax = xmin[sel].long(), xmax[sel].long(), ymin[sel].long(), ymax[sel].long()
    bx = torch.ceil(torch.log2((xmax - xmin + 1).double().clamp_min(1))).long()
    by = torch.ceil(torch.log2((ymax - ymin + 1).double().clamp_min(1))).long()
    bucket = bx * 64 + by
    fuv32 = fuv.float()
    invz_v = (1.0 / fz).float()
    pix_all, z_all, f_all = [], [], []
    for b in torch.unique(bucket).tolist():
        SX, SY = 1 << (b // 64), 1 << (b % 64)
        ids = torch.nonzero(bucket == b).squeeze(1)
        per = max(1, max_batch // (SX * SY))
        oy, ox = torch.meshgrid(torch.arange(SY, device=dev), torch.arange(SX, device=dev), indexing="ij")
        oy, ox = oy.reshape(-1), ox.reshape(-1)
        for s in range(0, ids.numel(), per):
            t = ids[s:s + per]
            px = xmin[t][:, None] + ox[None]
            py = ymin[t][:, None] + oy[None]
            inside_box = (px <= xmax[t][:, None]) & (py <= ymax[t][:, None])
            a, bb, c = fuv32[t, 0], fuv32[t, 1], fuv32[t, 2]  # (n, 2)
            area = (bb[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (bb[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
            # coordinates relative to the first vertex keep float32 edge functions accurate
            pxf = px.float() - a[:, 0:1]
            pyf = py.float() - a[:, 1:2]
            b0, c0 = bb - a, c - a

            def edge(p, q):
                return (q[:, 0:1] - p[:, 0:1]) * (pyf - p[:, 1:2]) - (q[:, 1:2] - p[:, 1:2]) * (pxf - p[:, 0:1])

            zero = torch.zeros_like(b0)
            inv_area = 1.0 / torch.where(area.abs() > 1e-12, area, torch.ones_like(area))[:, None]
            w0 = edge(b0, c0) * inv_area
            w1 = edge(c0, zero) * inv_area
            w2 = 1.0 - w0 - w1
            tol = -1e-6
            ok = inside_box & (w0 >= tol) & (w1 >= tol) & (w2 >= tol) & (area.abs() > 1e-12)[:, None]
            r, cidx = torch.nonzero(ok, as_tuple=True)
            iz = invz_v[t]
            zz = 1.0 / (w0[r, cidx] * iz[r, 0] + w1[r, cidx] * iz[r, 1] + w2[r, cidx] * iz[r, 2])
            pix_all.append(py[r, cidx] * width + px[r, cidx])
            z_all.append(zz.double())
            f_all.append(fidx[t][r])
    depth = torch.zeros(height * width, dtype=torch.float64, device=dev)
    face = torch.full((height * width,), -1, dtype=torch.int64, device=dev)
    if pix_all:
        pix = torch.cat(pix_all)
        zz = torch.cat(z_all)
        ff = torch.cat(f_all)
        zbuf = torch.full((height * width,), float("inf"), dtype=torch.float64, device=dev)
        zbuf.scatter_reduce_(0, pix, zz, reduce="amin")
        win = zz <= zbuf[pix]
        fbuf = torch.full((height * width,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=dev)
        fbuf.scatter_reduce_(0, pix[win], ff[win], reduce="amin")
        hit = torch.isfinite(zbuf)
        depth[hit] = zbuf[hit]
        face[hit] = fbuf[hit]
    return (depth.reshape(height, width).cpu().numpy().astype(np.float32),
            face.reshape(height, width).cpu().numpy())
