"""Vectorised CPU/CUDA ray casting against analytic primitives (boxes, cylinders, spheres).

Every pixel ray is intersected with every primitive at once (batched over rays x primitives,
chunked over rays to bound memory); there is no per-pixel Python loop. Surfaces get procedural
*solid* textures evaluated in each primitive's local frame, so a copy of an object (same shape,
size and texture parameters) looks identical wherever it is placed - that is how look-alike
distractors are made.

Primitive local frames: box = axis-aligned box with half extents ``size``; cylinder = axis along
local z, radius ``size[0]``, half height ``size[2]``; sphere = radius ``size[0]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["BOX", "CYLINDER", "SPHERE", "TEXTURES", "Primitives", "render_rays", "render_pinhole", "frustum_cull",
           "screen_boxes", "RenderOutput"]

BOX, CYLINDER, SPHERE = 0, 1, 2
TEXTURES = ("checker", "stripes", "waves", "rings", "plain", "noise")
"""Solid textures; ``noise`` is aperiodic (a pseudo-random value per cubic cell of the texture period)."""
_EPS = 1e-6
_LIGHT = np.array([0.35, 0.5, 0.79])  # direction *towards* the light (z up), normalised below


@dataclass
class Primitives:
    """A set of P primitives (numpy arrays; converted to tensors at render time).

    Attributes:
        kind: ``(P,)`` int64, BOX / CYLINDER / SPHERE.
        center: ``(P, 3)`` float64 world centre.
        rotation: ``(P, 3, 3)`` float64 local-to-world rotation (columns = local axes in world).
        size: ``(P, 3)`` float64 half extents (box), (r, r, half height) (cylinder), (r, r, r) (sphere).
        instance: ``(P,)`` int64 instance id written to the id map (0 = structure / background).
        texture: ``(P,)`` int64 index into :data:`TEXTURES`.
        color_a: ``(P, 3)`` float64 in [0, 1], first texture colour.
        color_b: ``(P, 3)`` float64 in [0, 1], second texture colour.
        tex_scale: ``(P,)`` float64 texture period in metres.
    """

    kind: np.ndarray
    center: np.ndarray
    rotation: np.ndarray
    size: np.ndarray
    instance: np.ndarray
    texture: np.ndarray
    color_a: np.ndarray
    color_b: np.ndarray
    tex_scale: np.ndarray

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @staticmethod
    def concat(parts: list["Primitives"]) -> "Primitives":
        return Primitives(*[np.concatenate([getattr(p, f) for p in parts], axis=0)
                            for f in Primitives.__dataclass_fields__])


@dataclass
class RenderOutput:
    """Render result. rgb ``(H, W, 3)`` uint8; depth ``(H, W)`` float32 ray parameter t (z-depth for
    z=1 rays, range for unit rays; 0 = miss); ids ``(H, W)`` int32 instance ids; prim ``(H, W)``
    int64 hit primitive index (-1 = miss)."""

    rgb: np.ndarray
    depth: np.ndarray
    ids: np.ndarray
    prim: np.ndarray


def _to_tensors(p: Primitives, device) -> dict:
    f = dict(dtype=torch.float32, device=device)
    return dict(
        kind=torch.as_tensor(p.kind, dtype=torch.int64, device=device),
        center=torch.as_tensor(p.center, **f),
        rot=torch.as_tensor(p.rotation, **f),
        size=torch.as_tensor(p.size, **f),
        instance=torch.as_tensor(p.instance, dtype=torch.int64, device=device),
        texture=torch.as_tensor(p.texture, dtype=torch.int64, device=device),
        color_a=torch.as_tensor(p.color_a, **f),
        color_b=torch.as_tensor(p.color_b, **f),
        tex_scale=torch.as_tensor(p.tex_scale, **f),
    )


def _safe_inv(d: torch.Tensor) -> torch.Tensor:
    d = torch.where(d.abs() < _EPS, torch.where(d < 0, -_EPS, _EPS) + torch.zeros_like(d), d)
    return 1.0 / d


def _hit_box(o: torch.Tensor, d: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """o, d: (N, Pb, 3) local; h: (Pb, 3). Returns t (N, Pb), inf on miss (camera inside = miss)."""
    inv = _safe_inv(d)
    t1 = (-h - o) * inv
    t2 = (h - o) * inv
    tmin = torch.minimum(t1, t2).amax(-1)
    tmax = torch.maximum(t1, t2).amin(-1)
    hit = (tmax >= tmin) & (tmin > _EPS)
    return torch.where(hit, tmin, torch.full_like(tmin, float("inf")))


def _hit_cylinder(o: torch.Tensor, d: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    r, hh = size[:, 0], size[:, 2]
    inf = float("inf")
    a = d[..., 0] ** 2 + d[..., 1] ** 2
    b = 2 * (o[..., 0] * d[..., 0] + o[..., 1] * d[..., 1])
    c = o[..., 0] ** 2 + o[..., 1] ** 2 - r ** 2
    disc = b * b - 4 * a * c
    sq = torch.sqrt(disc.clamp_min(0))
    t_side = (-b - sq) / (2 * a.clamp_min(1e-12))
    z_side = o[..., 2] + t_side * d[..., 2]
    ok_side = (disc >= 0) & (a > 1e-12) & (t_side > _EPS) & (z_side.abs() <= hh)
    t_side = torch.where(ok_side, t_side, torch.full_like(t_side, inf))
    inv_dz = _safe_inv(d[..., 2])
    best = t_side
    for sign in (-1.0, 1.0):
        t_cap = (sign * hh - o[..., 2]) * inv_dz
        x = o[..., 0] + t_cap * d[..., 0]
        y = o[..., 1] + t_cap * d[..., 1]
        ok = (t_cap > _EPS) & (x * x + y * y <= r * r)
        best = torch.minimum(best, torch.where(ok, t_cap, torch.full_like(t_cap, inf)))
    return best


def _hit_sphere(o: torch.Tensor, d: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    r = size[:, 0]
    a = (d * d).sum(-1)
    b = 2 * (o * d).sum(-1)
    c = (o * o).sum(-1) - r ** 2
    disc = b * b - 4 * a * c
    t = (-b - torch.sqrt(disc.clamp_min(0))) / (2 * a)
    ok = (disc >= 0) & (t > _EPS)
    return torch.where(ok, t, torch.full_like(t, float("inf")))


def _local_normal(kind: torch.Tensor, pl: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Outward normal in local frame for hit points pl (M, 3) on primitives with kind/size (M,)/(M, 3)."""
    # box: axis of max |p|/h
    rel = pl.abs() / size.clamp_min(1e-9)
    axis = rel.argmax(-1)
    n_box = torch.zeros_like(pl)
    n_box.scatter_(1, axis[:, None], torch.sign(pl.gather(1, axis[:, None])))
    # cylinder: cap or side
    radial = torch.sqrt(pl[:, 0] ** 2 + pl[:, 1] ** 2)
    cap = (pl[:, 2].abs() / size[:, 2].clamp_min(1e-9)) > (radial / size[:, 0].clamp_min(1e-9))
    n_side = torch.stack([pl[:, 0], pl[:, 1], torch.zeros_like(radial)], -1) / radial.clamp_min(1e-9)[:, None]
    n_cap = torch.stack([torch.zeros_like(radial), torch.zeros_like(radial), torch.sign(pl[:, 2])], -1)
    n_cyl = torch.where(cap[:, None], n_cap, n_side)
    n_sph = pl / pl.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    k = kind[:, None]
    return torch.where(k == BOX, n_box, torch.where(k == CYLINDER, n_cyl, n_sph))


def _texture(tex: torch.Tensor, pl: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Blend weight in [0, 1] between color_a (0) and color_b (1) for solid texture ``tex``."""
    q = pl / scale[:, None]
    checker = torch.remainder(torch.floor(q).sum(-1), 2.0)
    stripes = torch.remainder(torch.floor(q[:, 0] + q[:, 1] + q[:, 2]), 2.0)
    waves = 0.5 + 0.5 * torch.sin(3.1 * q[:, 0]) * torch.sin(2.3 * q[:, 1] + 1.0) * torch.sin(2.7 * q[:, 2] + 2.0)
    rings = torch.remainder(torch.floor(q.norm(dim=-1) * 1.5), 2.0)
    plain = torch.zeros_like(checker)
    cell = torch.floor(q)
    noise = torch.frac(torch.sin(cell[:, 0] * 127.1 + cell[:, 1] * 311.7 + cell[:, 2] * 74.7).abs() * 43758.5453)
    t = tex[:, None]
    stack = torch.stack([checker, stripes, waves, rings, plain, noise], -1)
    return stack.gather(1, t).squeeze(1)


def _shade(P: dict, o: torch.Tensor, d: torch.Tensor, t: torch.Tensor, pi: torch.Tensor,
           light: torch.Tensor) -> torch.Tensor:
    """Colour ``(M, 3)`` in [0, 1] of hits at ``o + t d`` on primitives ``pi``."""
    rotT = P["rot"][pi].transpose(1, 2)
    pw = o + t[:, None] * d
    pl = torch.einsum("mij,mj->mi", rotT, pw - P["center"][pi])
    nl = _local_normal(P["kind"][pi], pl, P["size"][pi])
    nw = torch.einsum("mij,mj->mi", P["rot"][pi], nl)
    lam = (nw * light).sum(-1).clamp_min(0)
    # soft fill light from the viewer keeps faces turned away from the key light readable
    view = -d / d.norm(dim=-1, keepdim=True)
    fill = (nw * view).sum(-1).abs()
    shade = 0.30 + 0.45 * lam + 0.25 * fill
    w = _texture(P["texture"][pi], pl, P["tex_scale"][pi])[:, None]
    col = P["color_a"][pi] * (1 - w) + P["color_b"][pi] * w
    return (col * shade[:, None]).clamp(0, 1)


_HIT = {BOX: _hit_box, CYLINDER: _hit_cylinder, SPHERE: _hit_sphere}


def render_rays(prims: Primitives, origins: np.ndarray | torch.Tensor, dirs: np.ndarray | torch.Tensor,
                device: str | torch.device = "cpu", chunk: int = 16384) -> tuple[torch.Tensor, ...]:
    """Cast N rays against all primitives.

    Args:
        origins: ``(N, 3)`` world ray origins, or ``(3,)`` for one shared origin (a camera centre;
            much faster).
        dirs: ``(N, 3)`` world ray directions (not necessarily unit; the returned t is in units of
            ``dirs``, so z=1 camera rays give z-depth and unit rays give range).
        device: torch device.
        chunk: rays per batch.
    Returns:
        ``(color (N, 3) float32 in [0, 1], t (N,) float32 (0 = miss), ids (N,) int64, prim (N,) int64)``.
    """
    P = _to_tensors(prims, device)
    dirs = torch.as_tensor(np.array(dirs) if not torch.is_tensor(dirs) else dirs,
                           dtype=torch.float32, device=device)
    origins = torch.as_tensor(np.array(origins) if not torch.is_tensor(origins) else origins,
                              dtype=torch.float32, device=device)
    shared = origins.ndim == 1 or bool((origins == origins[:1]).all())
    if origins.ndim == 1:
        origins = origins[None].expand_as(dirs)
    light = torch.as_tensor(_LIGHT / np.linalg.norm(_LIGHT), dtype=torch.float32, device=device)
    groups = {k: torch.nonzero(P["kind"] == k).squeeze(1) for k in (BOX, CYLINDER, SPHERE)}
    hit_fn = _HIT
    rotT = P["rot"].transpose(1, 2)  # world -> local
    # d_local[n, p, i] = sum_j rot[p, j, i] d[n, j]: one GEMM per primitive kind
    gemm = {k: P["rot"][idx].permute(1, 0, 2).reshape(3, -1) for k, idx in groups.items() if idx.numel()}
    n = origins.shape[0]
    out_c = torch.zeros(n, 3, device=device)
    out_t = torch.zeros(n, device=device)
    out_id = torch.zeros(n, dtype=torch.int64, device=device)
    out_p = torch.full((n,), -1, dtype=torch.int64, device=device)
    for s in range(0, n, chunk):
        o = origins[s:s + chunk]
        d = dirs[s:s + chunk]
        m = o.shape[0]
        best_t = torch.full((m,), float("inf"), device=device)
        best_p = torch.full((m,), -1, dtype=torch.int64, device=device)
        for k, idx in groups.items():
            if idx.numel() == 0:
                continue
            pk = idx.numel()
            if shared:
                ol = torch.einsum("pij,pj->pi", rotT[idx], o[0][None] - P["center"][idx])[None].expand(m, pk, 3)
            else:
                ol = torch.einsum("pij,npj->npi", rotT[idx], o[:, None, :] - P["center"][idx][None])
            dl = (d @ gemm[k]).view(m, pk, 3)
            t = hit_fn[k](ol, dl, P["size"][idx])  # (m, Pk)
            tk, ak = t.min(dim=1)
            better = tk < best_t
            best_t = torch.where(better, tk, best_t)
            best_p = torch.where(better, idx[ak], best_p)
        hi = torch.nonzero(torch.isfinite(best_t)).squeeze(1)
        if hi.numel():
            pi = best_p[hi]
            out_c[s + hi] = _shade(P, o[hi], d[hi], best_t[hi], pi, light)
            out_t[s + hi] = best_t[hi]
            out_id[s + hi] = P["instance"][pi]
            out_p[s + hi] = pi
    return out_c, out_t, out_id, out_p


def frustum_cull(prims: Primitives, K: np.ndarray, cam_to_world: np.ndarray, height: int, width: int) -> np.ndarray:
    """Indices of primitives whose bounding sphere intersects the view frustum (conservative)."""
    w2c_R = cam_to_world[:3, :3].T
    c = (prims.center - cam_to_world[:3, 3]) @ w2c_R.T  # (P, 3) camera-frame centres
    r = np.linalg.norm(prims.size, axis=1)
    x, y, z = c[:, 0], c[:, 1], c[:, 2]
    al, ar = (-0.5 - K[0, 2]) / K[0, 0], (width - 0.5 - K[0, 2]) / K[0, 0]
    at, ab = (-0.5 - K[1, 2]) / K[1, 1], (height - 0.5 - K[1, 2]) / K[1, 1]
    keep = z > -r
    for nx, ny, nz in ((1.0, 0.0, -al), (-1.0, 0.0, ar), (0.0, 1.0, -at), (0.0, -1.0, ab)):
        n = np.sqrt(nx * nx + ny * ny + nz * nz)
        keep &= (nx * x + ny * y + nz * z) / n > -r
    return np.nonzero(keep)[0]


def screen_boxes(prims: Primitives, K: np.ndarray, cam_to_world: np.ndarray, height: int,
                 width: int) -> np.ndarray:
    """Conservative pixel rectangle ``(P, 4)`` = x0, x1, y0, y1 (end-exclusive) per primitive, from the
    projected corners of its local bounding box; the full image when a corner is behind the camera."""
    signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=np.float64)
    corners = np.einsum("pij,pkj->pki", prims.rotation, prims.size[:, None, :] * signs[None]) + prims.center[:, None]
    cc = (corners - cam_to_world[:3, 3]) @ cam_to_world[:3, :3]  # world -> camera
    z = cc[..., 2]
    front = (z > 1e-3).all(1)
    zs = np.where(z > 1e-3, z, 1.0)
    u = (K[0, 0] * cc[..., 0] + K[0, 1] * cc[..., 1]) / zs + K[0, 2]
    v = K[1, 1] * cc[..., 1] / zs + K[1, 2]
    box = np.stack([np.floor(u.min(1)) - 1, np.ceil(u.max(1)) + 2, np.floor(v.min(1)) - 1, np.ceil(v.max(1)) + 2], 1)
    box[~front] = [0, width, 0, height]
    box[:, :2] = box[:, :2].clip(0, width)
    box[:, 2:] = box[:, 2:].clip(0, height)
    return box.astype(np.int64)


def render_pinhole(prims: Primitives, K: np.ndarray, cam_to_world: np.ndarray, height: int, width: int,
                   device: str | torch.device = "cpu", chunk: int = 16384, cull: bool = True) -> RenderOutput:
    """Render a pinhole view. Returns RGB, z-depth (metres), instance ids and primitive index.

    With ``cull`` (default) primitives outside the view frustum are dropped and each remaining
    primitive is only tested against the rays of its projected bounding rectangle (same result as
    testing every ray, several times faster); ``cull=False`` tests every ray against every primitive.
    """
    from threeam.data.geometry import pixel_rays

    rays = pixel_rays(K, height, width)
    dirs = rays @ cam_to_world[:3, :3].T  # (H, W, 3)
    if not cull:
        c, t, ids, p = render_rays(prims, cam_to_world[:3, 3], dirs.reshape(-1, 3), device=device, chunk=chunk)
        p = p.cpu().numpy()
    else:
        keep = frustum_cull(prims, K, cam_to_world, height, width)
        boxes = screen_boxes(prims, K, cam_to_world, height, width)
        P = _to_tensors(prims, device)
        D = torch.as_tensor(dirs, dtype=torch.float32, device=device)
        o = torch.as_tensor(cam_to_world[:3, 3], dtype=torch.float32, device=device)
        best_t = torch.full((height, width), float("inf"), device=device)
        best_p = torch.full((height, width), -1, dtype=torch.int64, device=device)
        for j in keep.tolist():
            x0, x1, y0, y1 = boxes[j].tolist()
            if x1 <= x0 or y1 <= y0:
                continue
            d = D[y0:y1, x0:x1].reshape(-1, 3)
            R = P["rot"][j]
            dl = (d @ R)[:, None, :]
            ol = (R.T @ (o - P["center"][j]))[None, None, :].expand_as(dl)
            t = _HIT[int(prims.kind[j])](ol, dl, P["size"][j][None])[:, 0].view(y1 - y0, x1 - x0)
            region_t = best_t[y0:y1, x0:x1]
            better = t < region_t
            best_t[y0:y1, x0:x1] = torch.where(better, t, region_t)
            best_p[y0:y1, x0:x1] = torch.where(better, torch.full_like(t, j, dtype=torch.int64), best_p[y0:y1, x0:x1])
        bt, bp = best_t.reshape(-1), best_p.reshape(-1)
        Df = D.reshape(-1, 3)
        n = bt.numel()
        c = torch.zeros(n, 3, device=device)
        t = torch.zeros(n, device=device)
        ids = torch.zeros(n, dtype=torch.int64, device=device)
        light = torch.as_tensor(_LIGHT / np.linalg.norm(_LIGHT), dtype=torch.float32, device=device)
        hi = torch.nonzero(torch.isfinite(bt)).squeeze(1)
        if hi.numel():
            pi = bp[hi]
            c[hi] = _shade(P, o[None].expand(hi.numel(), 3), Df[hi], bt[hi], pi, light)
            t[hi] = bt[hi]
            ids[hi] = P["instance"][pi]
        p = bp.cpu().numpy()
    rgb = (c * 255.0 + 0.5).to(torch.uint8).reshape(height, width, 3).cpu().numpy()
    return RenderOutput(rgb=rgb, depth=t.reshape(height, width).cpu().numpy().astype(np.float32),
                        ids=ids.reshape(height, width).cpu().numpy().astype(np.int32),
                        prim=p.reshape(height, width))
