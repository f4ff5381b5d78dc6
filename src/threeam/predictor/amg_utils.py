"""Building blocks of the automatic mask generator: point grids, crop boxes, stability scores,
box NMS, mask boxes, run-length encodings and small-region clean-up.

Conventions (the official SAM 2 ones):

* boxes are ``(x0, y0, x1, y1)`` ("XYXY"); boxes computed from masks use inclusive pixel indices
  (``x1`` is the last foreground column), and an empty mask has the box ``[0, 0, 0, 0]``;
* an uncompressed RLE is ``{"size": [H, W], "counts": [int, ...]}`` over the mask in column-major
  (Fortran) order, starting with a background run (possibly 0); a COCO RLE has ``counts`` as the
  compressed string of pycocotools.

Everything here is plain torch/numpy/scipy and runs on any device (no CUDA extension, no
torchvision, no OpenCV).
"""
from __future__ import annotations

import math
from itertools import product
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

from threeam.errors import InputError

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# ----------------------------------------------------------------------------- grids and crops
def build_point_grid(n_per_side: int) -> np.ndarray:
    """``n_per_side**2`` points evenly spaced in the unit square, at the centres of an
    ``n x n`` cell grid: ``(n*n, 2)`` float64 as (x, y), x varying fastest."""
    if n_per_side < 1:
        raise InputError(f"a point grid needs at least 1 point per side, got {n_per_side}")
    half_cell = 1.0 / (2 * n_per_side)
    side = np.linspace(half_cell, 1.0 - half_cell, n_per_side)
    xs = np.broadcast_to(side[None, :], (n_per_side, n_per_side))
    ys = np.broadcast_to(side[:, None], (n_per_side, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer ``0..n_layers``: layer i has ``int(n_per_side / scale_per_layer**i)``
    points per side."""
    grids = []
    for i in range(n_layers + 1):
        n = int(n_per_side / (scale_per_layer ** i))
        if n < 1:
            raise InputError(f"crop layer {i} would get {n_per_side}/{scale_per_layer}^{i} < 1 points per side: "
                             f"raise points_per_side or lower crop_n_points_downscale_factor / crop_n_layers")
        grids.append(build_point_grid(n))
    return grids


def generate_crop_boxes(im_size: tuple[int, int], n_layers: int, overlap_ratio: float
                        ) -> tuple[list[list[int]], list[int]]:
    """Crop boxes (XYXY, integer pixels) and their layer indices.

    Layer 0 is the whole image; layer i >= 1 tiles the image with ``2^i x 2^i`` overlapping boxes.
    The overlap is ``int(overlap_ratio * short_side * 2 / 2^i)`` pixels; each box is
    ``ceil((overlap * (n - 1) + L) / n)`` long along an axis of length L (n boxes per side), starts at
    ``k * (length - overlap)`` and is clipped to the image. Boxes are listed x-major (all y positions
    of the first column first).
    """
    im_h, im_w = int(im_size[0]), int(im_size[1])
    short_side = min(im_h, im_w)
    boxes, layers = [[0, 0, im_w, im_h]], [0]
    for layer in range(1, n_layers + 1):
        n = 2 ** layer
        overlap = int(overlap_ratio * short_side * (2 / n))
        crop_w = int(math.ceil((overlap * (n - 1) + im_w) / n))
        crop_h = int(math.ceil((overlap * (n - 1) + im_h) / n))
        x0s = [int((crop_w - overlap) * i) for i in range(n)]
        y0s = [int((crop_h - overlap) * i) for i in range(n)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(layer)
    return boxes, layers


def batch_iterator(batch_size: int, *arrays: Any) -> Iterator[list[Any]]:
    """Yield aligned slices ``[a[i:i+batch_size] for a in arrays]`` over equally long sequences."""
    if not arrays:
        raise InputError("batch_iterator needs at least one sequence")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise InputError(f"batch_iterator needs sequences of equal length, got {[len(a) for a in arrays]}")
    for start in range(0, n, batch_size):
        yield [a[start:start + batch_size] for a in arrays]


# ----------------------------------------------------------------------------- scores and boxes
def calculate_stability_score(mask_logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``mask_threshold + offset`` and ``mask_threshold - offset``.

    The first mask lies inside the second, so the IoU is a ratio of pixel counts.
    ``mask_logits`` (..., H, W) -> (...,) float32; NaN where both masks are empty (as the official).
    """
    inter = (mask_logits > (mask_threshold + offset)).flatten(-2).sum(-1)
    union = (mask_logits > (mask_threshold - offset)).flatten(-2).sum(-1)
    return inter.to(torch.float32) / union.to(torch.float32)


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes of bool masks ``(..., H, W)`` -> int64 ``(..., 4)`` with inclusive max
    indices; ``[0, 0, 0, 0]`` for an empty mask."""
    if masks.dim() < 2:
        raise InputError(f"masks must be (..., H, W), got shape {tuple(masks.shape)}")
    lead = masks.shape[:-2]
    h, w = masks.shape[-2:]
    if masks.numel() == 0:
        return torch.zeros(*lead, 4, dtype=torch.int64, device=masks.device)
    m = masks.reshape(-1, h, w).bool()
    rows = m.any(dim=-1)  # (N, H)
    cols = m.any(dim=-2)  # (N, W)
    ys = torch.arange(h, device=m.device)
    xs = torch.arange(w, device=m.device)
    bottom = torch.where(rows, ys, -1).amax(dim=-1)
    top = torch.where(rows, ys, h).amin(dim=-1)
    right = torch.where(cols, xs, -1).amax(dim=-1)
    left = torch.where(cols, xs, w).amin(dim=-1)
    out = torch.stack([left, top, right, bottom], dim=-1)
    empty = ~rows.any(dim=-1)
    out = torch.where(empty[:, None], torch.zeros_like(out), out)
    return out.reshape(*lead, 4)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(x1 - x0) * (y1 - y0)`` of XYXY boxes ``(N, 4)`` -> ``(N,)``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of one XYXY box ``(4,)`` with ``(N, 4)`` boxes -> ``(N,)`` (0/0 gives NaN)."""
    x0 = torch.maximum(box[0], boxes[:, 0])
    y0 = torch.maximum(box[1], boxes[:, 1])
    x1 = torch.minimum(box[2], boxes[:, 2])
    y1 = torch.minimum(box[3], boxes[:, 3])
    inter = (x1 - x0).clamp_min(0) * (y1 - y0).clamp_min(0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    return inter / (area + box_area(boxes) - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
        categories: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy non-maximum suppression (float32 arithmetic).

    Boxes are visited by descending score with a *stable* sort (equal scores keep their input
    order); a box is dropped when its IoU with an already kept box of the same category is greater
    than `iou_threshold`. An IoU of NaN (two empty boxes) never suppresses.

    Args:
        boxes: ``(N, 4)`` XYXY.
        scores: ``(N,)``.
        categories: optional ``(N,)`` integer labels; boxes of different categories never
            suppress each other.

    Returns:
        int64 indices of the kept boxes, in descending score order.
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise InputError(f"nms needs boxes (N, 4) and scores (N,), got {tuple(boxes.shape)} and {tuple(scores.shape)}")
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores.detach(), descending=True, stable=True).indices
    b = boxes.detach().to("cpu", torch.float32)[order.cpu()].numpy()
    cats = None if categories is None else categories.detach().cpu()[order.cpu()].numpy()
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x1 - x0) * (y1 - y0)
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(n):
            if suppressed[i]:
                continue
            keep.append(i)
            if i + 1 == n:
                break
            w = np.maximum(np.minimum(x1[i], x1[i + 1:]) - np.maximum(x0[i], x0[i + 1:]), np.float32(0))
            h = np.maximum(np.minimum(y1[i], y1[i + 1:]) - np.maximum(y0[i], y0[i + 1:]), np.float32(0))
            inter = w * h
            iou = inter / (areas[i] + areas[i + 1:] - inter)
            hit = iou.astype(np.float64) > float(iou_threshold)  # float32 IoU against the exact threshold
            if cats is not None:
                hit &= cats[i + 1:] == cats[i]
            suppressed[i + 1:] |= hit
    return order[torch.as_tensor(keep, dtype=torch.int64).to(order.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, categories: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """`nms` within each category: boxes of different categories never suppress each other.

    Returns the kept indices, in descending score order (stable, as `nms`).
    """
    return nms(boxes, scores, iou_threshold, categories=categories)


def is_box_near_crop_edge(boxes: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int],
                          atol: float = 20.0) -> torch.Tensor:
    """True for boxes (crop frame, XYXY ``(N, 4)``) within `atol` pixels of an edge of `crop_box`
    that is not also an edge of the image `orig_box` -> bool ``(N,)``."""
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float32, device=boxes.device)
    b = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop = torch.isclose(b, crop[None], atol=atol, rtol=0)
    near_image = torch.isclose(b, orig[None], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def box_xyxy_to_xywh(box: Any) -> Any:
    """XYXY -> XYWH for a box ``(4,)`` or boxes ``(..., 4)`` (tensor or array; a new object)."""
    out = box.clone() if isinstance(box, torch.Tensor) else np.array(box, copy=True)
    out[..., 2] = out[..., 2] - out[..., 0]
    out[..., 3] = out[..., 3] - out[..., 1]
    return out


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """Shift crop-frame XYXY boxes ``(..., 4)`` by the crop origin."""
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    return boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """Shift crop-frame points ``(..., 2)`` as (x, y) by the crop origin."""
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    return points + torch.tensor([x0, y0], device=points.device)


def uncrop_masks(masks: torch.Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """Zero-pad crop masks ``(N, h, w)`` into the full image ``(N, orig_h, orig_w)``."""
    x0, y0, x1, y1 = (int(v) for v in crop_box)
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    pad = (x0, orig_w - x1, y0, orig_h - y1)
    return torch.nn.functional.pad(masks, pad, value=0)


# ----------------------------------------------------------------------------- RLE
def mask_to_rle(masks: torch.Tensor) -> list[dict]:
    """Uncompressed RLEs of bool masks ``(N, H, W)`` (column-major counts, background run first)."""
    if masks.dim() != 3:
        raise InputError(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
    n, h, w = masks.shape
    flat = masks.bool().transpose(1, 2).reshape(n, h * w)
    out = []
    if h * w == 0:
        return [{"size": [h, w], "counts": [0]} for _ in range(n)]
    changes = torch.nonzero(flat[:, 1:] != flat[:, :-1])
    changes = changes.cpu()
    first = flat[:, 0].cpu()
    rows = changes[:, 0]
    cols = changes[:, 1] + 1
    bounds = torch.searchsorted(rows, torch.arange(n + 1))
    for i in range(n):
        idx = cols[bounds[i]:bounds[i + 1]]
        edges = torch.cat([torch.zeros(1, dtype=idx.dtype), idx, torch.full((1,), h * w, dtype=idx.dtype)])
        counts = (edges[1:] - edges[:-1]).tolist()
        if bool(first[i]):
            counts = [0] + counts
        out.append({"size": [h, w], "counts": counts})
    return out


def rle_to_mask(rle: Mapping) -> np.ndarray:
    """Decode an uncompressed or COCO RLE -> ``(H, W)`` bool (see `threeam.io.masks.decode_rle`)."""
    from threeam.io.masks import decode_rle

    return decode_rle(rle)


def area_from_rle(rle: Mapping) -> int:
    """Foreground pixel count of an RLE (uncompressed: the sum of the odd runs)."""
    counts = rle["counts"]
    if isinstance(counts, list):
        return int(sum(counts[1::2]))
    return int(rle_to_mask(rle).sum())


def coco_encode_rle(uncompressed: Mapping) -> dict:
    """Uncompressed RLE -> COCO RLE ``{"size": [H, W], "counts": str}`` (pycocotools compression)."""
    import warnings

    from pycocotools import mask as mask_utils

    h, w = uncompressed["size"]
    with warnings.catch_warnings():  # pycocotools' numpy-2 __array__ DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": list(uncompressed["counts"])}, h, w)
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


# ----------------------------------------------------------------------------- small regions
def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill small holes (``mode="holes"``) or drop small islands (``mode="islands"``) of a mask.

    Regions are 8-connected (`scipy.ndimage.label`). A region is small when its area is below
    `area_thresh` pixels. Holes are background regions, including those touching the border. In
    islands mode the largest island is kept when every island is small.

    Args:
        mask: ``(H, W)`` bool.

    Returns:
        ``(new_mask, changed)``.
    """
    if mode not in ("holes", "islands"):
        raise InputError(f"mode must be 'holes' or 'islands', got {mode!r}")
    mask = np.asarray(mask, dtype=bool)
    holes = mode == "holes"
    working = ~mask if holes else mask
    labels, count = ndimage.label(working, structure=_EIGHT_CONNECTED)
    if count == 0:
        return mask, False
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    small = np.flatnonzero(sizes < area_thresh) + 1
    if small.size == 0:
        return mask, False
    if holes:
        return mask | np.isin(labels, small), True
    big = np.setdiff1d(np.arange(1, count + 1), small)
    if big.size == 0:
        big = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, big), True


# ----------------------------------------------------------------------------- candidate table
class MaskData:
    """Columns of per-candidate data (tensors, arrays or lists, all of the same length N)."""

    def __init__(self, **columns: Any) -> None:
        self._cols: dict[str, Any] = {}
        for k, v in columns.items():
            self[k] = v

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(value, (list, np.ndarray, torch.Tensor)):
            raise TypeError(f"MaskData column {key!r} must be a list, array or tensor, got {type(value).__name__}")
        self._cols[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._cols[key]

    def __delitem__(self, key: str) -> None:
        del self._cols[key]

    def __contains__(self, key: str) -> bool:
        return key in self._cols

    def __len__(self) -> int:
        return len(next(iter(self._cols.values()))) if self._cols else 0

    def items(self):
        return self._cols.items()

    def filter(self, keep: torch.Tensor) -> None:
        """Keep rows by a bool mask or an index tensor (in that order)."""
        keep = torch.as_tensor(keep)
        idx = torch.nonzero(keep).flatten() if keep.dtype == torch.bool else keep.long()
        idx_cpu = idx.cpu()
        for k, v in self._cols.items():
            if isinstance(v, torch.Tensor):
                self._cols[k] = v[idx.to(v.device)]
            elif isinstance(v, np.ndarray):
                self._cols[k] = v[idx_cpu.numpy()]
            else:
                self._cols[k] = [v[i] for i in idx_cpu.tolist()]

    def cat(self, other: "MaskData") -> None:
        """Append the rows of `other` (same columns)."""
        for k, v in other.items():
            mine = self._cols.get(k)
            if mine is None:
                self._cols[k] = v.clone() if isinstance(v, torch.Tensor) else (
                    v.copy() if isinstance(v, np.ndarray) else list(v))
            elif isinstance(v, torch.Tensor):
                self._cols[k] = torch.cat([mine, v.to(mine.device)], dim=0)
            elif isinstance(v, np.ndarray):
                self._cols[k] = np.concatenate([mine, v], axis=0)
            else:
                self._cols[k] = list(mine) + list(v)
