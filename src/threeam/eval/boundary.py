"""DAVIS region (J) and boundary (F) measures, vectorised over frames.

Follows the definitions of the DAVIS 2017 evaluation (``davis2017/metrics.py``), re-derived here:

* **J** (region similarity) = ``|P ∩ G| / |P ∪ G|`` counted outside void pixels; 1 when the union
  is empty.
* **F** (boundary F-measure): each mask (void pixels cleared first) is turned into a 1-pixel
  boundary map (:func:`seg2bmap`); a predicted boundary pixel is a hit when a GT boundary pixel lies
  within a disk of radius ``r`` around it, and vice versa. ``r = ceil(bound_th * diag)`` with
  ``diag = sqrt(H^2 + W^2)`` when ``bound_th < 1``, else ``r = bound_th`` pixels.
  ``precision = hits_pred / |B_pred|``, ``recall = hits_gt / |B_gt|``, ``F = 2PR / (P + R)``
  (0 when ``P + R = 0``). Both boundaries empty -> F = 1; exactly one empty -> F = 0.

Masks are ``(T, H, W)`` bool arrays giving ``(T,)`` results; a single ``(H, W)`` frame gives a 0-d
result. The tolerance is an exact dilation by the disk ``y^2 + x^2 <= r^2`` (as skimage's ``disk`` used by
DAVIS), computed row by row with 1-D max filters.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from threeam.errors import InputError

__all__ = ["seg2bmap", "boundary_radius", "j_region", "f_boundary"]


def as_mask_stack(x, name: str) -> np.ndarray:
    """Validate a mask (stack) and return it as ``(T, H, W)`` bool.

    Accepts ``(H, W)`` or ``(T, H, W)`` arrays of bool or 0/1 integers.
    """
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise InputError(f"{name} must be (H, W) or (T, H, W), got shape {tuple(x.shape)}")
    if x.dtype != bool:
        if not np.issubdtype(x.dtype, np.integer):
            raise InputError(f"{name} must be boolean (or 0/1 integers), got dtype {x.dtype}")
        if x.size and (int(x.min()) < 0 or int(x.max()) > 1):
            raise InputError(f"{name} must be boolean (or 0/1 integers), got values in "
                             f"[{int(x.min())}, {int(x.max())}]")
        x = x.astype(bool)
    return x


def _pair(pred, gt, void=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
    squeeze = np.ndim(pred) == 2 and np.ndim(gt) == 2
    p = as_mask_stack(pred, "prediction")
    g = as_mask_stack(gt, "ground truth")
    if p.shape != g.shape:
        raise InputError(f"prediction shape {tuple(p.shape)} differs from ground-truth shape {tuple(g.shape)}")
    v = None
    if void is not None:
        v = as_mask_stack(void, "void mask")
        if v.shape[1:] != g.shape[1:] or v.shape[0] not in (1, g.shape[0]):
            raise InputError(f"void mask shape {tuple(np.shape(void))} does not match masks {tuple(g.shape)}")
    return p, g, v, squeeze


def seg2bmap(masks: np.ndarray) -> np.ndarray:
    """1-pixel boundary maps of binary masks (the DAVIS ``seg2bmap`` rule).

    A pixel is a boundary pixel when it differs from its right, lower or lower-right neighbour
    (boundaries sit half a pixel towards the origin). Neighbours outside the image are not
    compared, except that the last column / last row compare only with the lower / right
    neighbour respectively; the bottom-right pixel is never a boundary.

    Args:
        masks: ``(H, W)`` or ``(T, H, W)`` bool.

    Returns:
        bool array of the same shape.
    """
    squeeze = np.ndim(masks) == 2
    m = as_mask_stack(masks, "mask")
    b = np.zeros_like(m)
    right = m[:, :, :-1] != m[:, :, 1:]      # (T, H, W-1)
    down = m[:, :-1, :] != m[:, 1:, :]       # (T, H-1, W)
    diag = m[:, :-1, :-1] != m[:, 1:, 1:]    # (T, H-1, W-1)
    b[:, :-1, :-1] = right[:, :-1] | down[:, :, :-1] | diag
    b[:, :-1, -1] = down[:, :, -1]           # last column: only the lower neighbour
    b[:, -1, :-1] = right[:, -1]             # last row: only the right neighbour
    b[:, -1, -1] = False
    return b[0] if squeeze else b


def boundary_radius(height: int, width: int, bound_th: float = 0.008) -> int:
    """Tolerance radius in pixels: ``ceil(bound_th * sqrt(H^2 + W^2))``, or ``bound_th`` if >= 1."""
    if bound_th <= 0:
        raise InputError(f"bound_th must be > 0, got {bound_th}")
    if bound_th >= 1:
        if float(bound_th) != int(bound_th):
            raise InputError(f"bound_th >= 1 is a radius in pixels and must be an integer, got {bound_th}")
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm([height, width])))


def j_region(pred, gt, void=None) -> np.ndarray:
    """DAVIS J per frame.

    Args:
        pred, gt: ``(T, H, W)`` (or ``(H, W)``) bool masks of one object.
        void: optional ``(T, H, W)``, ``(1, H, W)`` or ``(H, W)`` bool; pixels excluded from counting.

    Returns:
        ``(T,)`` float64 (0-d for 2-D input); 1.0 where prediction and GT are both empty.
    """
    p, g, v, squeeze = _pair(pred, gt, void)
    inter = p & g
    union = p | g
    if v is not None:
        inter = inter & ~v
        union = union & ~v
    i = inter.sum(axis=(1, 2), dtype=np.int64)
    u = union.sum(axis=(1, 2), dtype=np.int64)
    j = np.where(u == 0, 1.0, i / np.maximum(u, 1))
    return j[0] if squeeze else j


def _dilate_disk(masks: np.ndarray, radius: int) -> np.ndarray:
    """Dilate each frame by the disk ``{(y, x): y^2 + x^2 <= radius^2}``.

    Exact, and decomposed into rows: for each row offset ``dy`` the disk is a horizontal segment of
    half-width ``floor(sqrt(r^2 - dy^2))``, so the result is an OR of vertically shifted 1-D
    horizontal max-filters. ``masks``: ``(T, H, W)`` bool -> ``(T, H, W)`` bool.
    """
    t, h, w = masks.shape
    if radius <= 0:
        return masks.copy()
    src = masks.view(np.uint8)
    out = np.zeros_like(masks)
    cache: dict[int, np.ndarray] = {}
    for dy in range(0, radius + 1):
        half = math.isqrt(radius * radius - dy * dy)
        if half not in cache:
            cache[half] = (ndimage.maximum_filter1d(src, 2 * half + 1, axis=2, mode="constant", cval=0)
                           .view(bool) if half > 0 else masks)
        row = cache[half]
        if dy == 0:
            out |= row
        elif dy < h:
            out[:, dy:, :] |= row[:, :-dy, :]
            out[:, :-dy, :] |= row[:, dy:, :]
    return out


def f_boundary(pred, gt, void=None, bound_th: float = 0.008, chunk: int = 16) -> np.ndarray:
    """DAVIS boundary F-measure per frame.

    Args:
        pred, gt: ``(T, H, W)`` (or ``(H, W)``) bool masks of one object.
        void: optional void pixels (see :func:`j_region`); cleared from both masks first.
        bound_th: tolerance as a fraction of the image diagonal (< 1) or in pixels (>= 1).
        chunk: frames per dilation call (bounds memory).

    Returns:
        ``(T,)`` float64 (0-d for 2-D input).
    """
    p, g, v, squeeze = _pair(pred, gt, void)
    if v is not None:
        p = p & ~v
        g = g & ~v
    t, h, w = p.shape
    radius = boundary_radius(h, w, bound_th)
    bp = seg2bmap(p)
    bg = seg2bmap(g)
    n_p = bp.sum(axis=(1, 2), dtype=np.int64)
    n_g = bg.sum(axis=(1, 2), dtype=np.int64)
    precision = np.where(n_p == 0, 1.0, 0.0)
    recall = np.where(n_g == 0, 1.0, 0.0)
    both = np.flatnonzero((n_p > 0) & (n_g > 0))
    for start in range(0, both.size, max(int(chunk), 1)):
        idx = both[start:start + chunk]
        near_g = _dilate_disk(bg[idx], radius)
        near_p = _dilate_disk(bp[idx], radius)
        precision[idx] = (bp[idx] & near_g).sum(axis=(1, 2)) / n_p[idx]
        recall[idx] = (bg[idx] & near_p).sum(axis=(1, 2)) / n_g[idx]
    s = precision + recall
    f = np.where(s == 0, 0.0, 2 * precision * recall / np.where(s == 0, 1.0, s))
    return f[0] if squeeze else f
