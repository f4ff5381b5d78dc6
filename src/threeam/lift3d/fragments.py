"""Fragments: one keyframe proposal tracked over its window and lifted onto the mesh.

For a proposal tracked on frames ``T`` (those where its mask is not lost), a mesh vertex belongs
to the fragment when it fell inside the eroded mask in at least ``min_hit_ratio`` of the frames of
``T`` in which it was visible (multi-view agreement within the track). A frame on which the
vertex falls in the erosion band (inside the mask, outside its eroded core) abstains: it is
neither a hit nor a miss. Vertices only ever seen in the band (the limb of a curved object,
surfaces seen at grazing angles) join when the un-eroded mask agrees in ``min_hit_ratio`` of
their frames and they are connected to the core in 3D (a chain of such vertices, each within
``band_radius`` of the next): the erosion keeps isolated boundary bleeding out without cutting
the object's rim. The fragment's *consistency* is the mean
of the ratio over its vertices.

`Overlap2D` gathers the 2D mask IoU of fragments tracked on the same frame, at low resolution,
frame by frame as soon as no later session can add a mask to that frame (memory stays bounded by
the track horizon).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from threeam.lift3d.backproject import FrameVisibility, erode_masks, lift_masks
from threeam.lift3d.config import LiftConfig
from threeam.lift3d.proposals import Proposal
from threeam.lift3d.propagate import TrackStep

__all__ = ["Fragment", "WindowLifter", "Overlap2D", "lowres_masks"]


@dataclass
class Fragment:
    """A lifted, tracked proposal.

    Attributes:
        id: global fragment id (index into the scene's fragment list).
        keyframe: processed index of the keyframe it was proposed on.
        vertices: sorted int64 mesh vertex indices.
        frames: sorted int64 processed frames on which it was tracked (mask not lost).
        score: the proposal's predicted IoU.
        stability: mean tracking stability over ``frames``.
        consistency: mean over ``vertices`` of (frames inside the mask) / (frames visible).
        gt_id: the GT id of a GT proposal, else None.
    """

    id: int
    keyframe: int
    vertices: np.ndarray
    frames: np.ndarray
    score: float
    stability: float
    consistency: float
    gt_id: Optional[int] = None


def lowres_masks(masks: np.ndarray, long_side: int) -> np.ndarray:
    """``(N, H, W)`` bool -> ``(N, P)`` bool, nearest-subsampled to about ``long_side`` pixels."""
    h, w = masks.shape[1:]
    step = max(1, int(np.ceil(max(h, w) / long_side)))
    small = masks[:, step // 2::step, step // 2::step]
    return small.reshape(masks.shape[0], -1)


@dataclass
class _Track:
    hits: list = field(default_factory=list)  # vertex arrays, one per tracked frame
    band: list = field(default_factory=list)  # vertices in the mask but not in its eroded core
    frames: list = field(default_factory=list)
    stability: list = field(default_factory=list)


class WindowLifter:
    """Lifts one keyframe's tracked proposals frame by frame, then makes its fragments.

    Args:
        keyframe: processed index of the keyframe.
        proposals: the keyframe's proposals (tracker order).
        first_id: global id of the first proposal's fragment (ids are ``first_id + j``).
        config: lifting options.
        vertices: ``(V, 3)`` mesh vertices (needed for ``band_radius``).
    """

    def __init__(self, keyframe: int, proposals: list[Proposal], first_id: int, config: LiftConfig,
                 vertices: Optional[np.ndarray] = None) -> None:
        self.vertices = vertices
        self.keyframe = keyframe
        self.proposals = proposals
        self.first_id = first_id
        self.config = config
        self.tracks = [_Track() for _ in proposals]
        self.visible: dict[int, np.ndarray] = {}

    def add(self, step: TrackStep, vis: FrameVisibility) -> np.ndarray:
        """Lift one frame's masks. Returns ``(N,)`` bool: which masks are tracked (not lost) there."""
        masks = step.masks
        h, w = masks.shape[1:]
        area = masks.reshape(masks.shape[0], -1).sum(1)
        alive = (area > 0) & (area >= self.config.min_track_area * h * w)
        if not alive.any():
            return alive
        idx = np.nonzero(alive)[0]
        eroded = erode_masks(masks[idx], self.config.erode_px)
        lifted = lift_masks(vis, eroded)
        if self.config.erode_px > 0:
            inside = lift_masks(vis, masks[idx])
            bands = [np.setdiff1d(a, b, assume_unique=True) for a, b in zip(inside, lifted)]
        else:
            bands = [np.zeros(0, dtype=np.int64)] * len(idx)
        self.visible[step.frame] = vis.mask()
        for j, verts, band in zip(idx.tolist(), lifted, bands):
            tr = self.tracks[j]
            tr.hits.append(verts)
            tr.band.append(band)
            tr.frames.append(step.frame)
            tr.stability.append(float(step.stability[j]))
        return alive

    def finish(self) -> list[Fragment]:
        """The window's fragments (those with at least ``min_fragment_vertices`` vertices)."""
        out = []
        for j, (prop, tr) in enumerate(zip(self.proposals, self.tracks)):
            if not tr.frames:
                continue
            allv = np.concatenate(tr.hits) if tr.hits else np.zeros(0, dtype=np.int64)
            if allv.size == 0:
                continue
            verts, hits = np.unique(allv, return_counts=True)
            band = np.concatenate(tr.band)
            bv, bc = np.unique(band, return_counts=True) if band.size else (band, band)
            cand = np.union1d(verts, bv)
            seen = np.zeros(len(cand), dtype=np.int64)
            for t in tr.frames:
                seen += self.visible[t][cand]
            n_hit = np.zeros(len(cand), dtype=np.int64)
            n_hit[np.searchsorted(cand, verts)] = hits
            n_band = np.zeros(len(cand), dtype=np.int64)
            n_band[np.searchsorted(cand, bv)] = bc
            # the erosion band abstains: a frame where the vertex is inside the mask but outside its
            # eroded core is neither a hit nor a miss
            ratio = n_hit / np.maximum(seen - n_band, 1)
            core = (n_hit > 0) & (ratio >= self.config.min_hit_ratio)
            keep = core
            if self.config.band_radius > 0 and band.size and core.any():
                # boundary vertices the full mask agrees on join when they touch the core in 3D
                full = (n_hit + n_band) / np.maximum(seen, 1)
                edge = np.nonzero(~core & (full >= self.config.min_hit_ratio))[0]
                keep = core.copy()
                front = cand[core]
                while edge.size and front.size:  # grow from the core through agreeing boundary vertices
                    d, _ = cKDTree(self.vertices[front]).query(self.vertices[cand[edge]], k=1,
                                                               distance_upper_bound=self.config.band_radius)
                    near = np.isfinite(d)
                    keep[edge[near]] = True
                    front, edge = cand[edge[near]], edge[~near]
            if int(keep.sum()) < self.config.min_fragment_vertices:
                continue
            verts = cand
            ratio = np.where(core, ratio, (n_hit + n_band) / np.maximum(seen, 1))
            out.append(Fragment(id=self.first_id + j, keyframe=self.keyframe, vertices=verts[keep],
                                frames=np.array(sorted(tr.frames), dtype=np.int64), score=float(prop.score),
                                stability=float(np.mean(tr.stability)), consistency=float(ratio[keep].mean()),
                                gt_id=prop.gt_id))
        return out

    def window_seen(self, n_vertices: int) -> np.ndarray:
        """``(V,)`` bool: vertices visible on any frame of the window where something was tracked."""
        seen = np.zeros(n_vertices, dtype=bool)
        for m in self.visible.values():
            seen |= m
        return seen


class Overlap2D:
    """Sum of 2D IoUs of fragment pairs over the frames on which both are tracked.

    Call `add` with each frame's low-resolution masks and their fragment ids, `flush(before)` when
    no later session will add masks to frames ``< before``, and `matrix` at the end.
    """

    def __init__(self) -> None:
        self._buffer: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []

    def add(self, frame: int, ids: np.ndarray, masks: np.ndarray) -> None:
        """``ids (n,)`` fragment ids and their ``(n, P)`` bool masks on ``frame``."""
        if len(ids):
            self._buffer.setdefault(frame, []).append((np.asarray(ids, dtype=np.int64), masks))

    def flush(self, before: Optional[int] = None) -> None:
        for t in sorted(self._buffer):
            if before is not None and t >= before:
                continue
            parts = self._buffer.pop(t)
            ids = np.concatenate([p[0] for p in parts])
            if len(ids) < 2:
                continue
            # masks are sparse: intersections only for the pairs that overlap at all
            m = sparse.csr_matrix(np.concatenate([p[1] for p in parts]).astype(np.float32))
            area = np.asarray(m.sum(1)).reshape(-1)
            inter = sparse.triu(m @ m.T, k=1).tocoo()
            a, b, i = inter.row, inter.col, inter.data
            union = area[a] + area[b] - i
            iou = np.where(union > 0, i / np.maximum(union, 1e-9), 0.0)
            ia, ib = ids[a], ids[b]
            lo, hi = np.minimum(ia, ib), np.maximum(ia, ib)
            sel = (lo != hi) & (iou > 0)
            self._rows.append(lo[sel])
            self._cols.append(hi[sel])
            self._vals.append(iou[sel])

    def matrix(self, n: int) -> sparse.csr_matrix:
        """``(n, n)`` upper-triangular sum of IoUs (row id < column id)."""
        self.flush()
        if not self._rows:
            return sparse.csr_matrix((n, n))
        r, c, v = (np.concatenate(x) for x in (self._rows, self._cols, self._vals))
        return sparse.coo_matrix((v, (r, c)), shape=(n, n)).tocsr()
