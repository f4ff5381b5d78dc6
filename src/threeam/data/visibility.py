"""Per-frame object visibility (mask pixel counts), computed once per scene and cached."""
from __future__ import annotations

import numpy as np

from threeam.data.types import Scene

__all__ = ["VisibilityTable"]


class VisibilityTable:
    """``counts[t][object_id]`` = number of pixels of the object in frame t (from ``scene.instance_ids``).

    Frames whose ids are unknown (``instance_ids(t) is None``) are recorded in ``unknown``.
    """

    def __init__(self, scene: Scene) -> None:
        self.n = len(scene)
        self.counts: list[dict[int, int]] = []
        self.unknown: set[int] = set()
        for t in range(self.n):
            ids = scene.instance_ids(t)
            if ids is None:
                self.unknown.add(t)
                self.counts.append({})
                continue
            u, c = np.unique(ids, return_counts=True)
            self.counts.append({int(a): int(b) for a, b in zip(u, c) if a != 0})

    def area(self, object_id: int) -> np.ndarray:
        """``(T,)`` int64 pixel count of the object per frame (0 where absent or unknown)."""
        return np.array([c.get(object_id, 0) for c in self.counts], dtype=np.int64)

    def objects(self, min_pixels: int = 1) -> list[int]:
        """Objects with at least ``min_pixels`` pixels in some frame."""
        ids: set[int] = set()
        for c in self.counts:
            ids.update(k for k, v in c.items() if v >= min_pixels)
        return sorted(ids)
