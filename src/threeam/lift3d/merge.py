"""Merging fragments into instances: a 3D overlap score and a 2D temporal-overlap score.

For fragments A and B (vertex sets) from keyframe windows wA and wB, the 3D scores are computed
on the vertices *both* windows saw (``seen(w)`` = vertices visible on a frame of window w), so
that an object seen from the front in one window and from the back in another is not penalised
for what the other window could not see:

* ``mA = |A & seen(wB)|``, ``mB = |B & seen(wA)|``, ``I = |A & B|``;
* 3D IoU ``I / (mA + mB - I)``; inter-mask precision ``max(I / mA, I / mB)``.

The 2D temporal overlap is the mean mask IoU over the frames on which both are tracked.

Rule (union-find, so merges are transitive):

* pairs with common tracked frames merge when the mean 2D IoU exceeds ``merge_2d_iou`` **and**
  (3D IoU > ``merge_iou`` or precision > ``merge_precision``);
* pairs without common frames (an object seen again later) merge on 3D IoU > ``merge_iou_no_shared``.

Only pairs sharing at least one vertex are scored (a sparse incidence product). Merges are applied
strongest first (3D IoU + 2D IoU) under a *cannot-link* constraint: two fragments tracked on
common frames whose mean 2D IoU there is below ``cannot_link_2d_iou`` are different objects (the
mask generator and tracker kept them apart), and a merge that would put them into one instance is
refused. Without it a mask covering two objects (a table with the cup on it) chains both
objects' fragments into one instance.

An instance keeps the vertices that are in at least ``instance_vote`` of the cluster's fragments
whose windows saw them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from scipy import sparse

from threeam.lift3d.config import LiftConfig
from threeam.lift3d.fragments import Fragment

__all__ = ["PairScores", "candidate_pairs", "pair_scores", "merge_mask", "union_find", "cannot_link_checker",
           "Instance", "build_instances", "merge_fragments"]


@dataclass
class PairScores:
    """Scores of fragment pairs (positions into the fragment list, ``a < b``)."""

    a: np.ndarray
    b: np.ndarray
    inter: np.ndarray
    iou3d: np.ndarray
    precision3d: np.ndarray
    shared: np.ndarray
    iou2d: np.ndarray


def _incidence(fragments: list[Fragment], n_vertices: int) -> sparse.csr_matrix:
    rows = np.concatenate([np.full(len(f.vertices), i, dtype=np.int64) for i, f in enumerate(fragments)])
    cols = np.concatenate([f.vertices for f in fragments])
    return sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(fragments), n_vertices))


def candidate_pairs(fragments: list[Fragment], n_vertices: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, |A & B|)`` for every pair ``a < b`` sharing at least one vertex."""
    if len(fragments) < 2:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z
    M = _incidence(fragments, n_vertices)
    inter = sparse.triu(M @ M.T, k=1).tocoo()
    return inter.row.astype(np.int64), inter.col.astype(np.int64), np.rint(inter.data).astype(np.int64)


def pair_scores(fragments: list[Fragment], pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
                window_seen: dict[int, np.ndarray], overlap2d: sparse.csr_matrix) -> PairScores:
    """3D and 2D scores of candidate pairs (see the module docstring).

    Args:
        window_seen: keyframe -> ``(V,)`` bool vertices its window saw.
        overlap2d: ``(n_ids, n_ids)`` sum of 2D IoUs by fragment id (row id < column id).
    """
    a, b, inter = pairs
    n = len(a)
    iou3d = np.zeros(n)
    prec = np.zeros(n)
    shared = np.zeros(n, dtype=np.int64)
    iou2d = np.zeros(n)
    for k in range(n):
        fa, fb = fragments[a[k]], fragments[b[k]]
        ma = int(window_seen[fb.keyframe][fa.vertices].sum())
        mb = int(window_seen[fa.keyframe][fb.vertices].sum())
        i = int(inter[k])
        union = ma + mb - i
        iou3d[k] = i / union if union > 0 else 0.0
        prec[k] = max(i / ma if ma else 0.0, i / mb if mb else 0.0)
        s = np.intersect1d(fa.frames, fb.frames, assume_unique=True).size
        shared[k] = s
        if s:
            lo, hi = min(fa.id, fb.id), max(fa.id, fb.id)
            iou2d[k] = float(overlap2d[lo, hi]) / s
    return PairScores(a, b, inter, iou3d, prec, shared, iou2d)


def merge_mask(scores: PairScores, config: LiftConfig) -> np.ndarray:
    """``(n_pairs,)`` bool: which candidate pairs merge (see the module docstring)."""
    with_2d = (scores.shared > 0) & (scores.iou2d > config.merge_2d_iou) & (
        (scores.iou3d > config.merge_iou) | (scores.precision3d > config.merge_precision))
    without_2d = (scores.shared == 0) & (scores.iou3d > config.merge_iou_no_shared)
    return with_2d | without_2d


def union_find(n: int, a: np.ndarray, b: np.ndarray,
               can_join: Optional[Callable[[list, list], bool]] = None) -> np.ndarray:
    """``(n,)`` int64 cluster label (0 .. C-1, in order of first member) of the graph with edges (a, b),
    applied in the given order; ``can_join(members_x, members_y)`` may refuse joining two clusters."""
    parent = np.arange(n)
    members: dict[int, list] = {}

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist()):
        rx, ry = root(x), root(y)
        if rx == ry:
            continue
        if can_join is not None:
            mx, my = members.get(rx, [rx]), members.get(ry, [ry])
            if not can_join(mx, my):
                continue
            members[min(rx, ry)] = mx + my
            members.pop(max(rx, ry), None)
        parent[max(rx, ry)] = min(rx, ry)
    roots = np.array([root(i) for i in range(n)], dtype=np.int64)
    _, labels = np.unique(roots, return_inverse=True)
    return labels.reshape(-1).astype(np.int64)


@dataclass
class Instance:
    """A merged 3D instance.

    Attributes:
        vertices: sorted int64 mesh vertex indices.
        fragments: positions of its fragments in the fragment list.
        keyframes: the distinct keyframes that proposed it.
        score, stability, consistency: means over its fragments.
        detection: (keyframes that proposed it) / (keyframes that saw it), in [0, 1].
        confidence: the ranking score (`threeam.lift3d.scoring`).
        gt_ids: the GT ids of its fragments (GT proposals only).
    """

    vertices: np.ndarray
    fragments: list
    keyframes: list
    score: float
    stability: float
    consistency: float
    detection: float = 1.0
    confidence: float = 0.0
    gt_ids: list = field(default_factory=list)


def build_instances(fragments: list[Fragment], labels: np.ndarray, window_seen: dict[int, np.ndarray],
                    config: LiftConfig) -> list[Instance]:
    """One `Instance` per cluster label, with the fragment vote of the module docstring."""
    out = []
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for group in np.split(order, bounds):
        if group.size == 0:
            continue
        frs = [fragments[i] for i in group.tolist()]
        allv = np.concatenate([f.vertices for f in frs])
        verts, counts = np.unique(allv, return_counts=True)
        if len(frs) > 1:
            seen = np.zeros(len(verts), dtype=np.int64)
            for f in frs:
                seen += window_seen[f.keyframe][verts]
            verts = verts[counts >= config.instance_vote * np.maximum(seen, 1)]
        if verts.size == 0:
            continue
        out.append(Instance(vertices=verts, fragments=group.tolist(), keyframes=sorted({f.keyframe for f in frs}),
                            score=float(np.mean([f.score for f in frs])),
                            stability=float(np.mean([f.stability for f in frs])),
                            consistency=float(np.mean([f.consistency for f in frs])),
                            gt_ids=sorted({f.gt_id for f in frs if f.gt_id is not None})))
    return out


def cannot_link_checker(fragments: list[Fragment], overlap2d: sparse.csr_matrix,
                        threshold: float) -> Callable[[list, list], bool]:
    """``can_join(X, Y)``: False when a fragment of X and one of Y share tracked frames with a mean 2D
    IoU below ``threshold`` there (positions into ``fragments``)."""
    frames = sorted({int(t) for f in fragments for t in f.frames})
    col = {t: i for i, t in enumerate(frames)}
    rows = np.concatenate([np.full(len(f.frames), i) for i, f in enumerate(fragments)])
    cols = np.array([col[int(t)] for f in fragments for t in f.frames], dtype=np.int64)
    F = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(fragments), len(frames)))
    ids = np.array([f.id for f in fragments], dtype=np.int64)
    sym = (overlap2d + overlap2d.T).tocsr()

    def can_join(x: list, y: list) -> bool:
        shared = (F[x] @ F[y].T).toarray()
        if not shared.any():
            return True
        iou = sym[ids[x]][:, ids[y]].toarray()
        return not bool(((shared > 0) & (iou < threshold * np.maximum(shared, 1))).any())

    return can_join


def merge_fragments(fragments: list[Fragment], n_vertices: int, window_seen: dict[int, np.ndarray],
                    overlap2d: sparse.csr_matrix, config: LiftConfig) -> tuple[list[Instance], PairScores]:
    """Candidate pairs -> scores -> merge rule -> constrained union-find (strongest first) -> instances."""
    pairs = candidate_pairs(fragments, n_vertices)
    scores = pair_scores(fragments, pairs, window_seen, overlap2d)
    keep = np.nonzero(merge_mask(scores, config))[0]
    keep = keep[np.argsort(-(scores.iou3d[keep] + scores.iou2d[keep]), kind="stable")]
    can_join = None
    if config.cannot_link_2d_iou > 0 and len(keep):
        can_join = cannot_link_checker(fragments, overlap2d, config.cannot_link_2d_iou)
    labels = union_find(len(fragments), scores.a[keep], scores.b[keep], can_join)
    return build_instances(fragments, labels, window_seen, config), scores
