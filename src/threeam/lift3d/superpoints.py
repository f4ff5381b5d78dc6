"""Duplicates resolved by majority vote over superpoints.

1. Snap: instance i *claims* superpoint s when it covers more than ``superpoint_vote`` of s's
   vertices (``cov[i, s] = |I_i & s| / |s|``); an instance becomes the union of its claimed
   superpoints (filling boundary vertices the mask erosion left out, dropping stray ones).
2. Vote: a superpoint claimed by several instances goes to one of them - the one with the highest
   coverage (ties to the higher confidence), or with ``superpoint_priority="smaller"`` the
   smallest claimant (the more specific object).
3. An instance that keeps less than ``min_kept_fraction`` of its claimed vertices is a duplicate
   and is dropped; its superpoints are voted again among the others (repeated until stable).
4. Instances with fewer than ``min_instance_vertices`` vertices are dropped.

The result is a partition: every vertex belongs to at most one instance.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

from threeam.lift3d.config import LiftConfig

__all__ = ["compact_superpoints", "superpoint_vote"]


def compact_superpoints(superpoints: np.ndarray | None, n_vertices: int) -> np.ndarray:
    """``(V,)`` int64 ids 0 .. S-1 (each vertex its own superpoint when None)."""
    if superpoints is None:
        return np.arange(n_vertices, dtype=np.int64)
    _, inv = np.unique(np.asarray(superpoints), return_inverse=True)
    return inv.reshape(-1).astype(np.int64)


def superpoint_vote(instances: list[np.ndarray], confidences: np.ndarray, superpoints: np.ndarray | None,
                    n_vertices: int, config: LiftConfig, max_rounds: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Snap instances to superpoints and resolve overlaps (see the module docstring).

    Args:
        instances: vertex index arrays, one per instance.
        confidences: ``(N,)`` their confidences (tie-break).
        superpoints: ``(V,)`` superpoint id per vertex (any ints) or None.
        max_rounds: most duplicates dropped one by one (default: no limit).
    Returns:
        ``(vertices, kept)``: the final vertex arrays of the kept instances and ``kept (K,)`` int64,
        their positions in the input list.
    """
    n = len(instances)
    if n == 0:
        return [], np.zeros(0, dtype=np.int64)
    sp = compact_superpoints(superpoints, n_vertices)
    S = int(sp.max()) + 1
    size = np.bincount(sp, minlength=S).astype(np.float64)
    rows = np.concatenate([np.full(len(v), i, dtype=np.int64) for i, v in enumerate(instances)])
    cols = sp[np.concatenate(instances)] if rows.size else np.zeros(0, dtype=np.int64)
    cover = sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, S)).tocsr()
    cover.sum_duplicates()
    cov = cover.multiply(1.0 / size[None, :]).tocsr()
    claim = cov.multiply(cov > config.superpoint_vote).tocsr()
    claimed_size = np.asarray(claim.astype(bool).multiply(size[None, :]).sum(1)).reshape(-1)
    conf = np.asarray(confidences, dtype=np.float64)
    alive = claimed_size > 0
    coo = claim.tocoo()
    inst, spx, c = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data

    def winners() -> tuple[np.ndarray, np.ndarray]:
        """(superpoints, winning instance) among the alive claimants."""
        m = alive[inst]
        ii, ss, cc = inst[m], spx[m], c[m]
        key = -claimed_size[ii] if config.superpoint_priority == "smaller" else cc
        order = np.lexsort((ii, -conf[ii], -key, ss))  # per superpoint: best key, then confidence, then index
        ss_sorted = ss[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = ss_sorted[1:] != ss_sorted[:-1]
        return ss_sorted[first], ii[order][first]

    for _ in range(n if max_rounds is None else max_rounds):
        win_sp, win_inst = winners()
        won = np.bincount(win_inst, weights=size[win_sp], minlength=n)
        kept_frac = np.where(claimed_size > 0, won / np.maximum(claimed_size, 1), 0.0)
        dup = alive & (kept_frac < config.min_kept_fraction)
        if not dup.any():
            break
        # drop the weakest duplicate (lowest kept fraction, then lowest confidence), then vote again
        cand = np.nonzero(dup)[0]
        alive[cand[np.lexsort((conf[cand], kept_frac[cand]))[0]]] = False
    owner = np.full(S, -1, dtype=np.int64)
    win_sp, win_inst = winners()
    owner[win_sp] = win_inst
    vertex_owner = owner[sp]
    out, kept = [], []
    by_owner = np.argsort(vertex_owner, kind="stable")
    sorted_owner = vertex_owner[by_owner]
    for i in np.nonzero(alive)[0].tolist():
        lo, hi = np.searchsorted(sorted_owner, [i, i + 1])
        verts = np.sort(by_owner[lo:hi])
        if verts.size >= config.min_instance_vertices:
            out.append(verts.astype(np.int64))
            kept.append(i)
    return out, np.array(kept, dtype=np.int64)
